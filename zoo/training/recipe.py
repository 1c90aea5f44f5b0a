"""What a fine-tuning run is made of and what it measured, as typed records and JSON; no torch.

A `Recipe` holds every argument of `zoo.finetune` (``zoo finetune``), the seed included, checked
when it is made (one-line `UsageError`). The run record (``run.json``) and each checkpoint keep
it; a resumed run must have the same one (`Recipe.differences`): only the fields of `EXECUTION`
(where the data and the outputs are, how the run reports, what it runs on) may change, since
they do not change what is computed. `EpochMetrics` and `FinetuneResult` are what a run measured.

`nproc` and `nnodes` (processes per machine, machines) make the world size: each process trains on
its share of every epoch with a batch of `batch_size` images (per process, as torchvision's
references count it), so they change what is computed and a run resumes with the same ones. How
the machines meet (`node_rank`, `master_addr`, `master_port`, `rdzv_endpoint`: torchrun's
rendezvous) changes nothing computed.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from zoo.errors import UsageError, excerpt, first_line
from zoo.records import parse_spec

#: The files a run writes into its output folder.
BEST_FILE = "best.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
RUN_FILE = "run.json"
OPTIMIZERS = ("adamw", "sgd")
#: The weight decay each optimizer gets when none is given (AdamW as timm fine-tunes, SGD as torchvision trains).
DEFAULT_WEIGHT_DECAY = {"adamw": 0.05, "sgd": 1e-4}
#: Fields that do not change what a run computes: a resumed run may give other values. The data is
#: compared by its manifest hash instead of its path; the augmentation of each image is seeded by the image
#: (`zoo.training.images`), so the number of loader workers does not change it either.
EXECUTION = ("data", "output", "resume", "force", "publish", "device", "workers", "quiet", "node_rank", "master_addr",
             "master_port", "rdzv_endpoint", "recipe_from")
#: Loader workers by default where the device is a GPU (on the CPU images load in the training process).
GPU_WORKERS = 8
#: The most epochs, workers and the largest batch a recipe may ask for (a bound on a typo's cost).
MAX_EPOCHS = 100_000
MAX_BATCH = 1 << 20
MAX_WORKERS = 1024
#: The most processes per machine, and machines, a recipe may ask for.
MAX_PROCESSES = 1024
MAX_NODES = 1024


@dataclass(frozen=True)
class Recipe:
    """Every argument of a fine-tuning run (`zoo.finetune` documents them); checked when made.

    `weight_decay` None becomes the optimizer's default (`DEFAULT_WEIGHT_DECAY`), `output` None
    ``finetune-<model>`` (the model's bare name), so that the record says what was used.
    """

    model: str
    data: str
    weights: str | None = "DEFAULT"
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 1e-3
    head_lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    freeze: tuple[str, ...] = ()
    freeze_until: str | None = None
    train_norms: bool = False
    layer_decay: float | None = None
    val_fraction: float = 0.2
    seed: int = 0
    augment: bool = True
    flip: bool = True
    min_scale: float = 0.08
    patience: int | None = None
    mixed_precision: bool = True
    output: str | None = None
    resume: bool = False
    force: bool = False
    publish: str | None = None
    device: str | None = None
    workers: int | None = None
    quiet: bool = False
    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None
    rdzv_endpoint: str | None = None
    recipe_from: str | None = None  # the published version whose recipe this is (`inherited_options`)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        _text(self.model, "model")
        if not isinstance(self.data, (str, os.PathLike)):
            raise UsageError(f"data must be a folder or a CSV file, not {excerpt(self.data)}")
        set_(self, "data", os.fspath(self.data))
        if self.weights is not None:
            _text(self.weights, "weights")
        _count(self.epochs, "epochs", 1, MAX_EPOCHS)
        _count(self.batch_size, "batch_size", 1, MAX_BATCH)
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {excerpt(self.optimizer)}")
        _number(self.lr, "lr", above=0)
        if self.head_lr is not None:
            _number(self.head_lr, "head_lr", above=0)
        if self.weight_decay is None:
            set_(self, "weight_decay", DEFAULT_WEIGHT_DECAY[self.optimizer])
        _number(self.weight_decay, "weight_decay", at_least=0)
        _number(self.momentum, "momentum", at_least=0, below=1)
        _number(self.warmup_epochs, "warmup_epochs", at_least=0)
        if self.warmup_epochs > self.epochs:
            raise UsageError(f"warmup_epochs ({self.warmup_epochs:g}) must be at most epochs ({self.epochs})")
        set_(self, "freeze", _patterns(self.freeze))
        if self.freeze_until is not None:
            _text(self.freeze_until, "freeze_until")
            if self.freeze:
                raise UsageError("give freeze patterns (--freeze) or freeze_until (--freeze-until), not both")
        for name in ("train_norms", "augment", "flip", "mixed_precision", "resume", "force", "quiet"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"{name} must be True or False, not {excerpt(getattr(self, name))}")
        if self.train_norms and not (self.freeze or self.freeze_until):
            raise UsageError("train_norms (--train-norms) keeps the normalisation layers of the frozen part "
                             "training: give freeze (--freeze) or freeze_until (--freeze-until) too")
        if self.layer_decay is not None:
            _number(self.layer_decay, "layer_decay", above=0, at_most=1)
        _number(self.val_fraction, "val_fraction", above=0, below=1)
        _count(self.seed, "seed", 0, 2**63 - 1)
        _number(self.min_scale, "min_scale", above=0, at_most=1)
        if self.patience is not None:
            _count(self.patience, "patience", 1, MAX_EPOCHS)
        if self.resume and self.force:
            raise UsageError("resume (--resume) continues the run in the output folder and force (--force) "
                             "starts it afresh: give one of them")
        if self.publish is not None:
            parse_spec(self.publish, bare=True)
        if self.recipe_from is not None:
            _text(self.recipe_from, "recipe_from")
        if self.device is not None:
            _text(self.device, "device")
        if self.workers is not None:
            _count(self.workers, "workers", 0, MAX_WORKERS)
        self._check_processes()
        if self.output is None:
            set_(self, "output", f"finetune-{self.model.rpartition('/')[2]}")
        if not isinstance(self.output, (str, os.PathLike)) or not os.fspath(self.output):
            raise UsageError(f"output must be a folder, not {excerpt(self.output)}")
        set_(self, "output", os.fspath(self.output))

    def _check_processes(self) -> None:
        """Refuse process counts and rendezvous arguments that torchrun could not run."""
        _count(self.nproc, "nproc", 1, MAX_PROCESSES)
        _count(self.nnodes, "nnodes", 1, MAX_NODES)
        _count(self.node_rank, "node_rank", 0, self.nnodes - 1)
        if self.master_addr is not None:
            _text(self.master_addr, "master_addr")
        if self.master_port is not None:
            _count(self.master_port, "master_port", 1, 65535)
        if self.rdzv_endpoint is not None:
            host, _, port = self.rdzv_endpoint.rpartition(":") if isinstance(self.rdzv_endpoint, str) else ("", "", "")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise UsageError(f"rdzv_endpoint must be HOST:PORT, not {excerpt(self.rdzv_endpoint)}")
            if self.master_addr is not None or self.master_port is not None or self.node_rank:
                raise UsageError("give rdzv_endpoint (--rdzv-endpoint; machines are ranked as they join) or "
                                 "master_addr, master_port and node_rank (--master-addr ...), not both")
        if self.nnodes > 1 and self.master_addr is None and self.rdzv_endpoint is None:
            raise UsageError(f"nnodes {self.nnodes}: give the address the machines meet at, master_addr "
                             "(--master-addr, with --node-rank on each) or rdzv_endpoint (--rdzv-endpoint)")
        if self.world_size > 1 and self.device is not None and ":" in self.device:
            raise UsageError(f"device {excerpt(self.device)} names one GPU; with several processes each takes "
                             "its own (cuda:LOCAL_RANK): give cuda or cpu")

    @property
    def world_size(self) -> int:
        """How many processes train together: `nproc` on each of `nnodes` machines."""
        return self.nproc * self.nnodes

    @property
    def folder(self) -> Path:
        """The output folder."""
        return Path(self.output)

    def to_json(self) -> dict[str, Any]:
        """Every field, tuples as lists."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Any) -> Recipe:
        """The recipe `to_json` wrote, checked again; an unknown field is refused (a newer zoo's)."""
        if not isinstance(data, dict):
            raise UsageError(f"a recipe is a JSON object, not {excerpt(data)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"recipe field {excerpt(unknown[0])} is unknown; fields: {', '.join(sorted(known))}")
        if "model" not in data or "data" not in data:
            raise UsageError("a recipe names its model and data")
        return cls(**data)

    def differences(self, other: Recipe) -> list[str]:
        """``"NAME: MINE vs OTHER"`` for each field outside `EXECUTION` that differs from `other`'s."""
        mine, theirs = self.to_json(), other.to_json()
        return [f"{name}: {mine[name]!r} vs {theirs[name]!r}" for name in mine
                if name not in EXECUTION and mine[name] != theirs[name]]


def inherited_options(published: str, run: Any) -> dict[str, Any]:
    """The options (`zoo.finetune`'s, the model included) of the recipe in the run record `run` of published
    version `published`, for a new run on other data: every field outside `EXECUTION` (where and how that run
    ran, and its outputs, are this run's own), with the base weights pinned to the ones that run used (its
    record's canonical name: ``DEFAULT`` then still means what it meant), and `recipe_from` naming `published`.
    A version published without a run record, or with one this zoo cannot read, is refused in one line."""
    if not isinstance(run, dict) or not isinstance(run.get("recipe"), dict):
        raise UsageError(f"{published} has no run record (it was not published by zoo finetune --publish): "
                         "there is no recipe to re-run")
    try:
        recipe = Recipe.from_json(run["recipe"])
    except (TypeError, UsageError) as exc:
        raise UsageError(f"the recipe of {published} cannot be re-run here: {first_line(exc)}") from None
    options = {k: v for k, v in recipe.to_json().items() if k not in EXECUTION}
    base = run.get("base_weights")
    if isinstance(base, dict) and "name" in base and (base["name"] is None or isinstance(base["name"], str)):
        options["weights"] = base["name"]
    return {**options, "recipe_from": published}


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch measured: mean training loss, validation loss, acc@1 and acc@5 (percent), training
    throughput, the learning rate at its end (of the first parameter group) and its seconds."""

    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    acc1: float
    acc5: float
    images_per_s: float
    lr: float
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "train_loss": self.train_loss, "val_loss": self.val_loss, "acc@1": self.acc1,
                "acc@5": self.acc5, "images_per_s": self.images_per_s, "lr": self.lr, "seconds": self.seconds}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EpochMetrics:
        return cls(data["epoch"], data["train_loss"], data["val_loss"], data["acc@1"], data["acc@5"],
                   data["images_per_s"], data["lr"], data["seconds"])

    def line(self, epochs: int) -> str:
        """The epoch as one line, as a run prints it."""
        return (f"epoch {self.epoch}/{epochs}: train loss {self.train_loss:.4f}, val loss {self.val_loss:.4f}, "
                f"acc@1 {self.acc1:.2f}%, acc@5 {self.acc5:.2f}%, {self.images_per_s:.1f} images/s, "
                f"lr {self.lr:.3g}, {self.seconds:.1f} s")


@dataclass(frozen=True)
class FinetuneResult:
    """What `zoo.finetune` returns: the metrics of every epoch run, the best one, and where the files are."""

    output: Path
    model: str  # PLUGIN/NAME
    weights: str | None  # the base weights' name; None: trained from random initialisation
    epochs: tuple[EpochMetrics, ...]
    best_epoch: int
    steps: int  # optimizer steps, over every epoch run
    stopped_early: bool
    wall_s: float
    device: str
    published: str | None  # NAMESPACE/NAME:VERSION

    @property
    def best(self) -> EpochMetrics:
        return self.epochs[self.best_epoch - 1]

    @property
    def best_path(self) -> Path:
        return self.output / BEST_FILE

    @property
    def checkpoint_path(self) -> Path:
        return self.output / CHECKPOINT_FILE

    @property
    def run_path(self) -> Path:
        return self.output / RUN_FILE

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FinetuneResult:
        """The result `to_json` wrote (a training process's, read by the process that started it)."""
        return cls(Path(data["output"]), data["model"], data["weights"],
                   tuple(EpochMetrics.from_json(e) for e in data["epochs"]), data["best_epoch"], data["steps"],
                   data["stopped_early"], data["wall_s"], data["device"], data["published"])

    def to_json(self) -> dict[str, Any]:
        return {"output": str(self.output), "model": self.model, "weights": self.weights,
                "epochs": [e.to_json() for e in self.epochs], "best_epoch": self.best_epoch,
                "best": self.best.to_json(), "steps": self.steps, "stopped_early": self.stopped_early,
                "wall_s": self.wall_s, "device": self.device, "published": self.published,
                "files": {"best": str(self.best_path), "checkpoint": str(self.checkpoint_path),
                          "run": str(self.run_path)}}


def _text(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{name} must be a non-empty name, not {excerpt(value)}")


def _count(value: Any, name: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"{name} must be a whole number from {low} to {high}, not {excerpt(value)}")


def _number(value: Any, name: str, *, above: float | None = None, at_least: float | None = None,
            below: float | None = None, at_most: float | None = None) -> None:
    """Refuse a `value` that is not a finite number within the bounds given."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    bounds = [(above, ">", lambda b: value > b), (at_least, ">=", lambda b: value >= b),
              (below, "<", lambda b: value < b), (at_most, "<=", lambda b: value <= b)]
    ok = ok and all(bound is None or holds(bound) for bound, _, holds in bounds)
    if not ok:
        wanted = " and ".join(f"{sign} {bound:g}" for bound, sign, _ in bounds if bound is not None)
        raise UsageError(f"{name} must be a number {wanted}, not {excerpt(value)}")


def _patterns(value: Any) -> tuple[str, ...]:
    """Freeze patterns as a tuple: one string is one pattern."""
    patterns = (value,) if isinstance(value, str) else value
    if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) and p.strip() for p in patterns):
        raise UsageError(f"freeze must be module paths or patterns, not {excerpt(value)}")
    return tuple(patterns)
