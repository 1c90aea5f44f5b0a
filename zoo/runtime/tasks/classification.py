"""The classification task: the runtime side (see `zoo.runtime.tasks`; the export side is `zoo.export.tasks`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zoo.runtime.tasks import DecodeOptions, Result, RuntimeTask, check_ranks, main_output

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class ClassificationResult(Result):
    """The `topk` most probable classes of one image (or clip), most probable first.

    `zoo.runtime` names it `Classification`.
    """

    labels: list[str]
    indices: list[int]
    probabilities: list[float]  # softmax of the logits
    task: ClassVar[str] = "classification"

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "task": self.task,
                "top": [{"label": label, "index": index, "probability": p}
                        for label, index, p in zip(self.labels, self.indices, self.probabilities)]}

    @property
    def top_class(self) -> int | None:
        return self.indices[0] if self.indices else None

    def __str__(self) -> str:
        top = ", ".join(f"{label} {p:.1%}" for label, p in zip(self.labels, self.probabilities))
        return f"{self.source or 'image'}: {top}"


def top_classes(logits: np.ndarray, source: str | None, options: DecodeOptions) -> ClassificationResult:
    """The `options.topk` classes of one row of logits (softmax in float64; ties keep the lower index first)."""
    scores = np.asarray(logits, dtype=np.float64).reshape(-1)
    exp = np.exp(scores - scores.max())
    probabilities = exp / exp.sum()
    top = np.argsort(-probabilities, kind="stable")[: options.topk]
    return ClassificationResult(source, [options.label(int(i)) for i in top], [int(i) for i in top],
                                [float(probabilities[i]) for i in top])


def draw_classes(result: Result, image: Image.Image) -> Image.Image:
    """`image` with bars of `result`'s classes and their probabilities beside it (`zoo.runtime.drawing.topk_bars`)."""
    from PIL import Image

    from zoo.runtime.drawing import topk_bars

    assert isinstance(result, ClassificationResult), type(result)
    return Image.fromarray(topk_bars(image, result.labels, result.probabilities))


class Classification(RuntimeTask):
    """Image classification: N x C x H x W in, N x classes logits out; results are the top-k classes."""

    name = "classification"
    output_layouts = {"*": "NC"}

    def check_outputs(self, path: str, shapes: Mapping[str, list[Any]]) -> None:
        """The main output (`zoo.export.tasks.main_output`) is N x classes."""
        check_ranks(path, self.name, shapes, {main_output(list(shapes)): 2})

    def decode(self, outputs: Mapping[str, np.ndarray], source: str | None, options: DecodeOptions) -> Result:
        return top_classes(outputs[main_output(list(outputs))], source, options)

    def draw(self, result: Result, image: Image.Image) -> Image.Image:
        return draw_classes(result, image)
