"""The registry service under load, side by side with MLflow's model registry and nginx: throughput, p50/p99 latency,
errors and CPU per request at 1, 16 and 64 concurrent clients.

Makes a PostgreSQL catalog of its own (a database created here and dropped at the end),
syncs it with the digits and torchvision plugins, makes a token, starts ``zoo serve
--port 0 --workers N`` (one service per ``--workers``) and publishes through it two
weights files: the digits weights (100 KB) as bench/digits and a random-initialised
torchvision resnet50 state dict (100 MB) as bench/resnet50. Then, in the same run:

- MLflow's model-registry server (``mlflow server``, `mlflow_registry`), installed in a
  virtual environment of its own outside the checkout (``--mlflow-venv``), its backend
  store a second database on the same PostgreSQL server, proxied artifact serving from a
  local folder; populated with MLflow's own client: the catalog's models with their task,
  num_params and plugin as tags, one version each, the two files as the artifacts of the
  digits_cnn and resnet50 versions;
- nginx (Debian's; one worker process, ``sendfile on``) serving the same two files.

Each case is the same question asked of each server (``--cases``): a page of 50 models,
a filtered page, one model's record, one published version, the 100 KB file, the 100 MB
file (nginx only the files). For each round (``--rounds``), case and client count
(``--clients``), the servers take turns (zoo, MLflow, nginx): ``wrk -t1 -cN`` for
`--warmup` seconds unrecorded, then `--duration` seconds recorded (`http_load.run_wrk`:
every request a path drawn at random from the case's list, ``Accept-Encoding: gzip`` on
all). After every wrk run the benchmark waits until the server's processes are idle
(`wait_idle`: MLflow goes on with the requests a finished run abandoned); the CPU time
they spent from the recorded run's start until then (/proc) is divided by the requests
it served (`Round`). An error is a socket error (connect, read, write, a timeout of 60 s)
or a status of 400 or more; the target is none. Before the load every path is asked once:
each answers 200, each file whole, and zoo's and MLflow's pages hold as many models.
MLflow runs with its own default of 4 workers (``--mlflow-workers``).

``--cold-list`` adds a separate measurement (`time_cold_list`): a cold ``zoo list``,
each run a fresh process, in client mode (``ZOO_REGISTRY_URL`` the first service's
address) against the same command on the catalog itself, interleaved, after one
warm-up each. Prints markdown tables and writes ``benchmarks/results/serve_load.md``.

    .venv/bin/python benchmarks/serve_load.py [--servers zoo,mlflow,nginx] [--cases list,describe]
        [--clients 1,16,64] [--duration 10] [--rounds 2] [--workers 1 [--workers 2]] [--mlflow-workers 4]
        [--cold-list [--runs 9]] [--no-load]

Needs Debian's nginx and wrk (``apt-get install -y nginx wrk``). Issue 24's targets, 1
worker, 64 clients: list and describe at least 1,500 req/s with p99 under 150 ms and 0
errors, the 100 KB file at least 30% of nginx's req/s, under 0.5 ms of service CPU per
cached answer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
from _measure import ROOT, Child, child_env, machine_line, markdown_table, run_child, write_result, zoo_argv
from catalog_scale import postgresql_catalog
from cold_list import row as cold_row
from http_load import PROGRAMS, WrkRun, nginx_serving, program, require_programs, run_wrk
from mlflow_registry import PAGE, REGISTRY, REQUIREMENTS, VENV, Populated, mlflow_serving, mlflow_venv, populate

from zoo.testing import serving

API = "/api/v1"
PLUGINS = "digits,torchvision"
#: The published weights files, by the catalog model they are for: (the name published as, where the file comes
#: from: a file of the checkout, or None for the model's random-initialised state dict made here).
FILES: dict[str, tuple[str, Path | None]] = {
    "digits_cnn": ("bench/digits", ROOT / "plugins" / "zoo-digits" / "zoo_digits" / "digits_cnn-fb1204b6.pth"),
    "resnet50": ("bench/resnet50", None),
}
#: The filters of a filtered page, each as zoo's query and MLflow's search filter.
FILTERS: tuple[tuple[dict[str, str], str], ...] = (
    ({"task": "classification"}, "tags.task = 'classification'"),
    ({"pattern": "resnet*"}, "name LIKE 'resnet%'"),
    ({"plugin": "torchvision"}, "tags.plugin = 'torchvision'"),
)
#: The cases, by key: (title, the model whose file it fetches, or None for a JSON answer).
CASES: dict[str, tuple[str, str | None]] = {
    "list": (f"list: a page of {PAGE} models", None),
    "filtered": (f"filtered list: a page of up to {PAGE} models matching a filter", None),
    "describe": ("describe one model", None),
    "resolve": ("resolve a published version", None),
    "file-100k": ("the 100 KB weights file", "digits_cnn"),
    "file-100m": ("the 100 MB weights file", "resnet50"),
}
SERVERS = ("zoo", "mlflow", "nginx")
RIVALS = {"mlflow": "MLflow", "nginx": "nginx"}  # the servers zoo's ratios are to, by kind
CLIENTS = (1, 16, 64)
HEADERS = {"Accept-Encoding": "gzip"}
QUIET, IDLE_SHARE = 0.5, 0.05  # a server is idle when it spends under 5% of a core for half a second
RESNET50 = ("import sys, torch, torchvision; torch.manual_seed(0); "
            "torch.save(torchvision.models.resnet50().state_dict(), sys.argv[1])")


@dataclass(frozen=True)
class Catalog:
    """What the servers are loaded with: the catalog's model summaries (as zoo lists them), the published files
    (by model: path and SHA-256)."""

    models: tuple[dict[str, object], ...]
    files: dict[str, tuple[Path, str]]

    @property
    def names(self) -> list[str]:
        return [str(m["name"]) for m in self.models]


@dataclass(frozen=True)
class Server:
    """A server under load: its label in the tables, kind (zoo, mlflow or nginx), address, the process whose tree's
    CPU time is read, and the request paths of each case it answers."""

    label: str
    kind: str
    url: str
    pid: int
    paths: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Round:
    """One recorded wrk run, the CPU seconds the server's processes spent on it (until they were idle again), and
    how many requests that CPU served: for a file, the bytes read over the file's size; for a JSON answer, the
    answers completed plus one per client (the requests in flight when wrk stopped, which the server still
    answers)."""

    run: WrkRun
    cpu_s: float
    served: float


# -- the catalog and the servers -----------------------------------------------------------


def make_files(folder: Path, env: Mapping[str, str]) -> dict[str, Path]:
    """The files to publish, by model, in `folder` (the folder nginx serves)."""
    folder.mkdir()
    paths = {}
    for model, (_, source) in FILES.items():
        paths[model] = folder / (source.name if source else f"{model}-random.pth")
        if source:
            shutil.copyfile(source, paths[model])
        else:
            run_child([sys.executable, "-c", RESNET50, str(paths[model])], env, folder)
    return paths


def publish(url: str, token: str, model: str, path: Path) -> str:
    """Publish the weights file at `path` for `model` through the service at `url` (as FILES says): its SHA-256."""
    body = path.read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    answer = httpx.post(f"{url}{API}/published/{FILES[model][0]}", params={"model": model}, content=body,
                        headers={"Authorization": f"Bearer {token}", "X-Zoo-SHA256": digest}, timeout=600)
    if answer.status_code != 201:
        raise SystemExit(f"publishing {path.name} failed: {answer.status_code} {answer.text}")
    return digest


def publish_files(url: str, files: Mapping[str, Path], token: str) -> Catalog:
    """Publish `files` (by model) through the service at `url`: the catalog as it lists it, with those files."""
    published = {model: (path, publish(url, token, model, path)) for model, path in files.items()}
    models = httpx.get(f"{url}{API}/models", params={"limit": 1000}, timeout=60).raise_for_status().json()["models"]
    return Catalog(tuple(models), published)


def zoo_paths(catalog: Catalog) -> dict[str, tuple[str, ...]]:
    """Each case's request paths on zoo serve."""
    return {
        "list": tuple(f"{API}/models?limit={PAGE}&offset={offset}" for offset in range(0, len(catalog.models), PAGE)),
        "filtered": tuple(f"{API}/models?{urlencode({**query, 'limit': PAGE})}" for query, _ in FILTERS),
        "describe": tuple(f"{API}/models/{quote(name)}" for name in catalog.names),
        "resolve": (f"{API}/published/{FILES['digits_cnn'][0]}/versions/1",),
        **{case: (f"{API}/weights/{catalog.files[model][1]}",) for case, (_, model) in CASES.items() if model},
    }


def mlflow_tags(model: Mapping[str, object]) -> dict[str, str]:
    """The tags a catalog model gets in MLflow's registry: its task, parameter count and plugin, where known."""
    return {key: str(model[key]) for key in ("task", "num_params", "plugin") if model.get(key) is not None}


def mlflow_paths(catalog: Catalog, populated: Populated) -> dict[str, tuple[str, ...]]:
    """Each case's request paths on MLflow's server: the same questions in its REST API."""
    search = f"{REGISTRY}/registered-models/search"
    return {
        "list": (f"{search}?max_results={PAGE}",
                 *(f"{search}?{urlencode({'max_results': PAGE, 'page_token': t})}" for t in populated.page_tokens)),
        "filtered": tuple(f"{search}?{urlencode({'filter': mlflow_filter, 'max_results': PAGE})}"
                          for _, mlflow_filter in FILTERS),
        "describe": tuple(f"{REGISTRY}/registered-models/get?{urlencode({'name': name})}" for name in catalog.names),
        "resolve": (f"{REGISTRY}/model-versions/get?name=digits_cnn&version=1",),
        **{case: (quote(populated.file_paths[model]),) for case, (_, model) in CASES.items() if model},
    }


def nginx_paths(catalog: Catalog) -> dict[str, tuple[str, ...]]:
    """Each file case's request path on nginx."""
    return {case: (f"/{quote(catalog.files[model][0].name)}",) for case, (_, model) in CASES.items() if model}


def listed(answer: Mapping[str, object]) -> int:
    """How many models a page holds, zoo's (`models`) or MLflow's (`registered_models`, absent when none)."""
    return len(answer.get("models", answer.get("registered_models", [])))  # type: ignore[arg-type]


def file_sizes(catalog: Catalog) -> dict[str, int]:
    """The size of each file case's file."""
    return {case: catalog.files[model][0].stat().st_size for case, (_, model) in CASES.items() if model}


def check_answers(servers: Sequence[Server], catalog: Catalog) -> None:
    """Ask every path of every server once: SystemExit unless each answers 200, each file whole, and every server's
    pages of a case hold as many models."""
    sizes = file_sizes(catalog)
    counts: dict[str, dict[str, list[int]]] = {}
    with httpx.Client(headers=HEADERS, timeout=600) as client:
        for server in servers:
            for case, paths in server.paths.items():
                for path in paths:
                    answer = client.get(server.url + path)
                    if answer.status_code != 200 or (case in sizes and len(answer.content) != sizes[case]):
                        raise SystemExit(f"{server.label}: GET {path} answered {answer.status_code}, "
                                         f"{len(answer.content)} bytes: {answer.text[:300]}")
                    if case in ("list", "filtered"):
                        counts.setdefault(case, {}).setdefault(server.label, []).append(listed(answer.json()))
    for case, by_server in counts.items():
        if len({tuple(pages) for pages in by_server.values()}) > 1:
            raise SystemExit(f"the servers' {case} pages hold different numbers of models: {by_server}")


# -- the load ------------------------------------------------------------------------------


def proc_stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command's name: state, parent id, ... (FileNotFoundError: gone)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def process_tree_seconds(pid: int) -> float:
    """CPU seconds (user + system) the process `pid`, its descendants alive now and the children it has
    waited for have spent (/proc)."""
    try:
        stat = proc_stat(pid)
        children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                    for c in (task / "children").read_text().split()]
    except FileNotFoundError:  # it has just ended
        return 0.0
    own = sum(int(v) for v in stat[11:15]) / os.sysconf("SC_CLK_TCK")  # utime, stime, cutime, cstime
    return own + sum(process_tree_seconds(child) for child in children)


def wait_idle(server: Server, timeout: float = 120.0) -> float:
    """Wait until `server`'s processes spend under IDLE_SHARE of a core for QUIET seconds (a finished wrk run's
    abandoned requests done: MLflow goes on with them), at most `timeout` seconds: their CPU seconds then."""
    deadline = time.monotonic() + timeout
    last = process_tree_seconds(server.pid)
    while True:
        time.sleep(QUIET)
        now = process_tree_seconds(server.pid)
        if now - last < IDLE_SHARE * QUIET:
            return now
        if time.monotonic() > deadline:
            print(f"{server.label} still busy {timeout:.0f} s after a run; going on", file=sys.stderr, flush=True)
            return now
        last = now


def load_round(server: Server, case: str, clients: int, args: argparse.Namespace, folder: Path, seed: int,
               size: int | None) -> Round:
    """wrk on `server`'s paths of `case` with `clients` connections: `args.warmup` seconds unrecorded, then
    `args.duration` seconds recorded, each run followed by `wait_idle`; `size`: the file's, for a file case."""
    paths = server.paths[case]
    if args.warmup >= 1:
        run_wrk(server.url, paths, clients, args.warmup, folder, seed)
    before = wait_idle(server)
    run = run_wrk(server.url, paths, clients, args.duration, folder, seed)
    cpu = wait_idle(server) - before
    return Round(run, cpu, run.bytes / size if size else run.requests + clients)


def run_load(servers: Sequence[Server], catalog: Catalog, args: argparse.Namespace,
             folder: Path) -> dict[tuple[str, int, str], list[Round]]:
    """Every round of every case at every client count on every server that answers it, the servers taking turns:
    the rounds by (case, clients, server label)."""
    sizes = file_sizes(catalog)
    rounds: dict[tuple[str, int, str], list[Round]] = {}
    for number in range(args.rounds):
        for case in args.cases:
            for clients in args.clients:
                for server in (s for s in servers if case in s.paths):
                    got = load_round(server, case, clients, args, folder, 1000 * number + clients, sizes.get(case))
                    rounds.setdefault((case, clients, server.label), []).append(got)
                    print(f"round {number + 1}/{args.rounds} {case} {clients} clients {server.label}: "
                          f"{got.run.per_second:,.1f} req/s, p99 {got.run.p99_ms:,.1f} ms, "
                          f"{got.run.socket_errors + got.run.status_errors} errors", file=sys.stderr, flush=True)
    return rounds


# -- the results ---------------------------------------------------------------------------


def number(value: float) -> str:
    """`value` rounded for a table: no decimals from 100 on, one below, two below 1."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def throughput(rounds: Sequence[Round], file: bool) -> float:
    """The median over `rounds` of what a ratio compares: MB/s for a file (bytes read, answers in flight at the
    end included), req/s for a JSON answer."""
    return statistics.median(r.run.mb_per_second if file else r.run.per_second for r in rounds)


def compared(case: str, servers: Sequence[Server]) -> list[str]:
    """The kinds of server zoo's throughput is compared with in `case`: those of RIVALS that answer it."""
    return [kind for kind in RIVALS if any(s.kind == kind and case in s.paths for s in servers)]


def case_rows(case: str, servers: Sequence[Server], rounds: Mapping[tuple[str, int, str], list[Round]],
              clients: Sequence[int]) -> list[list[object]]:
    """The table rows of one case: for each client count, each server's medians over its rounds, and on zoo's
    rows its throughput over MLflow's (and nginx's for a file)."""
    file = CASES[case][1] is not None
    rows: list[list[object]] = []
    for count in clients:
        by_kind = {s.kind: rounds[(case, count, s.label)] for s in servers if (case, count, s.label) in rounds}
        for server in servers:
            done = rounds.get((case, count, server.label))
            if done is None:
                continue
            per_second = [r.run.per_second for r in done]
            answered = [r for r in done if r.run.requests]  # a 100 MB file may see none finish in a round
            errors = sum(r.run.socket_errors for r in done), sum(r.run.status_errors for r in done)
            row: list[object] = [
                count, server.label,
                f"{number(statistics.median(per_second))} ({' / '.join(number(v) for v in per_second)})",
                *([number(throughput(done, True))] if file else []),
                number(statistics.median(r.run.p50_ms for r in answered)) if answered else "-",
                number(statistics.median(r.run.p99_ms for r in answered)) if answered else "-",
                f"{errors[0]} socket, {errors[1]} status" if any(errors) else "0",
                f"{1e3 * sum(r.cpu_s for r in done) / sum(r.served for r in done):.2f}",
            ]
            for other in compared(case, servers):
                ratio = "-"
                if server.kind == "zoo" and other in by_kind and throughput(by_kind[other], file) > 0:
                    ratio = f"{number(throughput(done, file) / throughput(by_kind[other], file))}x"
                row.append(ratio)
            rows.append(row)
    return rows


def case_section(case: str, servers: Sequence[Server], rounds: Mapping[tuple[str, int, str], list[Round]],
                 clients: Sequence[int]) -> list[str]:
    """The markdown of one case: its title, each server's requests, its table."""
    title, model = CASES[case]
    asked = []
    for server in servers:
        if case in server.paths:
            paths = server.paths[case]
            more = f" and {len(paths) - 1} more like it, one drawn at random per request" if len(paths) > 1 else ""
            asked.append(f"- {server.label}: `GET {paths[0]}`{more}")
    header = ["clients", "server", "req/s (each round)", *(["MB/s"] if model else []), "p50 (ms)", "p99 (ms)",
              "errors", "server CPU (ms/req)", *(f"zoo/{RIVALS[kind]}" for kind in compared(case, servers))]
    return ["", f"### {title}", "", *asked, "", markdown_table(header, case_rows(case, servers, rounds, clients))]


def version(argv: Sequence[str]) -> str:
    """The version a program prints when asked (the first word with a digit on its first line)."""
    done = subprocess.run(list(argv), capture_output=True, text=True)
    line = (done.stdout + done.stderr).strip().splitlines()[0]
    return next((word for word in line.split() if any(c.isdigit() for c in word)), line)


def time_cold_list(env: Mapping[str, str], service_url: str, folder: Path, runs: int) -> list[list[object]]:
    """Table rows of a cold ``zoo list`` (each a fresh process, `runs` each, interleaved, after one warm-up) on the
    catalog of `env` and in client mode through the service at `service_url`, on the same catalog."""
    modes = {"zoo list, catalog (PostgreSQL)": dict(env),
             "zoo list, client mode (zoo serve, 1 worker)": {**env, "ZOO_REGISTRY_URL": service_url}}
    counts = {mode: len(json.loads(run_child(zoo_argv("list", "--json"), mode_env, folder).stdout))
              for mode, mode_env in modes.items()}  # also the warm-up
    timed: dict[str, list[Child]] = {mode: [] for mode in modes}
    for _ in range(runs):
        for mode, mode_env in modes.items():
            timed[mode].append(run_child(zoo_argv("list"), mode_env, folder))
    return [cold_row(mode, counts[mode], timed[mode], "-") for mode in modes]


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), and whether there is an NVIDIA GPU (unused here)."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else ())
             if line.startswith("model name")]
    gpu = "an NVIDIA GPU (unused)" if shutil.which("nvidia-smi") else "no GPU"
    return f"{names[0] if names else 'unknown CPU'}, {len(names) or '?'} cores, {gpu}"


def report(args: argparse.Namespace, catalog: Catalog, servers: Sequence[Server], rounds: Mapping[
           tuple[str, int, str], list[Round]], cold: list[list[object]], setup: Sequence[str],
           load_before: tuple[float, ...]) -> str:
    """The markdown of the run: the setup, a table per case, the cold `zoo list` table, the machine and its load."""
    sizes = ", ".join(f"{path.name} ({path.stat().st_size:,} bytes)" for path, _ in catalog.files.values())
    parts = [f"Catalog: PostgreSQL, plugins {PLUGINS} ({len(catalog.models)} models)"
             + (f"; published through zoo serve: {sizes}." if sizes else "."), *setup]
    if rounds:
        parts += [
            "",
            f"Load: `wrk -t1 -cN -d{args.duration:.0f}s --latency --timeout 60s` with a Lua script (each request a "
            "path drawn at random from the case's list, seeded; `Accept-Encoding: gzip` on every request, as httpx "
            f"sends), {args.warmup:.0f} s of unrecorded warm-up before each recorded run; {args.rounds} rounds, "
            "the servers taking turns within each case and client count. Figures are medians over the rounds "
            "(req/s: each round's in brackets). Errors: socket errors (connect, read, write, 60 s timeout) and "
            "answers of 400 or more (target 0). Every wrk run, warm-up included, is followed by a wait until the "
            "server's processes are idle (under 5% of a core for 0.5 s), so that no run competes with requests a "
            "previous one abandoned (MLflow goes on with them). Server CPU: the CPU time of the server's processes "
            "(all workers; /proc) from the recorded run's start until they are idle again, per request served: "
            "answers completed plus one per client (the requests in flight when wrk stopped) for JSON, bytes read "
            "over the file's size for files. Latency counts completed answers only (a 100 MB file at 64 clients "
            "may see few or none). Ratios: zoo's req/s over the other's for JSON answers, MB/s (bytes read, answers "
            "in flight at the end included) for files. wrk, the servers and PostgreSQL share the machine's cores.",
        ]
        for case in args.cases:
            if any(case in s.paths for s in servers):
                parts += case_section(case, servers, rounds, args.clients)
    if cold:
        parts += [
            "",
            f"Cold `zoo list`, each run a fresh process ({args.runs} runs per mode, interleaved, after one "
            "warm-up), on the same catalog: directly, and in client mode (ZOO_REGISTRY_URL=http://127.0.0.1:PORT, "
            "the service idle otherwise).",
            "",
            markdown_table(["command", "models", "wall median (s)", "wall p90 (s)", "CPU median (s)",
                            "peak RSS (MiB)", "target"], cold),
        ]
    parts += ["", f"CPU: {cpu_model()}; load average (1, 5, 15 min) before the run "
              f"{', '.join(f'{v:.2f}' for v in load_before)}, after it "
              f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}. {machine_line()}."]
    return "\n".join(parts)


# -- the run -------------------------------------------------------------------------------


def choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of some of `allowed`, in the order given."""
    def parse(text: str) -> list[str]:
        picked = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in picked if item not in allowed]
        if unknown or not picked:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {','.join(allowed)}")
        return picked
    return parse


def counts(text: str) -> list[int]:
    """An argparse type: a comma-separated list of positive whole numbers."""
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: positive whole numbers, comma-separated")
    return values


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=choices(SERVERS), default=list(SERVERS),
                        help=f"servers to load (default {','.join(SERVERS)})")
    parser.add_argument("--cases", type=choices(list(CASES)), default=list(CASES),
                        help=f"cases (default {','.join(CASES)})")
    parser.add_argument("--clients", type=counts, default=list(CLIENTS),
                        help=f"concurrent clients, comma-separated (default {','.join(map(str, CLIENTS))})")
    parser.add_argument("--workers", type=int, action="append", help="zoo serve --workers N (repeatable; default 1)")
    parser.add_argument("--mlflow-workers", type=int, default=4, help="mlflow server --workers (default 4, its own)")
    parser.add_argument("--mlflow-venv", type=Path, default=VENV, help=f"MLflow's virtual environment (default {VENV})")
    parser.add_argument("--warmup", type=float, default=2, help="unrecorded seconds before each run (default 2)")
    parser.add_argument("--duration", type=float, default=10, help="recorded seconds per run (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every case and client count (default 2)")
    parser.add_argument("--load", action=argparse.BooleanOptionalAction, default=True,
                        help="run the load (default yes; --no-load with --cold-list for that alone)")
    parser.add_argument("--cold-list", action="store_true", help="also time a cold `zoo list`, client mode vs catalog")
    parser.add_argument("--runs", type=int, default=9, help="fresh processes per cold `zoo list` mode (default 9)")
    parser.add_argument("--output", default="serve_load.md", help="path under benchmarks/results/")
    args = parser.parse_args()
    args.workers = args.workers or [1]
    if min(args.workers) < 1 or args.mlflow_workers < 1 or args.rounds < 1 or args.duration < 1 or args.runs < 2:
        parser.error("--workers, --mlflow-workers and --rounds must be 1 or more, --duration at least 1 s, "
                     "--runs 2 or more")
    if not args.load and not args.cold_list:
        parser.error("--no-load without --cold-list measures nothing")
    return args


def start_mlflow(stack: ExitStack, args: argparse.Namespace, catalog: Catalog, folder: Path) -> tuple[Server, str]:
    """MLflow's registry server, populated with `catalog`, running until `stack` closes; a line saying how."""
    python = mlflow_venv(args.mlflow_venv)
    database, _ = stack.enter_context(postgresql_catalog(folder))
    folder.mkdir()
    url, pid = stack.enter_context(mlflow_serving(python, database, folder, args.mlflow_workers))
    populated = populate(python, url, [{"name": m["name"], "tags": mlflow_tags(m)} for m in catalog.models],
                         {model: path for model, (path, _) in catalog.files.items()}, folder)
    server = Server(f"MLflow {populated.version}, {args.mlflow_workers} workers", "mlflow", url, pid,
                    mlflow_paths(catalog, populated))
    return server, (
        f"- MLflow: `mlflow server --workers {args.mlflow_workers} --backend-store-uri postgresql+psycopg://.../DB "
        f"--serve-artifacts --artifacts-destination FOLDER` ({' '.join(REQUIREMENTS)} in a virtual environment of "
        "its own; uvicorn, its default, access log on), its own database on the same PostgreSQL server; populated "
        "with MLflow's client: every catalog model registered with tags task, num_params and plugin, one version "
        "each (source: a folder of one run's artifacts), the two files logged as the digits_cnn and resnet50 "
        "versions' artifacts. Its files are fetched as MLflow's client fetches `models:/NAME/1` (after "
        "get-download-uri and a listing, not timed here): `GET /api/2.0/mlflow-artifacts/artifacts/PATH`. MLflow "
        "compresses nothing.")


def start_nginx(stack: ExitStack, catalog: Catalog, folder: Path) -> tuple[Server, str]:
    """nginx serving `catalog`'s files (in `folder`/files), running until `stack` closes; a line saying how."""
    paths = nginx_paths(catalog)
    url, pid = stack.enter_context(nginx_serving(folder / "files", folder / "nginx", paths["file-100k"][0]))
    return Server("nginx, 1 worker", "nginx", url, pid, paths), (
        f"- nginx {version([str(program('nginx')), '-v'])} (Debian's): one worker process, `sendfile on; "
        "tcp_nopush on; keepalive_requests 1000000;`, access log on, serving the folder of the two files.")


def main() -> None:
    args = parse_args()
    if args.load:
        require_programs([name for name in PROGRAMS if name == "wrk" or name in args.servers])
    load_before = os.getloadavg()
    rounds: dict[tuple[str, int, str], list[Round]] = {}
    cold: list[list[object]] = []
    servers: list[Server] = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="zoo-serve-load-")))
        url, size = stack.enter_context(postgresql_catalog(folder))
        env = child_env(ZOO_REGISTRY_URL=url, ZOO_LOAD_PLUGINS=PLUGINS, ZOO_ARTIFACTS=str(folder / "artifacts"))
        synced = run_child(zoo_argv("sync"), env, folder)
        token = run_child(zoo_argv("token", "create", "bench"), env, folder).stdout.strip()
        services = [stack.enter_context(serving("--workers", str(n), env=env, log=folder / f"serve-{n}.log"))
                    for n in args.workers]
        catalog = publish_files(services[0].url, make_files(folder / "files", env) if args.load else {}, token)
        setup = [f"- zoo serve: `zoo serve --port 0 --workers N` on that catalog (uvicorn's access log on, its "
                 f"default, to a file); synced in {synced.wall_s:.1f} s, {size() / 1e6:.1f} MB."]
        if args.cold_list:
            cold = time_cold_list(env, services[0].url, folder, args.runs)
        if args.load:
            if "zoo" in args.servers:
                servers += [Server(f"zoo serve, {n} worker{'s' if n > 1 else ''}", "zoo", s.url, s.pid,
                                   zoo_paths(catalog)) for n, s in zip(args.workers, services)]
            started = []
            if "mlflow" in args.servers:
                started.append(start_mlflow(stack, args, catalog, folder / "mlflow"))
            if "nginx" in args.servers and any(CASES[case][1] for case in args.cases):
                started.append(start_nginx(stack, catalog, folder))
            servers += [server for server, _ in started]
            setup += [line for _, line in started]
            setup.append(f"- Load generator: wrk {version([str(program('wrk')), '-v'])} (Debian's).")
            check_answers(servers, catalog)
            rounds = run_load(servers, catalog, args, folder)
        write_result(args.output, report(args, catalog, servers, rounds, cold, setup, load_before))


if __name__ == "__main__":
    main()
