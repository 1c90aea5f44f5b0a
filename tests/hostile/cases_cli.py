"""Command-line arguments a user can get wrong."""

from __future__ import annotations

from hostile.harness import Case

CASES = [
    Case("max-params-huge", ("list", "--max-params", "9" * 30), r"max-params|count"),
    Case("min-metric-nan", ("list", "--min-metric", "acc@1=nan"), r"acc@1=nan"),
    Case("min-metric-inf", ("list", "--min-metric", "acc@1=inf"), r"acc@1=inf"),
    Case("min-metric-unknown", ("list", "--min-metric", "bogus@7=1"), r"unknown metric 'bogus@7'"),
    Case("unknown-task", ("list", "--task", "nope"), r"unknown task 'nope'"),
    Case("huge-model-name", ("show", "x" * 100_000), r"unknown model"),
    Case("stdout-full-device", ("list",), r"No space left|cannot write", stdout="/dev/full"),
]
