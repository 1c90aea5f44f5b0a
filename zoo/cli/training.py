"""Training: ``zoo finetune``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from dataclasses import fields

from zoo.cli.common import Commands, add_json, comma_list, emit
from zoo.errors import UsageError
from zoo.training.recipe import DEFAULT_WEIGHT_DECAY, GPU_WORKERS, Recipe

#: The options whose value is a Recipe field of the same name (argparse's dest); None: not given.
_RECIPE_OPTIONS = ("weights", "epochs", "batch_size", "lr", "head_lr", "optimizer", "weight_decay", "momentum",
                   "warmup_epochs", "freeze", "freeze_until", "layer_decay", "val_fraction", "seed", "patience",
                   "min_scale", "output", "publish", "device", "workers", "nproc", "nnodes", "node_rank", "master_addr",
                   "master_port", "rdzv_endpoint")
#: The Recipe's defaults, as the help shows them.
_DEFAULTS = {field.name: field.default for field in fields(Recipe)}
#: Switches (store_true or store_false, None when not given) of a Recipe field of the same name.
_SWITCHES = ("train_norms", "resume", "force", "quiet", "augment", "flip", "mixed_precision")


def register(commands: Commands) -> None:
    p = commands.add_parser(
        "finetune", help="fine-tune a model on a folder of labelled images; keep, checkpoint and publish the best",
        usage="zoo finetune [options] MODEL DATA | zoo finetune [options] --recipe-from NS/NAME[:VERSION] DATA",
        description=("Fine-tune MODEL on DATA: a folder of class folders (split into training and validation by "
                     "--val-fraction and --seed, or with train/ and val/ subfolders) or a CSV of path,label rows. "
                     "The model gets a head for the data's classes and keeps its pretrained backbone; validation "
                     "uses the weights' preprocessing, training a RandomResizedCrop and flip derived from it. "
                     "Writes OUTPUT/best.safetensors (best validation acc@1), checkpoint.pt (every epoch; "
                     "--resume continues from it) and run.json (the run record); prints one line per epoch. "
                     "--nproc N trains on N processes (data-parallel, through torchrun: gloo on the CPU, nccl on "
                     "GPUs); the same command on each of several machines, with --nnodes and --master-addr "
                     "(--node-rank on each) or --rdzv-endpoint, trains on all of them."))
    p.add_argument("model", metavar="MODEL", nargs="?",
                   help="a catalog model, e.g. resnet18 or digits_cnn (none with --recipe-from)")
    p.add_argument("data", metavar="DATA", nargs="?", help="a folder of class folders, or a CSV file of path,label")
    p.add_argument("--recipe-from", metavar="NS/NAME[:V]",
                   help="re-run the recipe of published weights made by zoo finetune (their model, base weights, "
                        "arguments and seed) on DATA; options given override the recipe's")
    p.add_argument("--weights", metavar="WEIGHTS",
                   help="base weights (default: the model's default weights, if it has any); 'none': random "
                        "initialisation")
    p.add_argument("--epochs", type=int, metavar="N", help=f"epochs to train (default {_DEFAULTS['epochs']})")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help=f"images per batch and process (default {_DEFAULTS['batch_size']}); a step takes N times the "
                        "number of processes")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), help=f"default {_DEFAULTS['optimizer']}")
    p.add_argument("--lr", type=float, metavar="LR", help=f"peak learning rate (default {_DEFAULTS['lr']:g})")
    p.add_argument("--head-lr", type=float, metavar="LR", help="peak learning rate of the classifier layers "
                                                                "(default: --lr)")
    p.add_argument("--weight-decay", type=float, metavar="WD",
                   help=f"default {DEFAULT_WEIGHT_DECAY['adamw']:g} with adamw, {DEFAULT_WEIGHT_DECAY['sgd']:g} with "
                        "sgd; never on norms and biases")
    p.add_argument("--momentum", type=float, metavar="M", help=f"SGD's momentum (default {_DEFAULTS['momentum']:g})")
    p.add_argument("--warmup-epochs", type=float, metavar="E", help="linear warm-up before the cosine decay, in "
                                                                     f"epochs (default {_DEFAULTS['warmup_epochs']:g}; "
                                                                     "fractions allowed)")
    freezing = p.add_mutually_exclusive_group()
    freezing.add_argument("--freeze", type=comma_list, metavar="PATTERN,...",
                          help="freeze these modules (paths or globs, e.g. layer1,layer2 or 'features.[0-5]')")
    freezing.add_argument("--freeze-until", metavar="PATH", help="freeze every module up to PATH, e.g. layer3")
    p.add_argument("--train-norms", action="store_true", default=None,
                   help="keep training the normalisation layers of the frozen part")
    p.add_argument("--layer-decay", type=float, metavar="F", help="layer-wise learning-rate decay, in (0, 1]")
    p.add_argument("--val-fraction", type=float, metavar="F",
                   help=f"fraction of each class held out for validation (default {_DEFAULTS['val_fraction']:g})")
    p.add_argument("--seed", type=int, metavar="N", help=f"seed of the split, order, augmentation and head "
                                                         f"(default {_DEFAULTS['seed']})")
    p.add_argument("--patience", type=int, metavar="N", help="stop after N epochs without a better acc@1")
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                   help="train on the validation transform (no random crop, no flip)")
    p.add_argument("--no-flip", dest="flip", action="store_false", default=None,
                   help="no horizontal flips (digits, text)")
    p.add_argument("--min-scale", type=float, metavar="F",
                   help=f"the smallest area fraction RandomResizedCrop takes (default {_DEFAULTS['min_scale']:g})")
    p.add_argument("--no-amp", dest="mixed_precision", action="store_false", default=None,
                   help="no mixed precision on CUDA")
    p.add_argument("--device", metavar="DEVICE", help="cpu, cuda, cuda:1 (default: CUDA when there is one)")
    p.add_argument("--workers", type=int, metavar="N", help="image loading processes (default: 0 on the CPU, "
                                                             f"{GPU_WORKERS} on a GPU)")
    processes = p.add_argument_group("several processes (torchrun's arguments; several machines: docs/guide/finetune.md)")
    processes.add_argument("--nproc", type=int, metavar="N", help="training processes on this machine, one per GPU "
                                                                   "on CUDA (default 1: no torchrun)")
    processes.add_argument("--nnodes", type=int, metavar="N", help="machines training together (default 1)")
    processes.add_argument("--node-rank", type=int, metavar="R", help="this machine's rank, 0 to N-1, with "
                                                                       "--master-addr (default 0)")
    processes.add_argument("--master-addr", metavar="HOST", help="where the machines meet: rank 0's address")
    processes.add_argument("--master-port", type=int, metavar="PORT", help="and port (default 29500; on one "
                                                                            "machine: a free one of 127.0.0.1)")
    processes.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="or a c10d rendezvous: machines are "
                                                                         "ranked as they join")
    p.add_argument("--output", "-o", metavar="DIR", help="the run's folder (default finetune-MODEL)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", default=None,
                       help="continue the run in DIR from its last checkpoint (same arguments)")
    again.add_argument("--force", action="store_true", default=None, help="start afresh over a run in DIR")
    p.add_argument("--publish", metavar="NS/NAME", help="publish the best weights as the next version of NS/NAME")
    p.add_argument("--quiet", "-q", action="store_true", default=None, help="no progress bar, no epoch lines")
    add_json(p)
    p.set_defaults(run=_finetune)


def _finetune(args: argparse.Namespace) -> int:
    from zoo.training.finetune import finetune

    options: dict[str, Any] = {name: getattr(args, name) for name in (*_RECIPE_OPTIONS, *_SWITCHES)
                               if getattr(args, name) is not None}
    if options.get("weights", "").lower() == "none":
        options["weights"] = None
    model, data = args.model, args.data
    if args.recipe_from is not None:
        if data is not None:
            raise UsageError(f"--recipe-from {args.recipe_from} names the model already: give DATA alone, not "
                             f"{model} {data}")
        model, data = None, model
    elif data is None:
        raise UsageError("give MODEL and DATA (or --recipe-from NS/NAME[:VERSION] and DATA)")
    # with --json, standard output is the result alone: the epoch lines go to stderr
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        result = finetune(model, data, recipe_from=args.recipe_from, **options)
    emit(args, result.to_json(), lambda: f"wrote {result.best_path}, {result.checkpoint_path}, {result.run_path}")
    return 0
