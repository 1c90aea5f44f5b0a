"""The registry service under the hostile load of issue 22, with its default body limits: reads still answer.

Starts ``zoo serve`` (one worker, the default ``--max-bodies 8 --body-timeout 30
--min-body-rate 65536``) on a digits catalog of its own where the digits export is
published (`tests.test_serve_limits.serving_an_export`), then runs two attacks, each
while one client in a process of its own (so that the attackers' threads do not delay it)
reads ``/api/v1/health`` and a page of ``/api/v1/models`` in turn
(`tests.test_serve_limits.Reads`, every read bounded by 5 s):

- `--uploads` (42) token-holding uploads of 1 MB trickling 1 KB/s (the issue's attack:
  it starved the worker threads, health timed out after 15 s);
- `--tries` (10) "try it" bodies of 60 MB at once, without a token (the issue's: the
  server grew from 0.9 GB to 2.0 GB).

For each: the answers the attackers got, how many reads answered and their latency
(median, 99th percentile, largest), how long the first read answer took from the start
of the attack, and how much the server's resident memory grew at its peak (VmHWM less
VmRSS before). Prints a markdown table and writes ``benchmarks/results/hostile_load.md``.

    .venv/bin/python benchmarks/hostile_load.py [--uploads 42] [--tries 10]
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _measure import ROOT, machine_line, markdown_table, write_result

sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the tests' modules, as pytest finds them

from tests.test_serve_limits import (  # noqa: E402 - after the tests are on the path
    TRY_BODY,
    Reads,
    memory,
    run_all,
    serving_an_export,
    trickle,
    try_it,
    upload_head,
)
from tests.test_serve import Service  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=42, help="uploads trickling 1 KB/s (default 42)")
    parser.add_argument("--tries", type=int, default=10, help="60 MB try-it bodies at once (default 10)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zoo-hostile-") as folder, serving_an_export(Path(folder)) as service:
        attacks = {
            f"{args.uploads} uploads trickling 1 KB/s": [
                (trickle, service.port, upload_head(service, "bench/slow", 1 << 20))] * args.uploads,
            f"{args.tries} try-it bodies of {TRY_BODY >> 20} MiB": [
                (try_it, service.url, service.tokens["export"], bytes(TRY_BODY))] * args.tries,
        }
        rows = [attack(service, name, jobs) for name, jobs in attacks.items() if jobs]
    header = ["attack", "answers", "lasted", "reads answered (failed)", "read p50 / p99 / max",
              "first read answer", "server RSS growth at peak"]
    write_result("hostile_load.md", "\n\n".join([
        "# zoo serve under issue 22's hostile load (one worker, default body limits)",
        markdown_table(header, rows), machine_line()]))
    return 0


def attack(service: Service, name: str, jobs: list[tuple[object, ...]]) -> list[object]:
    """One row of the table: the attackers' `jobs` (`run_all`) while `Reads` reads in a child process."""
    context = multiprocessing.get_context("fork")
    stop, results = context.Event(), context.SimpleQueue()
    reader = context.Process(target=_read, args=(service.url, stop, results))
    before = memory(service.served.pid)["VmRSS"]
    started = time.monotonic()
    reader.start()
    try:
        answers = run_all(*jobs)
    finally:
        stop.set()
    lasted = time.monotonic() - started
    latencies, failures, first_answer = results.get()
    reader.join()
    grown = memory(service.served.pid)["VmHWM"] - before
    statuses = collections.Counter(getattr(a, "status", None) or getattr(a, "status_code", None) for a in answers)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    first = first_answer - started if first_answer is not None else float("nan")  # one monotonic clock: the machine's
    return [name, ", ".join(f"{count}× {status}" for status, count in sorted(statuses.items())), f"{lasted:.1f} s",
            f"{len(latencies)} ({len(failures)})",
            f"{statistics.median(latencies) * 1000:.0f} / {p99 * 1000:.0f} / {latencies[-1] * 1000:.0f} ms",
            f"{first * 1000:.0f} ms", f"{grown / 2**20:.0f} MiB"]



def _read(url: str, stop: Any, results: Any) -> None:
    """`Reads` until `stop` is set; what they measured put on `results`."""
    reads = Reads(url, stop=stop)
    reads.run()
    results.put((reads.latencies, reads.failures, reads.first_answer))


if __name__ == "__main__":
    sys.exit(main())
