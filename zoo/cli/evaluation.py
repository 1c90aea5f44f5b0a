"""Measuring a classifier on labelled images: ``zoo eval``."""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.cli.common import Commands, add_json, emit
from zoo.errors import UsageError


def register(commands: Commands) -> None:
    p = commands.add_parser("eval", help="acc@1, acc@5, per-class accuracy and confusion matrix of a classifier "
                                         "on labelled images",
                            description=("Measure MODEL (a catalog model with --weights, default its DEFAULT "
                                         "weights, in PyTorch; or published weights NAMESPACE/NAME[:VERSION]) or "
                                         "EXPORT (a .onnx file written by zoo export, run by ONNX Runtime without "
                                         "torch) on DATA: a folder of class folders, with train/ and val/ "
                                         "subfolders or split by a seeded fraction as zoo finetune splits it, or "
                                         "a CSV of path,label rows. Each class of the data must be one of the "
                                         "model's categories (matched by name; by index only for a model that "
                                         "names none, with as many outputs as the data has classes). Images "
                                         "are preprocessed as the weights (or the export's metadata) declare."))
    p.add_argument("target", metavar="MODEL|EXPORT", help="a catalog model, published weights, or an .onnx file")
    p.add_argument("data", metavar="DATA", help="a folder of class folders, or a CSV file of path,label rows")
    p.add_argument("--weights", metavar="WEIGHTS",
                   help="the model's weights: DEFAULT (the default), a weights name, or published NS/NAME[:V]")
    p.add_argument("--split", choices=("val", "all", "train"), default="val",
                   help="the part of DATA measured (default val: the held-out images)")
    p.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                   help="the fraction of each class held out for validation, when DATA has no val/ (default 0.2)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="the seed of that split (default 0)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per batch (default 64)")
    p.add_argument("--device", metavar="D", help="cpu or cuda (default: cuda when usable, else cpu)")
    p.add_argument("--draw", type=Path, metavar="FILE.png", help="also draw the confusion matrix into FILE.png")
    p.add_argument("--force", action="store_true", help="with --draw: replace a file that is already there")
    p.add_argument("--record", action="store_true",
                   help="store acc@1 and acc@5 in the catalog as measured (DATA's name, its manifest hash, the "
                        "file that ran), under the model and weights (an export's: those its metadata names); "
                        "a registry service needs a token with the publish scope")
    add_json(p)
    p.set_defaults(run=_eval)


def _eval(args: argparse.Namespace) -> int:
    from zoo.datasets import dataset_name
    from zoo.measurements import check_measured_split, record_evaluation
    from zoo.runtime.evaluation import check_drawing, save_confusion
    from zoo.training.evaluate import evaluate

    if args.force and args.draw is None:
        raise UsageError("--force replaces a drawing; it needs --draw FILE.png")
    if args.record:
        check_measured_split(args.split)  # before the work
    if args.draw is not None:
        check_drawing(args.draw, overwrite=args.force)  # before the work: a refused file is told at once
    evaluation = evaluate(args.target, args.data, weights=args.weights, split=args.split,
                          val_fraction=args.val_fraction, seed=args.seed, batch_size=args.batch_size,
                          device=args.device, progress=True)
    drawn = save_confusion(evaluation, args.draw, overwrite=args.force) if args.draw is not None else None
    recorded = record_evaluation(evaluation, dataset=dataset_name(args.data)) if args.record else None
    data = {**evaluation.to_json(), **({"drawing": str(drawn)} if drawn is not None else {}),
            **({"measurement": recorded.to_json()} if recorded is not None else {})}
    said = [f"drew the confusion matrix in {drawn}"] if drawn else []
    if recorded is not None:
        said.append(f"recorded as measured for {recorded.model} {recorded.weights}: {recorded.summary()}")
    emit(args, data, lambda: "\n".join([evaluation.table(), *said]))
    return 0
