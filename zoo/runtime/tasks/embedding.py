"""The embedding task: the runtime side (see `zoo.runtime.tasks`; the export side is `zoo.export.tasks`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zoo.errors import UsageError
from zoo.runtime.tasks import DecodeOptions, Result, RuntimeTask, captioned, main_output
from zoo.shapes import onnx_shape_text

if TYPE_CHECKING:
    from PIL import Image

#: Values of the vector shown by `str` and drawn under the image.
_SHOWN = 4


@dataclass(frozen=True)
class EmbeddingResult(Result):
    """One image's feature vector (a feature map is flattened, channels first). `zoo.runtime` names it `Embedding`."""

    vector: np.ndarray  # (D,) float32
    task: ClassVar[str] = "embedding"

    @property
    def norm(self) -> float:
        """The vector's Euclidean length (what cosine similarity divides by)."""
        return float(np.linalg.norm(self.vector.astype(np.float64)))

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "task": self.task, "dimensions": int(self.vector.size), "norm": self.norm,
                "vector": [float(v) for v in self.vector]}

    def __str__(self) -> str:
        return f"{self.source or 'image'}: {_summary(self)}"


def _summary(result: EmbeddingResult) -> str:
    shown = ", ".join(f"{v:.3g}" for v in result.vector[:_SHOWN])
    more = ", ..." if result.vector.size > _SHOWN else ""
    return f"{result.vector.size}-d embedding, norm {result.norm:.3g}: [{shown}{more}]"


class Embedding(RuntimeTask):
    """Features without a classifier: N x C x H x W in, N x D (or N x D x ...) features out."""

    name = "embedding"
    output_layouts = {"*": "ND"}

    def check_outputs(self, path: str, shapes: Mapping[str, list[Any]]) -> None:
        """The main output has a batch axis and at least one more (N x D, or N x D x ...)."""
        main = main_output(list(shapes))
        if len(shapes[main]) < 2:
            raise UsageError(f"{path}: an embedding model's output {main} is N x D (or N x D x ...); "
                             f"this model's is {onnx_shape_text(shapes[main])}")

    def decode(self, outputs: Mapping[str, np.ndarray], source: str | None, options: DecodeOptions) -> Result:
        return EmbeddingResult(source, np.asarray(outputs[main_output(list(outputs))], np.float32).reshape(-1))

    def draw(self, result: Result, image: Image.Image) -> Image.Image:
        """`image` with the vector's size, norm and first values written under it."""
        assert isinstance(result, EmbeddingResult), type(result)
        return captioned(image, _summary(result))
