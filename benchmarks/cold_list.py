"""Cold ``zoo list`` and ``zoo sync``: wall time, peak memory and catalog size, each command a fresh process.

Makes a new SQLite catalog in a temporary folder, syncs it twice (new, then again)
with the selected plugins (``--plugins``, as ``ZOO_LOAD_PLUGINS``; all installed
ones by default), then runs ``zoo list`` and ``zoo list --plugin PLUGIN`` `--runs`
times each, interleaved, after one warm-up run that also fills Python's bytecode
cache. Reports the median and 90th percentile of wall time, the median CPU time
(user + system: what a busy machine inflates least), the largest peak RSS,
and the floors under them: an empty interpreter and one that only imports
SQLAlchemy. Prints a markdown table and writes ``benchmarks/results/cold_list.md``.

    .venv/bin/python benchmarks/cold_list.py --plugins torchvision,timm [--runs 9]

Issue 12's targets, with all timm models installed: cold ``zoo list`` at most 0.5 s
and 50 MiB, ``zoo sync`` at most 15 s, the catalog at most 10 MB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from _measure import Child, child_env, machine_line, markdown_table, median_p90, run_child, write_result, zoo_argv

MIB = 2**20
FLOORS = {"python -c pass": "pass", "python -c 'import sqlalchemy'": "import sqlalchemy"}


def catalog_bytes(path: Path) -> int:
    """The size of a SQLite catalog with its write-ahead log (empty once the last connection closed)."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def row(what: str, count: object, runs: list[Child], target: str) -> list[object]:
    """A table row: median and p90 wall time, median CPU time, and the largest peak RSS, of `runs`."""
    median, p90 = median_p90([c.wall_s for c in runs]) if len(runs) > 1 else (runs[0].wall_s, runs[0].wall_s)
    cpu = statistics.median(c.cpu_s for c in runs)
    return [what, count, f"{median:.3f}", f"{p90:.3f}", f"{cpu:.3f}", f"{max(c.max_rss for c in runs) / MIB:.1f}",
            target]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="fresh processes per command (default 9)")
    parser.add_argument("--plugins", help="ZOO_LOAD_PLUGINS for every command (default: as in the environment)")
    parser.add_argument("--list-plugin", default="timm", help="the plugin of `zoo list --plugin` (default timm)")
    parser.add_argument("--output", default="cold_list.md", help="path under benchmarks/results/")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "registry.db"
        selection = {"ZOO_LOAD_PLUGINS": args.plugins} if args.plugins is not None else {}
        env = child_env(ZOO_REGISTRY_URL=f"sqlite:///{db}", **selection)
        rows = [
            row("zoo sync (new catalog)", "", [run_child(zoo_argv("sync"), env, folder)], "15 s"),
            row("zoo sync (again)", "", [run_child(zoo_argv("sync"), env, folder)], "15 s"),
        ]
        size = catalog_bytes(db)
        commands = {"zoo list": zoo_argv("list"), f"zoo list --plugin {args.list_plugin}":
                    zoo_argv("list", "--plugin", args.list_plugin)}
        commands.update({name: [sys.executable, "-c", code] for name, code in FLOORS.items()})
        counts = {name: len(json.loads(run_child([*argv, "--json"], env, folder).stdout))  # also the warm-up
                  for name, argv in commands.items() if name.startswith("zoo")}
        runs: dict[str, list[Child]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                runs[name].append(run_child(argv, env, folder))
    rows += [row(name, counts.get(name, ""), runs[name], "0.5 s, 50 MiB" if name in counts else "floor")
             for name in commands]
    text = "\n".join([
        f"Cold commands, each a fresh process ({args.runs} runs each, interleaved; plugins: "
        f"{args.plugins if args.plugins is not None else 'all installed'}).",
        "",
        markdown_table(["command", "models", "wall median (s)", "wall p90 (s)", "CPU median (s)", "peak RSS (MiB)",
                        "target"], rows),
        "",
        f"Catalog (SQLite, after sync): {size / 1e6:.2f} MB (target 10 MB).",
        "",
        machine_line(),
    ])
    write_result(args.output, text)


if __name__ == "__main__":
    main()
