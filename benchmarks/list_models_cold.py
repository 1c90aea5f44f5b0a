"""Cold-process cost of listing models: zoo's catalog against torchvision's registry.

Each round starts two fresh Python processes, one doing ``zoo.list_models('resnet*')``
against a synced catalog and one doing
``torchvision.models.list_models(include='resnet*')``, and measures each one's wall
time and peak memory (max RSS, from wait4). Rounds alternate the two to share any
drift of the machine. Prints medians and the ratios, and JSON with ``--json``.

    .venv/bin/python benchmarks/list_models_cold.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNIPPETS = {
    "zoo": "import zoo; zoo.list_models('resnet*')",
    "torchvision": "import torchvision.models as m; m.list_models(include='resnet*')",
}


def run_cold(code: str, env: dict[str, str], cwd: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one fresh interpreter running `code`."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed: {code}")
    return wall, usage.ru_maxrss * 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as cwd:
        env = {**os.environ, "ZOO_REGISTRY_URL": f"sqlite:///{Path(cwd) / 'registry.db'}"}
        subprocess.run([sys.executable, "-m", "zoo", "sync"], env=env, cwd=cwd, check=True, capture_output=True)
        samples: dict[str, list[tuple[float, int]]] = {name: [] for name in SNIPPETS}
        for _ in range(args.rounds):
            for name, code in SNIPPETS.items():
                samples[name].append(run_cold(code, env, cwd))

    result = {
        name: {
            "wall_s_median": statistics.median(w for w, _ in runs),
            "peak_rss_mib_median": statistics.median(m for _, m in runs) / 2**20,
        }
        for name, runs in samples.items()
    }
    result["ratio"] = {
        "wall": result["torchvision"]["wall_s_median"] / result["zoo"]["wall_s_median"],
        "peak_rss": result["torchvision"]["peak_rss_mib_median"] / result["zoo"]["peak_rss_mib_median"],
    }
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                         "rounds": args.rounds}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'':12} {'wall (median)':>14} {'peak RSS (median)':>18}")
    for name in SNIPPETS:
        r = result[name]
        print(f"{name:12} {r['wall_s_median']:>12.3f} s {r['peak_rss_mib_median']:>14.1f} MiB")
    print(f"{'ratio':12} {result['ratio']['wall']:>12.1f} x {result['ratio']['peak_rss']:>14.1f} x")
    print(f"({args.rounds} rounds, {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()})")


if __name__ == "__main__":
    main()
