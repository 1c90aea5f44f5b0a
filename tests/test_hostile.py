"""Hostile and faulty inputs on the real command line: one clean line or the right result.

Every case of ``tests/hostile/cases_*.py`` runs ``zoo`` in a child process in a
workspace of its own (see ``tests/hostile/harness.py``); it must end in a one-line
error or the correct result: no traceback, no hang, no file outside its declared
outputs touched. ``benchmarks/reliability.py`` tallies the same cases for the README.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hostile.harness import all_cases, run_case

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_ends_cleanly(case, tmp_path: Path) -> None:
    outcome = run_case(case, tmp_path / "ws")
    assert outcome.status == "clean", outcome.explain()
