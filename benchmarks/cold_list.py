"""Cold ``zoo list`` and ``zoo sync``: wall time, peak memory and catalog size, each command a fresh process.

Makes a new SQLite catalog in a temporary folder, syncs it twice (new, then again)
with the selected plugins (``--plugins``, as ``ZOO_LOAD_PLUGINS``; all installed
ones by default), serves it (``zoo serve``, `zoo.testing.serving`), then runs ``zoo
list`` and ``zoo list --plugin PLUGIN`` on the catalog, and ``zoo list`` in client
mode (``ZOO_REGISTRY_URL`` the service's address, from an empty folder), `--runs`
times each, interleaved, after one warm-up run each that also fills Python's bytecode
cache (and the service's answers). Reports the median and 90th percentile of wall
time, the median CPU time (user + system: what a busy machine inflates least), the
largest peak RSS, and the floors under them: an empty interpreter, one that only
imports SQLAlchemy (the catalog's) and one that only imports httpx, as the client does.
Prints a markdown table and writes ``benchmarks/results/cold_list.md``.

    .venv/bin/python benchmarks/cold_list.py --plugins torchvision,timm [--runs 9]

Issue 12's targets, with all timm models installed: cold ``zoo list`` at most 0.5 s
and 50 MiB, ``zoo sync`` at most 15 s, the catalog at most 10 MB. Issue 24's: in
client mode, cold ``zoo list`` no slower than on the catalog itself. The client's
time includes the service's answer (it runs on the same machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from _measure import Child, child_env, machine_line, markdown_table, median_p90, run_child, write_result, zoo_argv

from zoo.testing import serving

MIB = 2**20
#: The client imports httpx without its command-line module (`zoo.service.client._httpx`): so does its floor.
FLOORS = {"python -c pass": "pass", "python -c 'import sqlalchemy'": "import sqlalchemy",
          "python -c 'import httpx' (no httpx._main)": "import sys; sys.modules['httpx._main'] = None; import httpx"}
CLIENT_LIST = "zoo list, client mode"


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
        db, client_folder = Path(folder) / "registry.db", Path(folder) / "client"
        client_folder.mkdir()
        selection = {"ZOO_LOAD_PLUGINS": args.plugins} if args.plugins is not None else {}
        env = child_env(ZOO_REGISTRY_URL=f"sqlite:///{db}", ZOO_ARTIFACTS=f"{folder}/artifacts", **selection)
        rows = [
            row("zoo sync (new catalog)", "", [run_child(zoo_argv("sync"), env, folder)], "15 s"),
            row("zoo sync (again)", "", [run_child(zoo_argv("sync"), env, folder)], "15 s"),
        ]
        size = catalog_bytes(db)
        with serving(env=env, cwd=folder) as served:
            client_env = child_env(ZOO_REGISTRY_URL=served.url)
            # name -> (command line, environment, working directory)
            commands = {"zoo list": (zoo_argv("list"), env, folder),
                        f"zoo list --plugin {args.list_plugin}": (zoo_argv("list", "--plugin", args.list_plugin),
                                                                   env, folder),
                        CLIENT_LIST: (zoo_argv("list"), client_env, client_folder)}
            commands.update({name: ([sys.executable, "-c", code], env, folder) for name, code in FLOORS.items()})
            counts = {name: len(json.loads(run_child([*argv, "--json"], cenv, cwd).stdout))  # also the warm-up
                      for name, (argv, cenv, cwd) in commands.items() if name.startswith("zoo")}
            for name, (argv, cenv, cwd) in commands.items():  # the floors' warm-up
                if name not in counts:
                    run_child(argv, cenv, cwd)
            runs: dict[str, list[Child]] = {name: [] for name in commands}
            for _ in range(args.runs):
                for name, (argv, cenv, cwd) in commands.items():
                    runs[name].append(run_child(argv, cenv, cwd))
    targets = {CLIENT_LIST: "zoo list's"}
    rows += [row(name, counts.get(name, ""), runs[name], targets.get(name, "0.5 s, 50 MiB") if name in counts
                 else "floor") for name in commands]
    client, local = (statistics.median(c.wall_s for c in runs[name]) for name in (CLIENT_LIST, "zoo list"))
    text = "\n".join([
        f"Cold commands, each a fresh process ({args.runs} runs each, interleaved; plugins: "
        f"{args.plugins if args.plugins is not None else 'all installed'}).",
        "",
        markdown_table(["command", "models", "wall median (s)", "wall p90 (s)", "CPU median (s)", "peak RSS (MiB)",
                        "target"], rows),
        "",
        f"Catalog (SQLite, after sync): {size / 1e6:.2f} MB (target 10 MB).",
        "",
        f"Cold `zoo list` in client mode (`zoo serve` on that catalog, 1 worker, same machine): median "
        f"{client:.3f} s against {local:.3f} s on the catalog itself ({client / local:.2f}x; target: at most 1x).",
        "",
        machine_line(),
    ])
    write_result(args.output, text)


if __name__ == "__main__":
    main()
