"""The worked fine-tuning example runs from the repository as a user runs it, reproducibly."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT


def run_example() -> str:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "finetune_digits.py")],
                          capture_output=True, text=True, check=True)
    return done.stdout


def test_finetune_example_learns_parity_and_reproduces(synced_catalog: str) -> None:
    first, second = run_example(), run_example()
    accuracies = [float(a) for a in re.findall(r"held-out parity accuracy.*?: ([\d.]+)%", first)]
    head_only, final = accuracies
    assert final >= 97.0 and final >= head_only - 0.5
    assert "kept the model's classifier.weight: checkpoint has [10, 64], model [2, 64]" in first
    assert "BatchNorm2d -> FrozenBatchNorm [3]" in first
    assert first == second  # seeded, single-threaded: the same run twice
