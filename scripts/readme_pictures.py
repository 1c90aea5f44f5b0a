"""Draw the docs' pictures (docs/guide/deploy.md) into docs/pictures/ with `zoo.runtime.draw` and `save_drawings`.

- ``digits_grid.png``: the shipped digits model, exported to ONNX and run by the
  torch-free `Predictor` on twelve of its held-out scikit-learn digits, the top-3
  classes drawn as bars beside each digit (shown 8x larger), in one `make_grid`.
- ``coins_instances.png`` and ``coins_segmentation.png``: the results are not a network's
  (no pretrained detector can be downloaded where this runs) but scikit-image's classical
  segmentation of its ``coins`` photograph: Otsu threshold, connected regions, each
  region's box and mask, its solidity as the score. They are drawn exactly as the
  instance-segmentation and semantic-segmentation results of a model would be.

Run from the repository root: ``.venv/bin/python scripts/readme_pictures.py [--force]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "docs" / "pictures"


def digits_grid(force: bool) -> None:
    from zoo_digits.data import load_heldout

    import zoo
    from zoo.runtime import Predictor, draw, make_grid

    images, _ = load_heldout()
    chosen = np.random.default_rng(0).choice(len(images), 12, replace=False)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        exported = zoo.export_onnx("digits_cnn", work / "digits.onnx", weights="DEFAULT", record=False)
        results = Predictor(exported.path).predict([images[i] for i in chosen], topk=3)
    # drawn over each image shown 8x larger: a classification drawing does not depend on the size
    drawings = [np.asarray(draw(r, Image.fromarray(images[i]).resize((64, 64), Image.NEAREST)))
                for r, i in zip(results, chosen)]
    _keep(Image.fromarray(make_grid(drawings, nrow=6)), "digits_grid.png", force)


def coins(force: bool) -> None:
    from skimage import data, filters, measure, morphology, segmentation

    from zoo.runtime import Detections, Segmentation, draw

    photo = data.coins()
    foreground = morphology.remove_small_objects(photo > filters.threshold_otsu(photo), max_size=150)
    foreground = segmentation.clear_border(foreground)  # the lit edge of the photograph is no coin
    regions = [r for r in measure.regionprops(measure.label(foreground)) if r.area >= 300]
    boxes = np.array([[r.bbox[1], r.bbox[0], r.bbox[3], r.bbox[2]] for r in regions], np.float32)
    masks = np.zeros((len(regions), *photo.shape), bool)
    for k, r in enumerate(regions):
        masks[(k, *r.slice)] = r.image
    order = np.argsort([-r.solidity for r in regions], kind="stable")
    instances = Detections(source=None, boxes=boxes[order], labels=["coin"] * len(regions),
                           label_ids=np.ones(len(regions), np.int64),
                           scores=np.array([regions[k].solidity for k in order], np.float32),
                           masks=masks[order], task="instance_segmentation")
    _keep(draw(instances, photo), "coins_instances.png", force)
    classes = np.where(foreground, 1, 0)
    semantic = Segmentation(source=None, mask=classes, classes=["background", "coin"],
                            pixels=[int((classes == 0).sum()), int((classes == 1).sum())])
    _keep(draw(semantic, photo), "coins_segmentation.png", force)


def _keep(image: Image.Image, name: str, force: bool) -> None:
    path = OUT / name
    if path.exists() and not force:
        sys.exit(f"{path} exists; pass --force to replace it")
    OUT.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)
    print(f"wrote {path.relative_to(OUT.parent.parent)} ({path.stat().st_size // 1024} KiB, "
          f"{image.width}x{image.height})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="replace pictures that exist")
    args = parser.parse_args()
    digits_grid(args.force)
    coins(args.force)


if __name__ == "__main__":
    main()
