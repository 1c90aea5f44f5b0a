"""Hostile and faulty inputs, run on the real ``zoo`` command line (see `harness`).

Each ``cases_*.py`` module holds a list ``CASES`` of `harness.Case`; ``tests/test_hostile.py``
runs every case and ``benchmarks/reliability.py`` tallies them for the README.
"""
