"""Running models: ``zoo predict`` (ONNX Runtime, no torch needed) and ``zoo bench``."""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.cli.common import Commands, add_json, emit
from zoo.errors import UsageError


def register(commands: Commands) -> None:
    _add_predict(commands)
    _add_bench(commands)


def _add_predict(commands: Commands) -> None:
    p = commands.add_parser("predict", help="run an exported model on images with ONNX Runtime (no torch needed)",
                            description=("Run FILE (an ONNX model written by zoo export) on each IMAGE with ONNX "
                                         "Runtime, preprocessing and labelling from the file's own metadata: top-k "
                                         "classes, detections, a class mask, ..., as the model's task decodes "
                                         "them (optical flow: on consecutive pairs of images). CUDA when a GPU is "
                                         "usable, else CPU; the providers the session really got are printed. "
                                         "--draw DIR also draws each prediction over its image. With --model and "
                                         "--weights instead of FILE: the newest published export of that model "
                                         "with those weights (from the registry service, ZOO_REGISTRY_URL=http://"
                                         "..., fetched and verified)."))
    p.add_argument("inputs", nargs="+", metavar="[FILE] IMAGE",
                   help="an ONNX model (e.g. written by zoo export; not with --model), then image files (PNG, JPEG, "
                        "... anything Pillow reads), or folders: their image files, by name")
    p.add_argument("--model", metavar="MODEL", help="run the published export of MODEL (with --weights)")
    p.add_argument("--weights", metavar="WEIGHTS", help="with --model: its weights, e.g. acme/defects@production")
    p.add_argument("--topk", type=int, default=5, metavar="K", help="classes per image (default 5)")
    p.add_argument("--score-threshold", type=float, default=0.5, metavar="S",
                   help="detections scoring below S are dropped (default 0.5)")
    p.add_argument("--provider", metavar="P",
                   help="cpu, cuda or tensorrt, or a comma-separated preference list (default: cuda if usable, "
                        "then cpu)")
    p.add_argument("--threads", type=int, metavar="N", help="ONNX Runtime intra-op threads (default: all cores)")
    p.add_argument("--draw", type=Path, metavar="DIR",
                   help="draw each prediction over its image into DIR/<image name>.png, and all of them in "
                        "DIR/grid.png (DIR is made if missing)")
    p.add_argument("--force", action="store_true", help="with --draw: replace files that are already there")
    add_json(p)
    p.set_defaults(run=_predict)


def _add_bench(commands: Commands) -> None:
    p = commands.add_parser("bench", help="latency and throughput: eager PyTorch, torch.compile, ONNX Runtime, int8",
                            description=("Time TARGET (a catalog model, exported to a temporary file with random "
                                         "weights unless --weights; or an exported .onnx file) in one run on every "
                                         "engine: eager PyTorch, torch.compile (--compile; default on CUDA), ONNX "
                                         "Runtime (on CUDA also through IO binding and in a CUDA graph), int8 "
                                         "(static quantisation, CPU), at each batch size and --precision. Prints "
                                         "p50/p90/p99 latency, throughput, the speed-up over eager PyTorch at the "
                                         "same precision and, on CUDA, GPU memory."))
    p.add_argument("target", metavar="NAME|FILE", help="a model name (e.g. resnet50) or an exported .onnx file")
    p.add_argument("--batch", default="1", metavar="N[,N...]", help="batch sizes, e.g. 1,8,32 (default 1)")
    p.add_argument("--provider", metavar="P", help="cpu, cuda or tensorrt (default: cuda if usable, then cpu)")
    p.add_argument("--device", choices=["cpu", "cuda"],
                   help="cpu or cuda: ONNX Runtime's provider and PyTorch's device together (cuda is refused in one "
                        "line where it is not usable); instead of --provider")
    p.add_argument("--precision", default="fp32", metavar="P[,P]",
                   help="fp32, fp16 or fp32,fp16 (default fp32): eager under autocast, ONNX Runtime on the model "
                        "converted to float16 at load")
    p.add_argument("--compile", dest="compile", action="store_true", default=None,
                   help="also time torch.compile (default on CUDA, mode max-autotune)")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="do not time torch.compile")
    p.add_argument("--weights", metavar="WEIGHTS", help="load these weights into a catalog model, e.g. DEFAULT")
    p.add_argument("--iterations", type=int, default=50, metavar="N", help="timed calls per engine and batch")
    p.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed calls first (default 5)")
    p.add_argument("--threads", type=int, metavar="N", help="threads for every engine (default: all cores)")
    p.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 engine")
    p.add_argument("--calibration", nargs="+", metavar="IMAGE",
                   help="images to calibrate int8 on (default: scikit-image's sample photographs)")
    add_json(p)
    p.set_defaults(run=_bench)


def _predict(args: argparse.Namespace) -> int:
    from zoo.runtime import Predictor, image_files, published_export, save_drawings

    if args.force and args.draw is None:
        raise UsageError("--force replaces drawings; it needs --draw DIR")
    if (args.model is None) != (args.weights is None):
        raise UsageError("--model and --weights go together: the published export of MODEL with WEIGHTS")
    if args.model is not None:
        file, images = published_export(args.model, args.weights), args.inputs
        shown = f"{args.model} with {args.weights} (published export {file.name[:16]})"
    elif len(args.inputs) < 2:
        raise UsageError("zoo predict needs an ONNX model FILE and at least one IMAGE (or --model and --weights)")
    else:
        file, images = Path(args.inputs[0]), args.inputs[1:]
        shown = str(file)
    predictor = Predictor(file, providers=_providers(args.provider), threads=args.threads)
    results = predictor.predict(image_files(images), topk=args.topk, score_threshold=args.score_threshold)
    drawings = save_drawings(results, args.draw, overwrite=args.force) if args.draw is not None else []
    data = {"model": str(file), "providers": predictor.providers, "results": [r.to_json() for r in results],
            **({"published": {"model": args.model, "weights": args.weights}} if args.model is not None else {}),
            **({"drawings": [str(p) for p in drawings]} if args.draw is not None else {})}
    emit(args, data, lambda: "\n".join([f"{shown}: {predictor.task} on {', '.join(predictor.providers)}",
                                        *(str(r) for r in results),
                                        *([f"drew {len(drawings)} file(s) in {args.draw}"] if drawings else [])]))
    return 0


def _providers(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",")] if text else None


def _bench(args: argparse.Namespace) -> int:
    from zoo.tools.bench import bench

    result = bench(args.target, batches=args.batch, providers=_providers(args.provider), weights=args.weights,
                   iterations=args.iterations, warmup=args.warmup, threads=args.threads, int8=args.int8,
                   calibration=args.calibration, precisions=args.precision, device=args.device,
                   compile=args.compile)
    emit(args, result.to_json(), lambda: str(result))
    return 0
