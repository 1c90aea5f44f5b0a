"""Fine-tuning on several processes: the launch through PyTorch's own launcher, and each process's world.

`launch` runs ``python -m torch.distributed.run`` (torchrun) in a child process with the recipe's
``nproc`` processes per machine and its rendezvous arguments; each process runs the zoo's own entry
(`zoo.training.finetune.rank_main`) on the recipe, written as JSON. One machine meets at a free port
of 127.0.0.1 (torchrun's c10d rendezvous at port 0); several meet at ``master_addr:master_port``
(each machine giving its ``node_rank``) or at a c10d ``rdzv_endpoint``, as torchrun's own arguments.

The processes' standard output (rank 0's epoch lines) is passed on as it comes; their standard error
and torchrun's own log go to a scratch file, of which the last line is shown only when the processes
failed without saying why. A process that fails writes its error to the scratch folder; the earliest
one is raised here, in one line (a `ZooError` of its kind). The first process of each machine writes the
result there (rank 0's machine alone has the files and publishes).

`World` is one process's view: its rank, the world size and the collectives the loop needs (sums,
rank 0's bytes to every rank); one process alone is ``World()``, where they do nothing.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

import zoo.errors
from zoo.context import current
from zoo.errors import UnknownNameError, UsageError, ZooError, first_line
from zoo.settings import child_environment
from zoo.training.recipe import FinetuneResult, Recipe

#: The launcher and each rank: run with the interpreter's own ``sys.path`` (PYTHONPATH) less the working
#: folder, so that a file there named like a module is never imported instead of it. Each dies with its
#: parent (Linux): a killed ``zoo finetune`` leaves neither torchrun nor its processes (torchrun starts
#: each in a session of its own) behind.
_SAFE_PATH = ("import os, sys; sys.path[:] = [p for p in sys.path if p]; "
              "from zoo.catalog.sync import die_with_parent; ")
_LAUNCHER = _SAFE_PATH + ("die_with_parent(int(sys.argv[1])); from torch.distributed.run import main; "
                          "main(sys.argv[2:])")
_RANK = _SAFE_PATH + ("die_with_parent(os.getppid()); from zoo.training.finetune import rank_main; "
                      "sys.exit(rank_main(sys.argv[1:]))")
#: torchrun's static rendezvous port when `master_addr` is given without `master_port` (torchrun's default).
DEFAULT_MASTER_PORT = 29500
_RECIPE_FILE = "recipe.json"
_RESULT_FILE = "result.json"
_ERROR_GLOB = "error-*.json"


@dataclass(frozen=True)
class World:
    """One process of `size` training together (torch.distributed's default group when `size` > 1)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    backend: str | None = None  # gloo or nccl
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where its collectives' tensors live

    @property
    def main(self) -> bool:
        """Whether this process writes the files, prints and publishes (rank 0)."""
        return self.rank == 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over every process, in place."""
        if self.size > 1:
            dist.all_reduce(tensor)
        return tensor

    def from_main(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's `tensor` (of the same shape everywhere), in place."""
        if self.size > 1:
            dist.broadcast(tensor, 0)
        return tensor

    def main_bytes(self, payload: bytes) -> bytes:
        """Rank 0's `payload` on every process (what the others pass is ignored)."""
        if self.size == 1:
            return payload
        length = self.from_main(torch.tensor([len(payload)], dtype=torch.int64, device=self.device))
        buffer = torch.zeros(int(length.item()), dtype=torch.uint8, device=self.device)
        if self.main and payload:
            buffer.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
        return self.from_main(buffer).cpu().numpy().tobytes()

    def main_state(self, state: dict[str, Any] | None) -> dict[str, Any] | None:
        """Rank 0's `state` (tensors and plain data) on every process: saved by torch there, read back here with
        ``weights_only=True`` (no code runs)."""
        if self.size == 1:
            return state
        buffer = io.BytesIO()
        if self.main and state is not None:
            torch.save(state, buffer)
        payload = self.main_bytes(buffer.getvalue())
        if self.main or not payload:
            return state if self.main else None
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


def join(cuda: bool) -> World:
    """This process's world, as torchrun's environment describes it; the process group is made here (gloo on
    the CPU, nccl on CUDA, where this process takes GPU ``LOCAL_RANK``)."""
    rank, local_rank, size = (int(os.environ[name]) for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    device = torch.device("cpu")
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"{os.environ['LOCAL_WORLD_SIZE']} processes on this machine and {torch.cuda.device_count()} "
                             "GPUs: give --nproc at most the number of GPUs, or --device cpu")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend)
    return World(rank, local_rank, size, backend, device)


def launch(recipe: Recipe) -> FinetuneResult:
    """Run `recipe` on its ``nproc`` processes (and ``nnodes`` machines) under torchrun; rank 0's result.

    Standard output gets rank 0's lines as they come; a failure is raised in one line (see the module).
    On a machine other than rank 0's, the result has the same metrics, and no published name."""
    with tempfile.TemporaryDirectory(prefix="zoo-finetune-") as scratch, tempfile.TemporaryFile() as log:
        folder = Path(scratch)
        (folder / _RECIPE_FILE).write_text(json.dumps(recipe.to_json()), encoding="utf-8")
        command = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *torchrun_arguments(recipe), "--no-python",
                   sys.executable, "-c", _RANK, str(folder / _RECIPE_FILE), str(folder)]
        env = child_environment(current().settings, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                   text=True)
        try:
            for line in process.stdout:  # type: ignore[union-attr]
                sys.stdout.write(line)
                sys.stdout.flush()
            returncode = process.wait()
        except BaseException:  # interrupted: torchrun stops its processes on SIGTERM
            process.terminate()
            process.wait()
            raise
        if returncode != 0:
            raise _failure(folder, returncode, log)
        return FinetuneResult.from_json(json.loads((folder / _RESULT_FILE).read_text(encoding="utf-8")))


def torchrun_arguments(recipe: Recipe) -> list[str]:
    """torchrun's arguments for `recipe`'s processes and rendezvous (no restarts: a failure is reported)."""
    arguments = ["--nproc-per-node", str(recipe.nproc), "--nnodes", str(recipe.nnodes), "--max-restarts", "0"]
    if recipe.rdzv_endpoint is not None:
        return [*arguments, "--rdzv-backend", "c10d", "--rdzv-endpoint", recipe.rdzv_endpoint,
                "--rdzv-id", "zoo-finetune"]
    if recipe.master_addr is not None or recipe.master_port is not None:
        return [*arguments, "--node-rank", str(recipe.node_rank), "--master-addr", recipe.master_addr or "127.0.0.1",
                "--master-port", str(recipe.master_port or DEFAULT_MASTER_PORT)]
    # one machine: a free port on the loopback interface
    return [*arguments, "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", "--local-addr", "127.0.0.1"]


def read_recipe(path: Path | str) -> Recipe:
    """The recipe `launch` wrote at `path` (a rank's first argument)."""
    return Recipe.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def write_result(folder: Path | str, result: FinetuneResult) -> None:
    """A process's result, for `launch`."""
    (Path(folder) / _RESULT_FILE).write_text(json.dumps(result.to_json()), encoding="utf-8")


def write_error(folder: Path | str, exc: Exception) -> None:
    """A process's error, for `launch`: its kind, its first line, its rank and when."""
    rank = int(os.environ.get("RANK", "0"))
    text = json.dumps({"rank": rank, "time": time.time(), "kind": type(exc).__name__, "message": first_line(exc)})
    (Path(folder) / f"error-{rank}.json").write_text(text, encoding="utf-8")


def _failure(folder: Path, returncode: int, log: Any) -> ZooError:
    """The error to raise for processes that ended with `returncode`: the earliest a process wrote, as its own
    kind where that is the zoo's; else torchrun's last line."""
    errors = [json.loads(path.read_text(encoding="utf-8")) for path in folder.glob(_ERROR_GLOB)]
    if errors:
        first = min(errors, key=lambda e: e["time"])
        kind = getattr(zoo.errors, first["kind"], None)
        if isinstance(kind, type) and issubclass(kind, UnknownNameError):
            return kind.reported(first["message"])
        if isinstance(kind, type) and issubclass(kind, ZooError):
            return kind(first["message"])
        return ZooError(f"training process {first['rank']} failed: {first['kind']}: {first['message']}")
    log.seek(0)
    lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    return ZooError(f"the training processes failed (torchrun exited {returncode}): {last[:300]}")
