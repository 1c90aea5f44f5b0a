"""Publishing and fetching a large weights file through the registry service, against boto3 on the same object store.

Makes a weights file of `--model`'s random weights (torchvision, safetensors: vit_l_16 is
1.2 GB, vit_h_14 2.5 GB, the "2 GiB end to end" check), a SQLite catalog synced with the
torchvision plugin and a token, a SeaweedFS S3 server (`zoo.testing.object_store`) and
three services (`zoo.testing.serving`): on a folder store; on the object store with
``--artifacts proxy``; on the same catalog and object store with ``--artifacts redirect``.
Then, for `--rounds` rounds, each round running every operation once, in turn:

- upload: boto3's ``upload_file`` of the file; ``zoo publish weights`` through the folder
  service and through the object store's (proxy) service;
- download: boto3's ``download_file``; ``zoo weights fetch NS/NAME:VERSION`` into an empty
  weights cache through the folder service, the proxy service and the redirect service.

Before a round one byte of the file's last tensor changes, so every upload is of bytes no
store holds yet (a store keeps a blob it has once). Each operation is a ``zoo`` (or
``python -c`` boto3) command of its own, timed whole (start-up included, as a user waits
for it) with its peak RSS (GNU time); the service's peak RSS during it is read from
``/proc/PID/status`` (VmHWM, reset before each operation through ``/proc/PID/clear_refs``),
both as it is and as its growth over the service's RSS before the operation (a service
imports torch to check what is published: several hundred MiB before any file; so each
publishing service first refuses a file that fits no model, which loads what a check needs).

Targets (issue 23): MB/s at least 0.8 of boto3's; client and service peak RSS growth
under 200 MiB, whatever the file's size. Prints a markdown table and writes it to `--out`
(default ``benchmarks/results/large_files.md``; `--append` adds a section).

    .venv/bin/python benchmarks/large_files.py [--model vit_l_16] [--rounds 3] [--out FILE] [--append]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from _measure import RESULTS, child_env, machine_line, markdown_table, run_child, zoo_argv

from zoo.testing import ObjectStore, Served, object_store, serving

PLUGINS = "torchvision"
NAME = "bench/large"
MiB = 1 << 20
#: A torchvision model's random weights saved as safetensors, and a file that fits no model (argv: model, file,
#: other file), in a child of their own.
_MAKE_WEIGHTS = """
import sys, torch, torchvision
from safetensors.torch import save_file
torch.manual_seed(0)
save_file(getattr(torchvision.models, sys.argv[1])().state_dict(), sys.argv[2])
save_file({"fits_nothing": torch.zeros(1)}, sys.argv[3])
"""
#: boto3's own transfer (argv: upload_file|download_file, bucket, key, file), as a user of boto3 would run it.
_BOTO3 = """
import sys, boto3
method, bucket, key, file = sys.argv[1:]
client = boto3.client("s3")
client.upload_file(file, bucket, key) if method == "upload_file" else client.download_file(bucket, key, file)
"""


@dataclass(frozen=True)
class Sample:
    """One run of one operation: wall seconds, the client's peak RSS, the service's peak RSS and its growth (bytes)."""

    wall_s: float
    client_rss: int
    service_rss: int | None = None
    service_growth: int | None = None


@dataclass
class Bench:
    """Where the runs happen: the work folder, the object store, the services by store, the file and its size."""

    folder: Path
    s3: ObjectStore
    services: dict[str, Served]
    token: str
    file: Path
    model: str

    @property
    def size(self) -> int:
        return self.file.stat().st_size

    def client_env(self, service: str | None, cache: Path) -> dict[str, str]:
        """A client's environment: the service `service` (or none: boto3), its own empty weights cache."""
        env = child_env(**self.s3.env, TORCH_HOME=str(cache), XDG_CACHE_HOME=str(cache))
        env = {key: value for key, value in env.items() if not key.startswith("ZOO_")}
        if service is not None:
            env |= {"ZOO_REGISTRY_URL": self.services[service].url, "ZOO_TOKEN": self.token}
        return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "--size-model", default="vit_l_16",
                        help="the torchvision model whose random weights make the file (default vit_l_16, 1.2 GB)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every operation (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS / "large_files.md", help="the results file")
    parser.add_argument("--append", action="store_true", help="add a section to the results file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (its path is printed)")
    args = parser.parse_args()
    with _work_folder(args.keep) as folder, _bench(folder, args.model) as bench:
        print(f"{bench.file.name}: {bench.size / MiB:.0f} MiB; work folder {folder}", flush=True)
        samples: dict[str, list[Sample]] = defaultdict(list)
        for round_ in range(1, args.rounds + 1):
            _change_a_byte(bench.file)
            for operation, run in _operations(bench, round_):
                sample = run()
                samples[operation].append(sample)
                print(f"round {round_} {operation}: {bench.size / MiB / sample.wall_s:.0f} MiB/s, "
                      f"client {sample.client_rss / MiB:.0f} MiB, service "
                      f"{'-' if sample.service_rss is None else f'{sample.service_rss / MiB:.0f} MiB'}", flush=True)
        text = _report(bench, samples, args.rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = args.out.read_text() + "\n" if args.append and args.out.exists() else ""
    args.out.write_text(previous + text + "\n")
    print(text)
    return 0


@contextlib.contextmanager
def _work_folder(keep: bool) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="zoo-large-files-"))
    try:
        yield folder
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _bench(folder: Path, model: str) -> Iterator[Bench]:
    """The file, the catalogs, the object store and the three services, for the block."""
    file, misfit = folder / f"{model}.safetensors", folder / "misfit.safetensors"
    run_child([sys.executable, "-c", _MAKE_WEIGHTS, model, str(file), str(misfit)], child_env(), folder)
    catalog = folder / "folder-store.db"
    base = child_env(ZOO_REGISTRY_URL=f"sqlite:///{catalog}", ZOO_LOAD_PLUGINS=PLUGINS,
                     XDG_CACHE_HOME=str(folder / "service-cache"), TORCH_HOME=str(folder / "service-cache"))
    run_child(zoo_argv("sync"), base, folder)
    token = run_child(zoo_argv("token", "create", "bench"), base, folder).stdout.strip()
    s3_catalog = folder / "object-store.db"
    with sqlite3.connect(catalog) as source, sqlite3.connect(s3_catalog) as target:
        source.backup(target)
    with object_store(folder / "seaweedfs") as s3, contextlib.ExitStack() as stack:
        on_s3 = {**base, **s3.env, "ZOO_REGISTRY_URL": f"sqlite:///{s3_catalog}", "ZOO_ARTIFACTS": s3.location("zoo")}
        services = {
            "folder": stack.enter_context(serving(env={**base, "ZOO_ARTIFACTS": str(folder / "artifacts")})),
            "s3 proxy": stack.enter_context(serving("--artifacts", "proxy", env=on_s3)),
            "s3 redirect": stack.enter_context(serving("--artifacts", "redirect", env=on_s3)),
        }
        bench = Bench(folder, s3, services, token, file, model)
        for service in ("folder", "s3 proxy"):  # what a first publish loads (torch, the model's code) loaded now
            _warm_up(bench, service, misfit)
        yield bench


def _warm_up(bench: Bench, service: str, misfit: Path) -> None:
    """Publish `misfit` through `service`, which refuses it: the service has checked a file once."""
    argv = zoo_argv("publish", "weights", bench.model, str(misfit), "--name", "bench/warm-up")
    done = subprocess.run(argv, env=bench.client_env(service, bench.folder / "client-cache"), capture_output=True,
                          text=True)
    if "does not fit" not in done.stderr:
        raise SystemExit(f"the warm-up publish through the {service} service was not refused as expected:\n"
                         f"{done.stderr[-2000:]}")


def _change_a_byte(file: Path) -> None:
    """Flip the last byte (of the last tensor's data): new bytes, the same tensors' names and shapes."""
    with file.open("r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)[0]
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last ^ 1]))


def _operations(bench: Bench, round_: int) -> list[tuple[str, object]]:
    """Every operation of a round, in the order they run: uploads, then downloads of what was uploaded."""
    key = f"boto3/{round_}"
    return [
        ("upload: boto3", lambda: _boto3(bench, "upload_file", key, bench.file)),
        ("upload: publish, folder store", lambda: _publish(bench, "folder")),
        ("upload: publish, S3 store", lambda: _publish(bench, "s3 proxy")),
        ("download: boto3", lambda: _boto3(bench, "download_file", key, bench.folder / "downloaded")),
        ("download: fetch, folder store", lambda: _fetch(bench, "folder", round_)),
        ("download: fetch, S3 proxy", lambda: _fetch(bench, "s3 proxy", round_)),
        ("download: fetch, S3 redirect", lambda: _fetch(bench, "s3 redirect", round_)),
    ]


def _boto3(bench: Bench, method: str, key: str, file: Path) -> Sample:
    cache = bench.folder / "client-cache"
    child = run_child([sys.executable, "-c", _BOTO3, method, bench.s3.bucket, key, str(file)],
                      bench.client_env(None, cache), bench.folder)
    if method == "download_file":
        _check_size(bench, file)
        file.unlink()
    return Sample(child.wall_s, child.max_rss)


def _publish(bench: Bench, service: str) -> Sample:
    """``zoo publish weights`` of the file through `service`: the next version of `NAME` there."""
    env = bench.client_env(service, bench.folder / "client-cache")
    with _service_peak(bench.services[service]) as peak:
        child = run_child(zoo_argv("publish", "weights", bench.model, str(bench.file), "--name", NAME, "--json"),
                          env, bench.folder)
    published = json.loads(child.stdout)
    if published["size"] != bench.size:
        raise SystemExit(f"published {published['size']} bytes, not the file's {bench.size}")
    return Sample(child.wall_s, child.max_rss, *peak())


def _fetch(bench: Bench, service: str, round_: int) -> Sample:
    """``zoo weights fetch NAME:ROUND`` through `service` into an empty weights cache (removed afterwards)."""
    cache = bench.folder / "client-cache"
    shutil.rmtree(cache, ignore_errors=True)
    with _service_peak(bench.services[service]) as peak:
        child = run_child(zoo_argv("weights", "fetch", f"{NAME}:{round_}"), bench.client_env(service, cache),
                          bench.folder)
    _check_size(bench, Path(child.stdout.strip().splitlines()[-1]))
    shutil.rmtree(cache, ignore_errors=True)
    return Sample(child.wall_s, child.max_rss, *peak())


def _check_size(bench: Bench, file: Path) -> None:
    if file.stat().st_size != bench.size:
        raise SystemExit(f"{file} has {file.stat().st_size} bytes, not the file's {bench.size}")


@contextlib.contextmanager
def _service_peak(served: Served) -> Iterator[object]:
    """The service's peak RSS during the block and its growth over the RSS before it, as a function (bytes)."""
    status = Path(f"/proc/{served.pid}/status")
    Path(f"/proc/{served.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS now
    before = _status_bytes(status, "VmRSS")
    result: list[int] = []
    yield lambda: tuple(result)
    peak = _status_bytes(status, "VmHWM")
    result += [peak, peak - before]


def _status_bytes(status: Path, field: str) -> int:
    line = next(line for line in status.read_text().splitlines() if line.startswith(f"{field}:"))
    return int(line.split()[1]) * 1024


def _report(bench: Bench, samples: Mapping[str, list[Sample]], rounds: int) -> str:
    """The markdown section: one row per operation, medians over the rounds, peaks as the largest."""
    speeds = {op: statistics.median(bench.size / MiB / s.wall_s for s in runs) for op, runs in samples.items()}
    rows = []
    for operation, runs in samples.items():
        baseline = speeds[f"{operation.split(':')[0]}: boto3"]
        service = [s for s in runs if s.service_rss is not None]
        rows.append([
            operation, f"{speeds[operation]:.0f}", f"{speeds[operation] / baseline:.2f}",
            f"{max(s.client_rss for s in runs) / MiB:.0f}",
            f"{max(s.service_rss for s in service) / MiB:.0f}" if service else "-",
            f"{max(s.service_growth for s in service) / MiB:.0f}" if service else "-",
            " / ".join(f"{s.wall_s:.1f}" for s in runs),
        ])
    table = markdown_table(["operation", "MiB/s (median)", "vs boto3", "client peak RSS MiB",
                            "service peak RSS MiB", "service growth MiB", "seconds per round"], rows)
    rounds_text = f"{rounds} round{'s' * (rounds > 1)}"
    return (f"## {bench.model}: {bench.size / MiB:.0f} MiB ({bench.size:,} bytes), {rounds_text}\n\n"
            f"Each operation a command of its own, timed whole; the services on SQLite, the object store "
            f"SeaweedFS (`weed mini`) on this machine. A service's peak RSS includes torch, imported to check what "
            f"is published (the redirect service, which publishes nothing here, never imports it); its growth is "
            f"over its RSS before the operation. Targets: at least 0.8 of boto3's speed; client and service "
            f"growth under 200 MiB.\n\n{table}\n\n{machine_line()}")


if __name__ == "__main__":
    sys.exit(main())
