"""Command-line arguments a user can get wrong, and an output that cannot be written."""

from __future__ import annotations

import json

from hostile.harness import Case


def _names(expected: set[str]):
    def check(ws, done) -> None:
        assert {m["name"] for m in json.loads(done.stdout)} == expected, done.stdout[:200]
    return check


CASES = [
    Case("cli-max-params-20-digits", ("list", "--max-params", "9" * 30),
         r"max_params must be a whole number from 0 to \d+, not 9{30}$"),
    Case("cli-max-params-not-a-count", ("list", "--max-params", "ten"), r"'ten' is not a count"),
    Case("cli-max-params-huge-garbage", ("list", "--max-params", "x" * 100_000),
         r"\.\.\. \(100002 characters\) is not a count"),
    Case("cli-max-params-suffix", ("list", "--max-params", "30k", "--json"), None, check=_names({"digits_cnn"})),
    Case("cli-min-metric-nan", ("list", "--min-metric", "acc@1=nan"), r"metric 'acc@1' must be a finite number, not nan"),
    Case("cli-min-metric-inf", ("list", "--min-metric", "acc@1=inf"), r"metric 'acc@1' must be a finite number, not inf"),
    Case("cli-min-metric-unknown", ("list", "--min-metric", "bogus@7=1"), r"unknown metric 'bogus@7'; metrics in the catalog: acc@1"),
    Case("cli-min-metric-unknown-dataset", ("list", "--min-metric", "Nowhere:acc@1=1"),
         r"no dataset of metric 'Nowhere:acc@1'; datasets with acc@1: ImageNet-1K"),
    Case("cli-min-metric-not-name-value", ("list", "--min-metric", "acc@1"), r"'acc@1' is not NAME=VALUE"),
    Case("cli-min-metric-dataset", ("list", "--min-metric", "sklearn-digits-heldout:acc@1=99", "--json"), None,
         check=_names({"digits_cnn"})),
    Case("cli-unknown-task", ("list", "--task", "nope"), r"unknown task 'nope'; tasks in the catalog: classification"),
    Case("cli-unknown-plugin", ("list", "--plugin", "y" * 5000), r"unknown plugin 'y+\.\.\. \(5002 characters\)"),
    Case("cli-huge-model-name", ("show", "x" * 100_000), r"unknown model 'x+\.\.\. \(100002 characters\)"),
    Case("cli-stdout-full-device", ("list",), r"cannot write the output: No space left on device", stdout="/dev/full"),
    Case("cli-json-stdout-full-device", ("show", "digits_cnn", "--json"), r"No space left on device", stdout="/dev/full"),
]

# sizes a user types become tensors zoo allocates: bounded before allocation
CASES += [
    Case("cli-summary-input-too-large", ("summary", "digits_cnn", "--input", "1,3,100000,100000"),
         r"input size 1x3x100000x100000 has 30,000,000,000 values; at most"),
    Case("cli-summary-input-garbage", ("summary", "digits_cnn", "--input", "1,3;;"), r"is not positive integers"),
    Case("cli-features-input-too-large", ("features", "digits_cnn", "--nodes", "features.0", "--input", "99999,1,99999,8"),
         r"has [\d,]+ values; at most"),
    Case("cli-export-input-shape-too-large", ("export", "digits_cnn", "-o", "d.onnx", "--input-shape",
                                              "1,1,65536,65536"), r"has [\d,]+ values; at most"),
    Case("cli-bench-batch-too-large", ("bench", "digits_cnn", "--batch", "1,100000000", "--no-int8",
                                       "--iterations", "1", "--warmup", "0"), r"benchmark input 100000000x1x8x8 has"),
    Case("cli-bench-batch-garbage", ("bench", "digits_cnn", "--batch", "1,b" * 10_000), r"characters\) are not comma"),
]

# argparse quotes a bad value whole: its error line is kept short too
CASES += [
    Case("cli-int-argument-huge", ("export", "digits_cnn", "-o", "d.onnx", "--opset", "9" * 100_000),
         r"invalid int value: '9+\.\.\. \(\d+ characters\)$"),
    Case("cli-choice-huge", ("weights", "y" * 100_000), r"invalid choice: 'y+\.\.\. \(\d+ characters\)$"),
]
CASES += [
    Case("cli-export-default-shape-too-large",
         ("export", "fasterrcnn_mobilenet_v3_large_320_fpn", "-o", "f.onnx",
          "--builder-arg", "min_size=100000", "--builder-arg", "max_size=100000"),
         r"input shape 1x3x100000x100000 has 30,000,000,000 values"),
]
