"""Fine-tuning a catalog model on a folder of labelled images: `finetune` (``zoo finetune``).

One process on one device, or ``nproc`` processes (on each of ``nnodes`` machines) started by torchrun
(`zoo.training.distributed`): data-parallel training (`DistributedDataParallel`: gradients averaged),
each process taking its share of every epoch's seeded order in batches of ``batch_size`` (so a step
takes ``batch_size`` times the world size images) and of the validation images (without repeats),
the sums of the metrics added over processes; rank 0 alone writes the files, prints and publishes.
The steps, all from the zoo's own tools:

- the data: `zoo.datasets.image_data` (class folders split by the seed, or ``train/`` and ``val/``,
  or a CSV), unreadable images skipped and counted;
- the model: `zoo.build_model` with the base weights and a head of one output per class (the
  weights' own head is kept only when its categories are the data's classes, in order), then
  `zoo.freeze` (``freeze``/``freeze_until``, ``train_norms``);
- the images: the weights' preprocessing for validation, a RandomResizedCrop and flip derived from
  it for training (`zoo.training.images`);
- the optimizer: AdamW or SGD over `zoo.param_groups` (``head_lr`` for the catalog's classifier
  layers, ``layer_decay``, no weight decay on norms and biases), a cosine schedule with linear
  warm-up stepped every batch; bfloat16 (float16 with loss scaling where bfloat16 is missing)
  autocast and channels-last on CUDA;
- every epoch: validation loss, acc@1 and acc@5 (acc@k with k capped at the number of classes), the
  best weights by acc@1 (then lower validation loss) kept as ``best.safetensors``, a checkpoint
  ``checkpoint.pt`` and the run record ``run.json`` rewritten, then one line printed; early stopping
  after ``patience`` epochs without a better one;
- at the end, with ``publish``: the best weights published once (`zoo.publish_weights`) with their
  validation metrics, the classes and the preprocessing.

Repeatable on one machine: the seed drives the head's initialisation, the split, the order of the
images each epoch (a seeded `DistributedSampler`: several processes each take their share of the same
order) and each image's augmentation (seeded per image, epoch and run). A
checkpoint holds the model, optimizer, scheduler, loss scaler, random states, epoch, step count, the
best so far and the metrics; it is read back with ``torch.load(weights_only=True)`` (no code runs),
and a resumed run repeats the interrupted epoch from its start, so it ends with the same optimizer
steps as a run never interrupted. Every file is written whole or not at all (a temporary file
renamed into place), under a lock on the output folder.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import os
import platform
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

import zoo
from zoo.catalog.api import weights_source
from zoo.context import current
from zoo.datasets import ImageData, dataset_name, image_data
from zoo.errors import UsageError, excerpt, first_line
from zoo.modeling.freezing import freeze
from zoo.modeling.optim import param_groups
from zoo.modeling.surgery import has_submodule
from zoo.outputs import file_lock, make_folders, move_into_place, partial_file
from zoo.preprocessing import PreprocessSpec
from zoo.records import ModelRecord
from zoo.registry import replace_heads, build_model
from zoo.training.distributed import World, join, launch, read_recipe, write_error, write_result
from zoo.training.images import (
    Augmentation,
    ImageDataset,
    SampleSeeds,
    default_spec,
    eval_transform,
    image_size,
    train_transform,
)
from zoo.training.recipe import (
    BEST_FILE,
    CHECKPOINT_FILE,
    GPU_WORKERS,
    RUN_FILE,
    EpochMetrics,
    FinetuneResult,
    Recipe,
    inherited_options,
)

#: What a run record's ``format`` says: its layout's version.
RUN_FORMAT = "zoo-finetune-run/1"
#: The temporary files of a run's writers (`zoo.outputs.partial_file`), removed once the folder's lock is held.
_LEFTOVERS = rf"\.({'|'.join(re.escape(n) for n in (BEST_FILE, CHECKPOINT_FILE, RUN_FILE))})\.[a-z0-9_]{{8}}\.part"
#: At most this many skipped images are listed by name in the run record (all are counted).
_LISTED_SKIPPED = 100


def finetune(model: str | None = None, data: str | os.PathLike[str] | None = None, *, recipe_from: str | None = None,
             **options: Any) -> FinetuneResult:
    """Fine-tune catalog model `model` on the labelled images at `data`; the module docstring says how.

    `data` is a folder of class folders (split by `val_fraction` and `seed`, or with ``train/``
    and ``val/`` subfolders) or a CSV of ``path,label`` rows (`zoo.datasets.image_data`). Options,
    each a field of `zoo.training.recipe.Recipe` (defaults in brackets):

    - ``weights`` ["DEFAULT"]: the base weights (any name `zoo.get_model` takes, published ones too);
      ``"DEFAULT"`` is the model's default weights, or none where it has none; None trains from random
      initialisation. Their preprocessing is the evaluation transform; without weights (or weights
      without preprocessing) the model's default weights' preprocessing is used, and a model with
      none at all takes its catalog ``input_size`` (C, H, W), resized by 1/0.875 and center-cropped
      as torchvision's presets do, with ImageNet's mean and std (their averages for one channel).
    - ``epochs`` [10], ``batch_size`` [32], ``optimizer`` ["adamw" or "sgd"], ``lr`` [1e-3],
      ``head_lr`` [lr] for the classifier layers, ``weight_decay`` [0.05 AdamW, 1e-4 SGD; never on
      norms and biases], ``momentum`` [0.9, SGD], ``warmup_epochs`` [1.0, may be fractional],
      ``layer_decay`` [None]: `zoo.param_groups`'.
    - ``freeze`` [()] module paths or patterns, or ``freeze_until`` [None] a module path
      (`zoo.freeze`); ``train_norms`` [False] keeps the frozen part's normalisation layers training.
    - ``val_fraction`` [0.2], ``seed`` [0], ``patience`` [None: no early stopping].
    - ``augment`` [True], ``flip`` [True], ``min_scale`` [0.08]: RandomResizedCrop's smallest area.
    - ``mixed_precision`` [True] (CUDA only), ``device`` [CUDA when there is one, else the CPU],
      ``workers`` [loader processes: 0 on the CPU, 8 on a GPU].
    - ``output`` ["finetune-MODEL"]: the folder of ``best.safetensors``, ``checkpoint.pt`` and
      ``run.json``; a run already there is refused unless ``resume`` [False] continues it (with the
      same recipe) or ``force`` [False] starts afresh.
    - ``publish`` [None]: ``NAMESPACE/NAME`` to publish the best weights as, once, at the end.
    - ``nproc`` [1]: processes (on each machine), started by torchrun, training data-parallel (the module
      docstring); on CUDA each takes its own GPU. ``nnodes`` [1] machines, meeting at ``master_addr`` and
      ``master_port`` [29500] (each giving its ``node_rank``) or at a c10d ``rdzv_endpoint`` (HOST:PORT).
    - ``quiet`` [False]: no progress bar (there is none when stderr is not a terminal) and no lines.

    - ``recipe_from`` [None]: published weights ``NAMESPACE/NAME[:VERSION|@ALIAS]`` made by ``zoo finetune``:
      re-run their recipe (model, base weights, every training argument, seed) on `data`, without `model`
      (`zoo.training.recipe.inherited_options`); options given here override the recipe's.

    Returns the metrics of every epoch, the best epoch and where the files are. Bad arguments and bad
    data are refused in one line (`zoo.UsageError`) before anything is written.
    """
    if data is None:
        raise UsageError("finetune needs data: a folder of class folders or a CSV file of path,label rows")
    if recipe_from is not None:
        if model is not None:
            raise UsageError(f"recipe_from (--recipe-from) {excerpt(recipe_from)} names the model already; "
                             f"drop the model {excerpt(model)}")
        from zoo.publish import resolve_published

        published = resolve_published(recipe_from)
        inherited = inherited_options(published.spec, published.run)
        model, options = inherited.pop("model"), {**inherited, **options}
    elif model is None:
        raise UsageError("finetune needs a model (or recipe_from, published weights whose recipe to re-run)")
    try:
        recipe = Recipe(model=model, data=data, **options)
    except TypeError as exc:
        raise UsageError(f"finetune: {first_line(exc)}; its options are the fields of zoo.training.recipe.Recipe"
                         ) from None
    return launch(recipe) if recipe.world_size > 1 else run(recipe)


def run(recipe: Recipe, world: World = World()) -> FinetuneResult:
    """Run `recipe` (see `finetune`) as process `world` of those training together."""
    data = image_data(recipe.data, val_fraction=recipe.val_fraction, seed=recipe.seed)
    if not data.val:
        raise UsageError(f"{recipe.data}: no readable validation images ({len(data.skipped)} skipped); "
                         "the best weights are chosen on them")
    if world.main_bytes(data.manifest_sha256.encode()).decode() != data.manifest_sha256:
        raise UsageError(f"{recipe.data}: process {world.rank} finds other images or labels there than process 0 "
                         "(data manifest hashes differ); give every machine the same data")
    with contextlib.ExitStack() as held:
        previous = world.main_state(_claim_folder(recipe, data, held) if world.main else None)
        training = _Run(recipe, data, previous, world)
        if recipe.force and world.main:  # only now that the run is set up: a later resume must not find the old one
            for name in (CHECKPOINT_FILE, BEST_FILE):
                with contextlib.suppress(FileNotFoundError):
                    (recipe.folder / name).unlink()
        return training.train()


def rank_main(argv: list[str]) -> int:
    """The entry of each process torchrun starts (`zoo.training.distributed.launch`): ``RECIPE_FILE FOLDER``.
    The first process of each machine writes the result into FOLDER (the same metrics on each; only rank 0's
    machine has the files and the published name); a failing process writes its error there and returns 1."""
    recipe_file, folder = argv
    try:
        recipe = read_recipe(recipe_file)
        world = join(_device(recipe.device).type == "cuda")
    except Exception as exc:  # noqa: BLE001 - every failure reaches the user, in one line, by the launcher
        write_error(folder, exc)
        return 1
    try:
        result = run(recipe, world)
        if world.local_rank == 0:
            write_result(folder, result)
    except Exception as exc:  # noqa: BLE001 - written before the group ends: the others' errors that follow are later
        write_error(folder, exc)
        return 1
    finally:
        torch.distributed.destroy_process_group()
    return 0


# -- the output folder ----------------------------------------------------------------------


def _claim_folder(recipe: Recipe, data: ImageData, held: contextlib.ExitStack) -> dict[str, Any] | None:
    """Make the output folder and hold its lock (until `held` closes); the checkpoint to continue from
    (`_previous_run`)."""
    folder = recipe.folder
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"output {excerpt(str(folder))} is not a folder; give a folder for the run's files")
    make_folders(folder)
    if not held.enter_context(file_lock(folder / RUN_FILE, wait=False, leftovers=_LEFTOVERS)):
        raise UsageError(f"another run is writing {folder}; wait for it, or give another output folder")
    return _previous_run(recipe, data)


def _previous_run(recipe: Recipe, data: ImageData) -> dict[str, Any] | None:
    """The checkpoint to continue from (None: start at epoch 0), after refusing what may not be done:
    overwriting a run without `force`, resuming nothing, resuming with another recipe or data."""
    folder = recipe.folder
    found = any((folder / name).exists() for name in (RUN_FILE, CHECKPOINT_FILE, BEST_FILE))
    if not recipe.resume:
        if found and not recipe.force:
            raise UsageError(f"{folder} holds a fine-tuning run already; pass --resume (resume=True) to continue "
                             "it, --force (force=True) to start afresh, or another --output")
        return None
    if not found:
        raise UsageError(f"nothing to resume in {folder}: it holds no {RUN_FILE} or {CHECKPOINT_FILE}")
    checkpoint = _load_checkpoint(folder / CHECKPOINT_FILE) if (folder / CHECKPOINT_FILE).exists() else None
    record = checkpoint if checkpoint is not None else _read_json(folder / RUN_FILE)
    try:
        before = Recipe.from_json(record["recipe"])
        manifest = record["data"]["manifest_sha256"]
    except (KeyError, TypeError, UsageError) as exc:
        raise UsageError(f"cannot resume the run in {folder}: its record is not a zoo finetune run's "
                         f"({first_line(exc)})") from None
    changed = recipe.differences(before)
    if changed:
        raise UsageError(f"cannot resume the run in {folder} with another recipe ({'; '.join(changed)}); give "
                         "its arguments again, or --force to start afresh")
    if manifest != data.manifest_sha256:
        raise UsageError(f"cannot resume the run in {folder}: its data had manifest {manifest[:16]}..., this data "
                         f"{data.manifest_sha256[:16]}... (other images or labels); --force starts afresh")
    return checkpoint


def _load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint read as tensors and plain data only (no code runs), to the CPU."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever cannot be read is refused in one line
        raise UsageError(f"cannot resume from {path}: {first_line(exc)}; --force starts afresh") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != RUN_FORMAT:
        raise UsageError(f"cannot resume from {path}: not a zoo finetune checkpoint; --force starts afresh")
    return checkpoint


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot resume from {path}: {first_line(exc)}; --force starts afresh") from None


def _write(target: Path, write: Callable[[Path], None]) -> None:
    """Write `target` whole or not at all: `write` fills a temporary file beside it (`zoo.outputs.partial_file`),
    which is then fsynced and renamed into place (`zoo.outputs.move_into_place`); removed on any failure."""
    part = partial_file(target.parent, target.name)
    try:
        write(part)
        os.chmod(part, 0o644)
        move_into_place(part, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise


# -- the model and its weights --------------------------------------------------------------


@dataclass(frozen=True)
class _Base:
    """The model built for the data, and what it was built from."""

    model: nn.Module
    record: ModelRecord
    weights: str | None  # the base weights' canonical name (a published one's NS/NAME:VERSION)
    sha256: str | None
    spec: PreprocessSpec
    head: str  # what happened to the head, for people


def _base_model(recipe: Recipe, classes: tuple[str, ...]) -> _Base:
    """`recipe`'s model with its base weights and a head for `classes`; the weights' name, hash and
    preprocessing. The head's initialisation is seeded by the caller."""
    catalog = current().catalog
    record = catalog.describe(recipe.model)
    if record.task != "classification":
        raise UsageError(f"{record.name} is a {record.task} model; zoo finetune trains classification models")
    weights = recipe.weights
    if weights is not None and weights.upper() == "DEFAULT" and record.default_weights is None:
        weights = None  # a model without weights trains from random initialisation
    built = build_model(record.qualified_name, weights=weights, num_classes=len(classes))
    # after the build: a file first fetched by it taught the catalog its hash (zoo.registry)
    source = weights_source(catalog, record, weights) if weights is not None else None
    name, sha256, categories, transforms = ((source.name, source.sha256, source.categories, source.preprocessing)
                                            if source is not None else (None, None, None, None))
    if not transforms:  # no weights, or weights without preprocessing: the default weights' (as zoo export takes)
        default = next((w for w in record.weights if w.is_default), None)
        transforms = default.transforms if default is not None else None
    spec = PreprocessSpec.from_json(transforms) if transforms else default_spec(record.input_size, record.name)
    if categories is not None and list(categories) == list(classes):
        head = f"the weights' head of {len(classes)} classes kept (the same classes)"
    else:
        if categories is not None and len(categories) == len(classes):  # build_model kept a head of that size
            replace_heads(built.model, record.classifier, len(classes))
        head = f"a new head of {len(classes)} classes"
    return _Base(built.model, record, name, sha256, spec, head)


def _frozen(model: nn.Module, recipe: Recipe) -> str | None:
    """Freeze what `recipe` says; the report's first line, or None when nothing is frozen."""
    norm = "train" if recipe.train_norms else "frozen"
    if recipe.freeze:
        return str(freeze(model, list(recipe.freeze), norm=norm)).splitlines()[0]
    if recipe.freeze_until is not None:
        return str(freeze(model, until=recipe.freeze_until, norm=norm)).splitlines()[0]
    return None


def _optimizer(model: nn.Module, recipe: Recipe, classifier: list[str]) -> torch.optim.Optimizer:
    """AdamW or SGD over `zoo.param_groups`: `head_lr` for the `classifier` layers, `lr` for the rest."""
    lr: float | dict[str, float] = recipe.lr
    if recipe.head_lr is not None:
        heads = [path for path in classifier if has_submodule(model, path)]
        if not heads:
            raise UsageError(f"{recipe.model} declares no classifier layers, so head_lr (--head-lr) has nothing "
                             "to apply to; use lr alone")
        lr = {**{path: recipe.head_lr for path in heads}, "*": recipe.lr}
    groups = param_groups(model, lr, weight_decay=recipe.weight_decay, layer_decay=recipe.layer_decay)
    if not groups:
        raise UsageError("every parameter is frozen: nothing to train; freeze less")
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum)
    return torch.optim.AdamW(groups, lr=recipe.lr)


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The learning-rate factor of optimizer step `step` (from 0): linear warm-up from 1/`warmup_steps` to 1,
    then a cosine from 1 down to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _device(name: str | None, world: World = World()) -> torch.device:
    """The device `name` says (CUDA when there is one, by default); of several processes each takes its own GPU."""
    if name is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise UsageError(f"device {excerpt(name)} is not a torch device; use e.g. cpu, cuda or cuda:1") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"device {name}: CUDA is not available here; use cpu")
    return world.device if world.size > 1 and device.type == "cuda" else device


def _device_text(device: torch.device) -> str:
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def _versions() -> dict[str, str | None]:
    import torchvision

    try:
        timm = importlib.metadata.version("timm")  # not imported: it is slow to import and unused here
    except importlib.metadata.PackageNotFoundError:
        timm = None
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm, "zoo": zoo.__version__}


# -- the run --------------------------------------------------------------------------------


class _Run:
    """One run of a recipe: built, then trained epoch by epoch from where `previous` (a checkpoint) ended."""

    def __init__(self, recipe: Recipe, data: ImageData, previous: dict[str, Any] | None, world: World) -> None:
        self.recipe, self.data, self.folder, self.world = recipe, data, recipe.folder, world
        self.started = time.monotonic()
        self.device = _device(recipe.device, world)
        self.cuda = self.device.type == "cuda"
        torch.manual_seed(recipe.seed)
        random.seed(recipe.seed)
        self.base = _base_model(recipe, data.classes)
        self.frozen = _frozen(self.base.model, recipe)
        self.memory_format = torch.channels_last if self.cuda else torch.preserve_format
        self.model = self.base.model.to(self.device, memory_format=self.memory_format)
        # what trains: several processes average their gradients (and start from rank 0's model)
        self.network: nn.Module = self.model if world.size == 1 else DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.cuda else None)
        self.amp_dtype = torch.bfloat16 if self.cuda and torch.cuda.is_bf16_supported() else torch.float16
        self.amp = self.cuda and recipe.mixed_precision
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.train_loader, self.val_loader, self.seeds, self.sampler = self._loaders()
        self.optimizer = _optimizer(self.model, recipe, self.base.record.classifier)
        per_epoch = len(self.train_loader)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(round(recipe.warmup_epochs * per_epoch), recipe.epochs * per_epoch))
        self.history: list[EpochMetrics] = []
        self.epoch = self.step = self.bad_epochs = 0
        self.best: dict[str, Any] | None = None  # epoch, acc@1, val_loss
        self.wall_before = 0.0  # seconds of the run's earlier processes
        self.resumed_after: list[int] = []
        self.stopped_early = False
        self.published: str | None = None
        if previous is not None:
            self._restore(previous)

    # -- set-up

    def _loaders(self) -> tuple[DataLoader, DataLoader, SampleSeeds, DistributedSampler]:
        recipe, data, spec = self.recipe, self.data, self.base.spec
        size = image_size(spec, self.base.record.name)
        augmentation = Augmentation(recipe.augment, recipe.min_scale, recipe.flip)
        seeds = SampleSeeds(recipe.seed)
        train_set = ImageDataset(data, data.train, train_transform(spec, augmentation, size), seeds)
        # each process's share of the validation images: every image once (no padding), the sums added up
        world = self.world
        val_set = Subset(ImageDataset(data, data.val, eval_transform(spec)), range(world.rank, len(data.val),
                                                                                   world.size))
        # each process's share of a seeded order (seed + epoch), padded to equal shares: the same steps on each
        sampler = DistributedSampler(train_set, num_replicas=world.size, rank=world.rank, shuffle=True,
                                     seed=recipe.seed)
        workers = recipe.workers if recipe.workers is not None else (GPU_WORKERS if self.cuda else 0)
        loading = {"num_workers": workers, "pin_memory": self.cuda}
        # timm's rule: whole batches only (a batch of one breaks BatchNorm), unless there is not one whole batch
        train = DataLoader(train_set, batch_size=recipe.batch_size, sampler=sampler,
                           drop_last=len(sampler) > recipe.batch_size, **loading)
        val = DataLoader(val_set, batch_size=recipe.batch_size, shuffle=False, **loading)
        return train, val, seeds, sampler

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from `checkpoint`: every state as it was at the end of its epoch."""
        try:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
            self.scaler.load_state_dict(checkpoint["scaler"])
            self.epoch, self.step = checkpoint["epoch"], checkpoint["step"]
            self.bad_epochs, self.best = checkpoint["bad_epochs"], checkpoint["best"]
            self.history = [EpochMetrics.from_json(m) for m in checkpoint["history"]]
            self.wall_before = checkpoint["wall_s"]
            self.resumed_after = [*checkpoint["resumed_after"], self.epoch]
            self.stopped_early = checkpoint["stopped_early"]
            self.published = checkpoint["published"]
            rng = checkpoint["rng"]
            torch.set_rng_state(rng["torch"])
            random.setstate(rng["python"])
            if self.cuda and len(rng["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(rng["cuda"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise UsageError(f"cannot resume from {self.folder / CHECKPOINT_FILE}: {first_line(exc)}; "
                             "--force starts afresh") from None

    # -- training

    def train(self) -> FinetuneResult:
        recipe, main = self.recipe, self.world.main
        self._say(self._opening())
        if not self.history and main:
            self._write_record("running")
        while self.epoch < recipe.epochs and not self.stopped_early:
            metrics = self._epoch()
            self.history.append(metrics)
            self.epoch += 1
            improved = self.best is None or (metrics.acc1, -metrics.val_loss) > (self.best["acc@1"],
                                                                                  -self.best["val_loss"])
            if improved:
                self.best = {"epoch": metrics.epoch, "acc@1": metrics.acc1, "val_loss": metrics.val_loss}
                if main:
                    self._save_best()
            self.bad_epochs = 0 if improved else self.bad_epochs + 1
            self.stopped_early = recipe.patience is not None and self.bad_epochs >= recipe.patience
            if main:
                self._save_checkpoint()
                self._write_record("running")
            self._say(metrics.line(recipe.epochs) + ("; best so far" if improved else ""))
        if self.stopped_early:
            self._say(f"stopped early: no better acc@1 for {recipe.patience} epochs")
        best = self.history[self.best["epoch"] - 1]
        self._say(f"best epoch {best.epoch}: acc@1 {best.acc1:.2f}%, acc@5 {best.acc5:.2f}%; "
                  f"{self.folder / BEST_FILE}")
        if recipe.publish is not None and self.published is None and main:
            self.published = self._publish(best)
            self._save_checkpoint()  # a later resume knows it is published
            self._say(f"published {self.published}")
        if main:
            self._write_record(self._final_status())
        return FinetuneResult(self.folder, self.base.record.qualified_name, self.base.weights, tuple(self.history),
                              self.best["epoch"], self.step, self.stopped_early, self._wall(),
                              _device_text(self.device), self.published)

    def _epoch(self) -> EpochMetrics:
        """Train one epoch and validate; its metrics."""
        from zoo import progress

        recipe, epoch = self.recipe, self.epoch
        self.sampler.set_epoch(epoch)
        self.seeds.epoch = epoch
        self.network.train()
        criterion = nn.CrossEntropyLoss()
        loss_sum, images = torch.zeros((), device=self.device), 0  # this process's
        began = time.perf_counter()
        with progress.bar(len(self.train_loader), f"epoch {epoch + 1}/{recipe.epochs}", unit="batch",
                          show=not recipe.quiet and self.world.main, leave=False) as bar:
            for inputs, labels in self.train_loader:
                inputs = inputs.to(self.device, non_blocking=True, memory_format=self.memory_format)
                labels = labels.to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                    loss = criterion(self.network(inputs), labels)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                self.step += 1
                loss_sum += loss.detach().float() * len(labels)
                images += len(labels)
                if not bar.disable:  # .item() waits for the device: only for a bar someone sees
                    rate = images / (time.perf_counter() - began)
                    bar.set_postfix(loss=f"{loss.item():.4f}", images_s=f"{rate:.1f}", refresh=False)
                    bar.update()
        seconds = time.perf_counter() - began
        # every process's loss sum and images (in float64 on the collectives' device: gloo or nccl)
        totals = self.world.sum(torch.stack([loss_sum.double(), torch.tensor(float(images), dtype=torch.float64,
                                                                             device=self.device)]).to(self.world.device))
        loss_total, images_total = totals.tolist()
        val_loss, acc1, acc5 = self._validate()
        return EpochMetrics(epoch + 1, loss_total / max(images_total, 1), val_loss, acc1, acc5, images_total / seconds,
                            self.optimizer.param_groups[0]["lr"], time.perf_counter() - began)

    @torch.no_grad()
    def _validate(self) -> tuple[float, float, float]:
        """Validation loss (mean), acc@1 and acc@5 (percent; k capped at the number of classes)."""
        self.model.eval()
        for buffer in self.model.buffers():  # rank 0's running statistics, the ones its best.safetensors holds
            self.world.from_main(buffer.data)
        k = min(5, len(self.data.classes))
        # loss sum, top-1 and top-k hits, images: sums, so that processes' shares add up
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        for inputs, labels in self.val_loader:
            inputs = inputs.to(self.device, non_blocking=True, memory_format=self.memory_format)
            labels = labels.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                logits = self.model(inputs).float()
            hits = logits.topk(k, dim=1).indices == labels[:, None]
            sums += torch.stack([nn.functional.cross_entropy(logits, labels, reduction="sum").double(),
                                 hits[:, 0].sum().double(), hits.any(dim=1).sum().double(),
                                 torch.tensor(len(labels), dtype=torch.float64, device=self.device)])
        loss, top1, topk, count = self.world.sum(sums.to(self.world.device)).tolist()
        return loss / count, 100.0 * top1 / count, 100.0 * topk / count

    # -- files

    def _save_best(self) -> None:
        from safetensors.torch import save_file

        # copies on the CPU, in the standard layout: safetensors takes neither shared nor channels-last tensors
        tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.model.state_dict().items()}
        _write(self.folder / BEST_FILE, lambda part: save_file(tensors, str(part), metadata={"format": "pt"}))

    def _save_checkpoint(self) -> None:
        rng = {"torch": torch.get_rng_state(), "python": random.getstate(),
               "cuda": torch.cuda.get_rng_state_all() if self.cuda else []}
        checkpoint = {
            "format": RUN_FORMAT, "recipe": self.recipe.to_json(), "data": self.data.to_json(),
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "step": self.step, "bad_epochs": self.bad_epochs, "best": self.best,
            "history": [m.to_json() for m in self.history], "wall_s": self._wall(),
            "resumed_after": self.resumed_after, "stopped_early": self.stopped_early,
            "published": self.published, "rng": rng,
        }
        _write(self.folder / CHECKPOINT_FILE, lambda part: torch.save(checkpoint, part))

    def _write_record(self, status: str) -> None:
        """Write the run record (`_record`) as ``run.json``."""
        text = json.dumps(self._record(status), indent=2) + "\n"
        _write(self.folder / RUN_FILE, lambda part: part.write_text(text, encoding="utf-8"))

    def _record(self, status: str) -> dict[str, Any]:
        """The run record: what the run is made of and what it measured so far."""
        return {
            "format": RUN_FORMAT, "status": status, "recipe": self.recipe.to_json(),
            "model": self.base.record.qualified_name,
            "base_weights": {"name": self.base.weights, "sha256": self.base.sha256},
            "preprocessing": self.base.spec.to_json(), "head": self.base.head, "frozen": self.frozen,
            "data": {**self.data.to_json(), "root": str(self.data.root)},
            "skipped_images": [{"path": p, "reason": r} for p, r in self.data.skipped[:_LISTED_SKIPPED]],
            "versions": _versions(), "device": _device_text(self.device),
            "epochs": [m.to_json() for m in self.history],
            "best": None if self.best is None else self.history[self.best["epoch"] - 1].to_json(),
            "steps": self.step, "steps_per_epoch": len(self.train_loader), "world_size": self.world.size,
            "backend": self.world.backend, "images_per_step": self.recipe.batch_size * self.world.size,
            "wall_s": self._wall(),
            "resumed_after": self.resumed_after, "stopped_early": self.stopped_early,
            "published": self.published, "written_at": datetime.now(timezone.utc).isoformat(),
            "files": {"best": BEST_FILE, "checkpoint": CHECKPOINT_FILE},
        }

    def _final_status(self) -> str:
        return "stopped early" if self.stopped_early else "finished"

    def _publish(self, best: EpochMetrics) -> str:
        """Publish ``best.safetensors`` as the next version of ``recipe.publish``, with the run record (with the
        run's final status) as its lineage; its spec."""
        from zoo.publish import publish_weights

        run = self._record(self._final_status())

        dataset, counts = dataset_name(self.recipe.data), self.data.counts()
        description = (f"zoo finetune of {self.base.weights or 'a randomly initialised model'} on {dataset} "
                       f"({counts['train']} training, {counts['val']} validation images; data manifest sha256 "
                       f"{self.data.manifest_sha256}); best of {len(self.history)} epochs: epoch {best.epoch}")
        published = publish_weights(
            self.base.record.qualified_name, self.folder / BEST_FILE, name=self.recipe.publish,
            metrics={f"{dataset}:acc@1": best.acc1, f"{dataset}:acc@5": best.acc5},
            categories=list(self.data.classes), from_weights=self.base.weights, description=description,
            preprocessing=self.base.spec, run=run)
        return published.spec

    # -- reporting

    def _wall(self) -> float:
        return self.wall_before + time.monotonic() - self.started

    def _opening(self) -> str:
        counts = self.data.counts()
        skipped = f", {counts['skipped']} unreadable skipped" if counts["skipped"] else ""
        frozen = f"; {self.frozen}" if self.frozen else ""
        resumed = f"; resuming after epoch {self.epoch} (step {self.step})" if self.resumed_after else ""
        return (f"fine-tuning {self.base.record.qualified_name} from {self.base.weights or 'random initialisation'} "
                f"on {self.data.root}: {len(self.data.classes)} classes, {counts['train']} training and "
                f"{counts['val']} validation images{skipped}; {self.base.head}{frozen}; "
                f"{self._where()}; writing {self.folder}{resumed}")

    def _where(self) -> str:
        """The device, and the processes where there are several."""
        world = self.world
        return _device_text(self.device) if world.size == 1 else (
            f"{world.size} processes ({world.backend}), rank 0 on {_device_text(self.device)}")

    def _say(self, line: str) -> None:
        if not self.recipe.quiet and self.world.main:
            print(line, flush=True)
