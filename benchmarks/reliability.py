"""Tally the hostile and faulty inputs of ``tests/hostile`` for the Reliability table (docs/reliability.md).

Runs every case of ``tests/hostile/cases_*.py`` on the real ``zoo`` command line,
exactly as ``tests/test_hostile.py`` does, but without stopping at a failure, and
counts the outcomes per area: clean (a one-line error or the right result),
tracebacks, hangs, files destroyed and other wrong endings. Writes the markdown
table to ``benchmarks/results/reliability.md`` and prints it; lists every case that
was not clean.

    .venv/bin/python benchmarks/reliability.py [-k SUBSTRING]
"""

from __future__ import annotations

import argparse
import collections
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hostile.harness import all_cases, running  # noqa: E402

STATUSES = ("clean", "traceback", "hang", "destroyed", "wrong")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only cases whose id contains this")
    args = parser.parse_args()
    cases = [c for c in all_cases() if args.k in c.id]
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures = []
    with tempfile.TemporaryDirectory(prefix="zoo-reliability-") as tmp, running(cases, Path(tmp)) as futures:
        for case in cases:
            outcome = futures[case.id].result()
            counts[case.id.split("-")[0]][outcome.status] += 1
            print(f"{outcome.status:9} {outcome.seconds:6.1f} s  {case.id}", flush=True)
            if outcome.status != "clean":
                failures.append(outcome)
    total = sum(counts.values(), collections.Counter())
    header = "| area | cases | clean | tracebacks | hangs | files destroyed | other wrong endings |"
    rows = [header, "|---|---|---|---|---|---|---|"]
    for area, c in [*sorted(counts.items()), ("**all**", total)]:
        rows.append(f"| {area} | {sum(c.values())} | {c['clean']} | {c['traceback']} | {c['hang']} "
                    f"| {c['destroyed']} | {c['wrong']} |")
    table = "\n".join(rows)
    machine = f"{_cpu()}, {platform.system()} {platform.machine()}, Python {platform.python_version()}"
    (ROOT / "benchmarks" / "results" / "reliability.md").write_text(f"{table}\n\nMachine: {machine}\n")
    print(f"\n{table}")
    for outcome in failures:
        print(f"\n{outcome.explain()}")
    return 1 if failures else 0


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else ():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
