"""A plugin that adds a task: ``counting``, one number per image (how many bright pixels it has).

It registers the task's adapter (`zoo_fixture_counting.task.Counting`) and one model of
it, ``counter`` (`zoo_fixture_counting.model`); the zoo exports, verifies, predicts and
draws it through the adapter alone. It also registers ``tiny_segmenter``, a model of the
zoo's own segmentation task small enough to export in seconds: it marks the image's bright
pixels (class 1) at the image's own size. Both weights files live in
``$ZOO_FIXTURE_COUNTING_DIR`` (a test's folder; `zoo_fixture_counting.model` makes their
weights). Importing this module imports no torch: the task hook also runs on deployment hosts.
"""

import os
from pathlib import Path

import zoo
from zoo.preprocessing import PreprocessSpec
from zoo_fixture_counting.task import Counting

#: Images are brought to 32 x 32, values in [0, 1] (no normalisation).
PREPROCESS = PreprocessSpec(kind="classification", resize_size=(32, 32), resize_mode="exact",
                            interpolation="bilinear", antialias=True)
WEIGHTS_FILE = "counter.safetensors"
#: The segmenter takes images as they are (no resize: its mask is the image's size), values in [0, 1].
SEGMENTER_PREPROCESS = PreprocessSpec(kind="segmentation")
SEGMENTER_WEIGHTS_FILE = "tiny_segmenter.safetensors"
SEGMENTER_CATEGORIES = ["background", "bright"]


@zoo.hookimpl
def zoo_register_models():
    folder = Path(os.environ.get("ZOO_FIXTURE_COUNTING_DIR", "/nonexistent"))
    yield zoo.ModelSpec(
        name="counter", builder="zoo_fixture_counting.model:counter", task=Counting.name, input_size=(3, 32, 32),
        weights=(zoo.WeightsSpec(member="bright", url=(folder / WEIGHTS_FILE).as_uri(), transforms=PREPROCESS,
                                 is_default=True),),
    )
    yield zoo.ModelSpec(
        name="tiny_segmenter", builder="zoo_fixture_counting.model:tiny_segmenter", task="segmentation",
        input_size=(3, 32, 32),
        weights=(zoo.WeightsSpec(member="bright", url=(folder / SEGMENTER_WEIGHTS_FILE).as_uri(),
                                 meta={"categories": SEGMENTER_CATEGORIES}, transforms=SEGMENTER_PREPROCESS,
                                 is_default=True),),
    )


@zoo.hookimpl
def zoo_register_tasks():
    return [Counting()]
