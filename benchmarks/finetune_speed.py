"""Fine-tuning speed on this machine's CPU: `zoo.finetune` at 1 and N processes, and against a bare PyTorch loop.

Data: a temporary image folder (``train/`` and ``val/`` of class folders) of random square crops of
scikit-image's sample photographs, one photograph per class, saved as JPEG (`make_images`). Models from
random weights (``weights=None``); both loops train at the crop size of the model's default weights'
preprocessing (224 px for torchvision's classifiers).

What is timed, per epoch after the first (the first is a warm-up: its start-up, first allocations and
oneDNN primitive creation are not counted):

- **training images/s**: the images of one epoch's training loop (data loading, forward, backward,
  optimizer and scheduler steps) over its seconds. For zoo it is the run's own
  `zoo.training.recipe.EpochMetrics.images_per_s` (all processes' images over rank 0's loop time);
  the bare loop is timed the same way around the same part.
- **epoch with validation**: training loop and validation; for zoo `EpochMetrics.seconds`.
- **full epoch**: from one epoch's end to the next: for zoo also the writing of ``best.safetensors``
  (when the epoch is the best so far), ``checkpoint.pt`` and ``run.json``, measured between the lines
  the run prints once an epoch's files are written. The bare loop validates every epoch too (a user's
  loop would) and writes no files, so its full epoch is its epoch with validation; the difference in
  that column is what zoo's files cost.

The bare loop is what one would write by hand with torchvision: `torchvision.datasets.ImageFolder` on
the same ``train/`` and ``val/`` folders with zoo's own transforms (`zoo.training.images`: the same
RandomResizedCrop, flip and normalisation for training, the weights' preprocessing for validation, as the
zoo run records it), a shuffling `DataLoader` of the same batch size and loader workers (none: the CPU
default of zoo), dropping the last partial batch as zoo does, AdamW with zoo's defaults (lr 1e-3, weight
decay 0.05), cross-entropy, and a `LambdaLR` stepped per batch on zoo's warm-up and cosine
(`zoo.training.finetune.warmup_cosine`). It runs in this process with torch's threads, as zoo's
1-process run does; zoo's N-process runs go through torchrun (gloo), which gives each process one
thread unless ``OMP_NUM_THREADS`` is set, and keep the same images per optimizer step (``--batch-size``
split among the processes).

Runs alternate within each round (zoo 1 process, bare, zoo N processes, ... for each model), so drift
in the machine's load falls on all of them alike; the tables give medians over rounds and epochs.
Nothing is written into the repository: the data, the catalog (synced with the torchvision plugin) and
the runs' folders live in a temporary folder removed at the end; ``--output NAME`` also writes the
table to ``benchmarks/results/NAME``.

    .venv/bin/python benchmarks/finetune_speed.py                 # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/finetune_speed.py --quick         # a smoke run, about a minute
    .venv/bin/python benchmarks/finetune_speed.py --models resnet18 --nproc 1,2 --rounds 5 --epochs 4
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _measure import markdown_table, write_result

#: What a full run uses where an argument is not given, and what ``--quick`` uses instead.
FULL = {"models": "mobilenet_v3_small,resnet18", "nproc": "1,2", "rounds": 3, "epochs": 3, "images": 200,
        "classes": 5, "size": 160, "batch_size": 16}
QUICK = {"models": "mobilenet_v3_small", "nproc": "1,2", "rounds": 1, "epochs": 2, "images": 60,
         "classes": 3, "size": 128, "batch_size": 8}
#: The fraction of each class's images kept for validation.
VAL_FRACTION = 0.2
#: The overhead of zoo's training loop over the bare loop that the issue aims below, percent.
TARGET_OVERHEAD = 10.0


@dataclass
class Samples:
    """Per-epoch figures of one configuration, every round's epochs after the first."""

    images_per_s: list[float] = field(default_factory=list)
    with_validation_s: list[float] = field(default_factory=list)
    full_epoch_s: list[float] = field(default_factory=list)


class EpochClock(io.TextIOBase):
    """A standard output that passes lines on (to `out`, or nowhere) and notes when each ``epoch N/M:`` line
    came: a zoo run prints it once that epoch's files are written."""

    def __init__(self, out: io.TextIOBase | None = None) -> None:
        self.out, self.pending, self.times = out, "", []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        now = time.perf_counter()
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        self.times += [now for line in lines if line.startswith("epoch ")]
        if self.out is not None:
            self.out.write(text)
        return len(text)


def make_images(root: Path, images: int, classes: int, size: int) -> tuple[int, int]:
    """``root/train/CLASS`` and ``root/val/CLASS`` JPEGs: random crops (half to nine tenths of the short side) of
    one sample photograph per class, every other one flipped, resized to `size`; the counts of train and val."""
    import numpy as np
    from PIL import Image

    from zoo.tools.bench import sample_photographs

    photos, names = sample_photographs()
    if len(photos) < classes:
        raise SystemExit(f"--classes {classes}: scikit-image has {len(photos)} sample photographs here")
    rng = np.random.default_rng(0)
    per_class = max(2, images // classes)
    val = max(1, round(per_class * VAL_FRACTION))
    for pixels, name in zip(photos[:classes], names):
        photo = Image.fromarray(pixels).convert("RGB")
        for split in ("train", "val"):
            (root / split / name).mkdir(parents=True)
        for i in range(per_class):
            side = int(min(photo.size) * rng.uniform(0.5, 0.9))
            x, y = (int(rng.integers(0, limit - side + 1)) for limit in photo.size)
            crop = photo.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BILINEAR)
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else crop
            crop.save(root / ("val" if i < val else "train") / name / f"{i}.jpg", quality=90)
    return (per_class - val) * classes, val * classes


def zoo_run(model: str, data: Path, output: Path, args: argparse.Namespace, nproc: int) -> tuple[Samples, dict]:
    """One `zoo.finetune` run: its epochs after the first, and its run record."""
    import zoo

    clock = EpochClock(sys.stdout if args.verbose else None)
    # a progress bar (shown on a terminal) reads the loss every batch: the run sees no terminal, as in the bare loop
    with contextlib.redirect_stdout(clock), contextlib.redirect_stderr(io.StringIO()):
        result = zoo.finetune(model, data, weights=None, epochs=args.epochs, batch_size=args.batch_size // nproc,
                              nproc=nproc, output=output, device="cpu")
    if len(clock.times) != args.epochs:
        raise SystemExit(f"zoo finetune {model}: {len(clock.times)} epoch lines for {args.epochs} epochs")
    record = json.loads(result.run_path.read_text(encoding="utf-8"))
    epochs = result.epochs[1:]
    samples = Samples([e.images_per_s for e in epochs], [e.seconds for e in epochs],
                      [b - a for a, b in zip(clock.times, clock.times[1:])])
    shutil.rmtree(output)
    return samples, record


def bare_run(model: str, data: Path, args: argparse.Namespace, preprocessing: dict) -> Samples:
    """The loop one writes by hand (module docstring) on the same images with zoo's transforms."""
    import torch
    import torchvision
    from torch import nn
    from torch.utils.data import DataLoader

    from zoo.preprocessing import PreprocessSpec
    from zoo.training.finetune import warmup_cosine
    from zoo.training.images import Augmentation, eval_transform, image_size, train_transform

    spec = PreprocessSpec.from_json(preprocessing)
    train_set = torchvision.datasets.ImageFolder(
        str(data / "train"), transform=train_transform(spec, Augmentation(), image_size(spec, model)))
    val_set = torchvision.datasets.ImageFolder(str(data / "val"), transform=eval_transform(spec))
    torch.manual_seed(0)
    network = torchvision.models.get_model(model, weights=None, num_classes=len(train_set.classes))
    train = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=0)
    val = DataLoader(val_set, batch_size=args.batch_size, num_workers=0)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3, weight_decay=0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(len(train), args.epochs * len(train)))
    criterion = nn.CrossEntropyLoss()
    samples = Samples()
    for epoch in range(args.epochs):
        began = time.perf_counter()
        network.train()
        images, loss_sum = 0, 0.0
        for inputs, labels in train:
            loss = criterion(network(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(labels)
            images += len(labels)
        trained = time.perf_counter() - began
        network.eval()
        correct = 0
        with torch.no_grad():
            for inputs, labels in val:
                correct += int((network(inputs).argmax(dim=1) == labels).sum())
        validated = time.perf_counter() - began
        if epoch:
            samples.images_per_s.append(images / trained)
            samples.with_validation_s.append(validated)
            samples.full_epoch_s.append(validated)
    return samples


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    import platform

    return platform.processor() or platform.machine()


def median(values: Sequence[float], digits: int = 1) -> str:
    return f"{statistics.median(values):,.{digits}f}" if values else "-"


def spread(values: Sequence[float]) -> str:
    return f"{min(values):,.1f}-{max(values):,.1f}" if values else "-"


def report(args: argparse.Namespace, results: dict[tuple[str, str], Samples], counts: tuple[int, int],
           preprocessing: dict[str, dict], load: tuple[tuple[float, ...], tuple[float, ...]], wall: float) -> str:
    """The tables, with the machine, its load and the data they come from."""
    import torch
    import torchvision

    crops = ", ".join(f"{model} {'x'.join(map(str, spec['crop_size']))} px" for model, spec in preprocessing.items()
                      if spec.get("crop_size")) or "each model's preprocessing size"

    threads = torch.get_num_threads()
    multi = os.environ.get("OMP_NUM_THREADS", "1 (torchrun's default)")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"Machine: {cpu_model()}, {cores} cores usable ({os.cpu_count()} online); torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, Python {sys.version.split()[0]}",
        f"Load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load[0])} before, "
        f"{', '.join(f'{x:.2f}' for x in load[1])} after; {wall / 60:.1f} min in all",
        f"Data: {counts[0]} training and {counts[1]} validation images ({args.classes} classes, "
        f"{args.size} px JPEGs, trained at {crops}), {args.batch_size} images per optimizer step, "
        f"{args.epochs} epochs per run (the first not counted), rounds: {args.rounds}, random weights; "
        f"medians over rounds x epochs.",
    ]
    if load[0][0] > cores / 2:
        lines.append(f"**The machine was busy** (load {load[0][0]:.2f} on {cores} cores at the start): threads wait "
                     "for cores, so these figures vary by several times from run to run; measure on an idle machine.")
    lines.append("")
    rows = []
    for model in args.models:
        base = results.get((model, "zoo 1"))
        for label in [f"zoo {n}" for n in args.nproc] + (["bare"] if 1 in args.nproc else []):
            got = results.get((model, label))
            if got is None:
                continue
            n = int(label.split()[1]) if label.startswith("zoo") else 1
            per_process = threads if n == 1 else multi
            speedup = (f"{statistics.median(got.images_per_s) / statistics.median(base.images_per_s):.2f}x"
                       if base is not None and label.startswith("zoo") else "")
            who = f"zoo, {n} process{'es' if n > 1 else ''}" if label.startswith("zoo") else "bare PyTorch loop"
            rows.append([model, who, per_process, f"**{median(got.images_per_s)}**", spread(got.images_per_s),
                         speedup, median(got.with_validation_s, 2), median(got.full_epoch_s, 2)])
    lines.append(markdown_table(["model", "loop", "threads/process", "train images/s", "range", "vs zoo 1 process",
                                 "epoch + validation (s)", "full epoch (s)"], rows))
    overhead_rows = []
    for model in args.models:
        zoo_1, bare = results.get((model, "zoo 1")), results.get((model, "bare"))
        if zoo_1 is None or bare is None:
            continue
        loop = 100 * (statistics.median(bare.images_per_s) / statistics.median(zoo_1.images_per_s) - 1)
        with_val = 100 * (statistics.median(zoo_1.with_validation_s) / statistics.median(bare.with_validation_s) - 1)
        full = 100 * (statistics.median(zoo_1.full_epoch_s) / statistics.median(bare.full_epoch_s) - 1)
        verdict = "met" if loop < TARGET_OVERHEAD else "NOT met"
        overhead_rows.append([model, f"**{loop:+.1f}%** ({verdict})", f"{with_val:+.1f}%", f"{full:+.1f}%"])
    if overhead_rows:
        lines += ["", f"zoo's time over the bare loop's (1 process; target: training loop under "
                  f"{TARGET_OVERHEAD:g}%):", "",
                  markdown_table(["model", "training loop", "epoch + validation", "full epoch (zoo also writes "
                                  "best.safetensors, checkpoint.pt, run.json)"], overhead_rows)]
    return "\n".join(lines)


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help=f"comma-separated catalog names [{FULL['models']}]")
    parser.add_argument("--nproc", help=f"comma-separated process counts for zoo [{FULL['nproc']}]; the bare loop "
                                        "runs where 1 is among them")
    parser.add_argument("--rounds", type=int, help=f"[{FULL['rounds']}]")
    parser.add_argument("--epochs", type=int, help=f"per run, the first not counted [{FULL['epochs']}]")
    parser.add_argument("--images", type=int, help=f"training and validation together [{FULL['images']}]")
    parser.add_argument("--classes", type=int, help=f"one sample photograph each, at most 8 [{FULL['classes']}]")
    parser.add_argument("--size", type=int, help=f"side of the JPEGs in pixels [{FULL['size']}]")
    parser.add_argument("--batch-size", type=int, help=f"images per optimizer step [{FULL['batch_size']}]")
    parser.add_argument("--threads", type=int, help="torch threads of the 1-process runs (zoo's and the bare loop, "
                        "in this process) [torch's default: one per core]; the processes of an N-process run take "
                        "OMP_NUM_THREADS, else torchrun's 1")
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute: "
                        + ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    parser.add_argument("--output", metavar="NAME", help="also write the table to benchmarks/results/NAME")
    parser.add_argument("--verbose", action="store_true", help="show the zoo runs' lines")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        args.nproc = sorted({int(n) for n in args.nproc.split(",")})
    except ValueError:
        parser.error(f"--nproc takes comma-separated whole numbers, not {args.nproc!r}")
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is a warm-up, not counted")
    if any(n < 1 or args.batch_size % n for n in args.nproc):
        parser.error(f"--batch-size {args.batch_size} must split evenly among each --nproc {args.nproc}")
    if args.rounds < 1 or not args.models or args.classes < 2 or (args.threads is not None and args.threads < 1):
        parser.error("give at least 1 round, 1 model, 2 classes and 1 thread")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = arguments(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    load_before, started = os.getloadavg(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo-finetune-speed-") as scratch:
        work = Path(scratch)
        # set before zoo reads its settings: a catalog of its own, synced with the torchvision plugin only
        os.environ["ZOO_REGISTRY_URL"] = f"sqlite:///{work / 'registry.db'}"
        os.environ["ZOO_LOAD_PLUGINS"] = "torchvision"
        data = work / "photos"
        counts = make_images(data, args.images, args.classes, args.size)
        if counts[0] < args.batch_size:
            raise SystemExit(f"--images {args.images}: {counts[0]} training images, fewer than a batch of "
                             f"{args.batch_size}")
        results: dict[tuple[str, str], Samples] = {}
        preprocessing: dict[str, dict] = {}

        def add(model: str, label: str, samples: Samples) -> None:
            total = results.setdefault((model, label), Samples())
            for name in ("images_per_s", "with_validation_s", "full_epoch_s"):
                getattr(total, name).extend(getattr(samples, name))
            print(f"  {model:<22} {label:<6} {', '.join(f'{x:.1f}' for x in samples.images_per_s)} images/s",
                  file=sys.stderr, flush=True)

        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr, flush=True)
            for model in args.models:
                for n in args.nproc:
                    samples, record = zoo_run(model, data, work / f"run-{model}-{n}", args, n)
                    preprocessing.setdefault(model, record["preprocessing"])
                    add(model, f"zoo {n}", samples)
                    if n == 1:
                        add(model, "bare", bare_run(model, data, args, preprocessing[model]))
        text = report(args, results, counts, preprocessing, (load_before, os.getloadavg()), time.perf_counter() - started)
    if args.output:
        write_result(args.output, text)
    else:
        print(text)


if __name__ == "__main__":
    main()
