"""What the catalog benchmarks share: timed child processes, summaries and markdown tables.

Children run with Python's bytecode cache on (``PYTHONDONTWRITEBYTECODE`` removed),
as an installed zoo does, so a cold command is timed without recompiling zoo's modules.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIXTURES = ROOT / "tests" / "plugins"
GNU_TIME = "/usr/bin/time"


@dataclass(frozen=True)
class Child:
    """One finished child process: wall and CPU (user + system) seconds, peak RSS in bytes, standard output.

    CPU time says more than wall time on a busy machine: it does not count waiting for a CPU.
    """

    wall_s: float
    cpu_s: float
    max_rss: int
    stdout: str


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment with bytecode caching on and `overrides` set."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **overrides}


def run_child(argv: Sequence[str], env: Mapping[str, str], cwd: Path | str) -> Child:
    """Run `argv` to its end: its times, peak RSS and output, or SystemExit with its stderr.

    The peak RSS comes from GNU time where it is installed: wait4's figure for a child
    of this process counts this process's memory too (the child starts as its copy).
    Outputs go to temporary files, so a long listing cannot block the child on a full pipe.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        timed = [GNU_TIME, "-f", "%M", "-o", rss.name, *argv] if os.access(GNU_TIME, os.X_OK) else list(argv)
        start = time.perf_counter()
        proc = subprocess.Popen(timed, env=dict(env), cwd=cwd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"benchmark child failed: {' '.join(argv)}\n{err.read()[-2000:]}")
        kib = int(rss.read().split()[-1]) if timed[0] == GNU_TIME else usage.ru_maxrss  # Linux reports KiB
        return Child(wall, usage.ru_utime + usage.ru_stime, kib * 1024, out.read())


def zoo_argv(*args: str) -> list[str]:
    """The command line of ``zoo ARGS`` run by this interpreter."""
    return [sys.executable, "-m", "zoo", *args]


def median_p90(samples: Sequence[float]) -> tuple[float, float]:
    """The median and the 90th percentile (inclusive method) of `samples`."""
    return statistics.median(samples), statistics.quantiles(samples, n=10, method="inclusive")[8]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line() -> str:
    """One line naming the machine the figures come from."""
    load = os.getloadavg()[0]
    return (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
            f"Python {platform.python_version()}; load average {load:.2f} at the end")


def write_result(name: str, text: str) -> Path:
    """Write `text` to ``benchmarks/results/NAME`` and print it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(text + "\n")
    print(text)
    return path
