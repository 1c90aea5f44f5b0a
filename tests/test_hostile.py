"""Hostile and faulty inputs on the real command line: one clean line or the right result.

Every case of ``tests/hostile/cases_*.py`` runs ``zoo`` in a child process in a
workspace of its own (see ``tests/hostile/harness.py``); it must end in a one-line
error or the correct result: no traceback, no hang, no file outside its declared
outputs touched. ``benchmarks/reliability.py`` tallies the same cases for the README.

In CI a stable half of the cases runs (by a hash of each id, in every module of cases); all of
them with ``ZOO_FULL_SWEEP=1`` and in the benchmark.

The selected cases run a few at a time (each is a child process that mostly waits on
its own start-up), started by the first test that needs an outcome.
"""

from __future__ import annotations

import os
from concurrent.futures import Future

import pytest

from conftest import FULL_SWEEP_ENV, in_stable_half
from hostile.harness import Case, Outcome, all_cases, running

CASES = [case for case in all_cases() if os.environ.get(FULL_SWEEP_ENV) == "1" or in_stable_half(case.id)]


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The future outcome of every selected case, by id."""
    selected = [item.callspec.params["case"] for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")]
    with running(selected, tmp_path_factory.mktemp("hostile")) as futures:
        yield futures


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_ends_cleanly(case: Case, outcomes: dict[str, Future[Outcome]]) -> None:
    outcome = outcomes[case.id].result()
    assert outcome.status == "clean", outcome.explain()
