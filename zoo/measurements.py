"""Measured metrics in the catalog: ``zoo eval --record`` (`record_evaluation`), and what was measured
(`list_measurements`).

A plugin's weights claim their metrics (``ImageNet-1K:acc@1``), and so do published versions (their
publisher's figures); a `zoo.records.Measurement` is a figure the zoo measured itself: acc@1 and acc@5 of a
file (the weights file, or an export of them) on labelled images, with the data's manifest hash and split, so
that anyone can tell which images gave it and measure them again. Training images are never a measurement:
only the validation split, or all of a data set kept apart from training, is recorded.

A catalog stores one measurement per file, data and split (measuring them again replaces it); a registry
service takes them from a client with a token of the publish scope. No torch, no SQL: the catalog
(`zoo.catalog.api.Catalog.record_measurement`) stores them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from zoo.context import current
from zoo.datasets import MAX_IMAGES, dataset_name
from zoo.errors import UsageError, excerpt
from zoo.outputs import FULL_HASH
from zoo.records import Measurement

if TYPE_CHECKING:
    from zoo.runtime.evaluation import Evaluation

__all__ = ["MAX_MEASUREMENT_BYTES", "MEASURED_SPLITS", "Measurement", "check_measured_split", "list_measurements",
           "record_evaluation", "record_measurement"]

#: The splits a measurement may be of: the held-out images, or all of a data set (one kept apart from training).
MEASURED_SPLITS = ("val", "all")
#: What ran: a catalog model in PyTorch, or an export in ONNX Runtime.
KINDS = ("model", "export")
#: The most bytes of JSON a registry service takes as one measurement (one is a few hundred).
MAX_MEASUREMENT_BYTES = 16 << 10
#: How far ahead of this machine's clock a measurement's time may be (another machine's clock may be ahead).
FUTURE = timedelta(days=1)
_DATASET = re.compile(r"[A-Za-z0-9._-]{1,200}")  # `zoo.datasets.dataset_name`'s alphabet: never a ':'
_TEXT_LIMITS = {"model": 200, "weights": 400, "zoo_version": 100}  # the catalog's columns


def record_evaluation(evaluation: Evaluation, *, dataset: str | None = None) -> Measurement:
    """Store `evaluation`'s acc@1 and acc@5 (`zoo.evaluate`'s answer) in the catalog as measured, with the
    data's manifest hash; the stored `Measurement`.

    The figures go under `dataset` (default: the data folder's name, as ``zoo finetune`` names it,
    `zoo.datasets.dataset_name`; ``zoo eval --record`` gives a CSV file's stem). An export's measurement is
    recorded under the model and weights its metadata names. Refused in one line, with nothing stored: an
    evaluation of the training split, of an export made without pretrained weights, or of no data set.
    """
    from zoo import __version__
    from zoo.runtime.evaluation import Evaluation

    if not isinstance(evaluation, Evaluation):
        raise UsageError(f"record_evaluation takes an Evaluation (what zoo.evaluate answers), not "
                         f"{excerpt(evaluation)}")
    check_measured_split(evaluation.split)
    what = evaluation.evaluated
    if not what.get("model") or not what.get("weights"):
        raise UsageError(f"{evaluation.title()} names no catalog model and pretrained weights (an export made "
                         "without them), so there is nothing to record the measurement under")
    if evaluation.data is None or evaluation.manifest_sha256 is None:
        raise UsageError("the evaluation was made without a data set (no manifest hash); a measurement names "
                         "the images it was measured on: evaluate a folder or CSV of images")
    measurement = Measurement(
        model=what["model"], weights=what["weights"], kind=what.get("kind"), sha256=_sha256(what),
        dataset=dataset_name(evaluation.data) if dataset is None else dataset, split=evaluation.split,
        images=evaluation.images, acc1=evaluation.acc1, acc5=evaluation.acc5,
        manifest_sha256=evaluation.manifest_sha256, measured_at=datetime.now(timezone.utc), zoo_version=__version__)
    return record_measurement(measurement)


def record_measurement(measurement: Measurement) -> Measurement:
    """Store `measurement` once its values are checked (a one-line `UsageError` for any that is wrong); the
    catalog's record of it (the model as ``PLUGIN/NAME``, the weights as the catalog names them)."""
    return current().catalog.record_measurement(_checked(measurement))


def list_measurements(model: str | None = None, weights: str | None = None) -> list[Measurement]:
    """The measured metrics in the catalog (of `model`, and of its `weights`, when given), oldest first."""
    return current().catalog.measurements(model, weights)


def check_measured_split(split: Any) -> str:
    """`split` if a measurement may be of it (`MEASURED_SPLITS`); one line otherwise."""
    if split == "train":
        raise UsageError("a measurement on the training images is not a measurement; record the val split, or "
                         "all of a data set kept apart from training (--split all)")
    if split not in MEASURED_SPLITS:
        raise UsageError(f"a measurement's split must be one of {', '.join(MEASURED_SPLITS)}, not {excerpt(split)}")
    return split


def _sha256(evaluated: Mapping[str, Any]) -> Any:
    """The SHA-256 of the file that ran: the export's, or the weights file's (hashed from the verified file in
    the weights cache when the catalog did not declare it). Checked by `_checked`."""
    sha256 = evaluated.get("sha256")
    if sha256 is None and evaluated.get("kind") == "model":
        from zoo.fetch import sha256_of
        from zoo.registry import fetch_weights

        sha256 = sha256_of(fetch_weights(evaluated["weights"], model=evaluated["model"], progress=False))
    return sha256


def _checked(m: Any) -> Measurement:
    """`m` with its values checked (`Measurement`'s fields), its time in UTC; a one-line `UsageError` naming the
    first value that is wrong."""
    if not isinstance(m, Measurement):
        raise UsageError(f"a measurement must be a zoo.records.Measurement, not {excerpt(m)}")
    for name, limit in _TEXT_LIMITS.items():
        value = getattr(m, name)
        if not isinstance(value, str) or not value.strip() or len(value) > limit or not value.isprintable():
            raise UsageError(f"a measurement's {name} must be a name of 1 to {limit} printable characters, not "
                             f"{excerpt(value)}")
    if m.kind not in KINDS:
        raise UsageError(f"a measurement's kind must be one of {', '.join(KINDS)}, not {excerpt(m.kind)}")
    for name in ("sha256", "manifest_sha256"):
        value = getattr(m, name)
        if not isinstance(value, str) or not FULL_HASH.fullmatch(value):
            raise UsageError(f"a measurement's {name} must be 64 lowercase hex digits, not {excerpt(value)}")
    if not isinstance(m.dataset, str) or not _DATASET.fullmatch(m.dataset):
        raise UsageError(f"a measurement's dataset must be 1 to 200 letters, digits, '.', '_' and '-' (the name "
                         f"zoo finetune gives a data folder), not {excerpt(m.dataset)}")
    check_measured_split(m.split)
    if not isinstance(m.images, int) or isinstance(m.images, bool) or not 1 <= m.images <= MAX_IMAGES:
        raise UsageError(f"a measurement's number of images must be a whole number from 1 to {MAX_IMAGES}, "
                         f"not {excerpt(m.images)}")
    for name, value in (("acc@1", m.acc1), ("acc@5", m.acc5)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 100:  # NaN: not
            raise UsageError(f"a measurement's {name} must be a percentage from 0 to 100, not {excerpt(value)}")
    if m.acc5 < m.acc1:
        raise UsageError(f"a measurement's acc@5 ({m.acc5:g}) cannot be below its acc@1 ({m.acc1:g})")
    return replace(m, acc1=float(m.acc1), acc5=float(m.acc5), measured_at=_checked_time(m.measured_at))


def _checked_time(moment: Any) -> datetime:
    """`moment` in UTC: a datetime with its time zone, not later than `FUTURE` from now; one line otherwise."""
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise UsageError(f"a measurement's time must be a datetime with its time zone, not {excerpt(moment)}")
    try:
        utc = moment.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00
        utc = None
    if utc is None or utc > datetime.now(timezone.utc) + FUTURE:
        raise UsageError(f"a measurement's time {moment.isoformat()} is not a time it can have been measured at")
    return utc
