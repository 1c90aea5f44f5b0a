"""The registry service under load: throughput, p50/p99 latency and errors for 64 concurrent clients, 1 and 2 workers.

Makes a PostgreSQL catalog of its own (a database created here and dropped at the end),
syncs it with the digits and torchvision plugins, makes a token, then for each
``--workers`` count starts ``zoo serve --port 0 --workers N`` and runs `--clients`
closed-loop clients (each sends its next request when the last one is answered) for
`--warmup` seconds unrecorded, then `--duration` seconds recorded, on a mix of
requests: a page of ``GET /api/v1/models`` (now and then with a filter), ``GET
/api/v1/models/NAME`` (a random torchvision model) and ``HEAD`` and ``GET`` of
``/api/v1/weights/SHA256`` (the digits weights, published through the first service).
An error is a status of 400 or more, a transport error, or a weights body of the wrong
size; the target is none. The clients are one asyncio loop in this process, each an
``httpx.AsyncClient`` with one keep-alive connection; the results say how much of a core
that loop used, so that a saturated load generator would show.

``--cold-list`` adds a separate measurement (`time_cold_list`): a cold ``zoo list``,
each run a fresh process, in client mode (``ZOO_REGISTRY_URL`` the first service's
address) against the same command on the catalog itself, interleaved, after one
warm-up each. Prints markdown tables and writes ``benchmarks/results/serve_load.md``.

    .venv/bin/python benchmarks/serve_load.py [--workers 1 --workers 2] [--clients 64] [--duration 20]
        [--cold-list [--runs 9]] [--no-load]

Issue 14's target: 0 errors under 64 concurrent clients, with 1 and with 2 workers.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from _measure import ROOT, Child, child_env, machine_line, markdown_table, run_child, write_result, zoo_argv
from catalog_scale import postgresql_catalog
from cold_list import row as cold_row

from zoo.testing import serving

API = "/api/v1"
PLUGINS = "digits,torchvision"
WEIGHTS_FILE = ROOT / "plugins" / "zoo-digits" / "zoo_digits" / "digits_cnn-fb1204b6.pth"
PUBLISHED_AS = "bench/digits"
PAGE = 50
#: The filters a filtered page picks from, in turn at random.
FILTERS: tuple[dict[str, object], ...] = (
    {"task": "classification"},
    {"pretrained": "true", "max_params": 10_000_000},
    {"pattern": "resnet*"},
    {"min_metric": "ImageNet-1K:acc@1=80"},
)


@dataclass(frozen=True)
class Target:
    """What the load is sent to: the service's address, the torchvision models' names, the weights file."""

    url: str
    names: tuple[str, ...]
    total: int
    sha256: str
    size: int


@dataclass(frozen=True)
class Request:
    """One request of the mix: method, path and query; `size` the body length its answer must have, if set."""

    method: str
    path: str
    params: Mapping[str, object] | None = None
    size: int | None = None


#: The mix, by kind: (share of the requests, how to make one for a target with a random generator).
MIX: dict[str, tuple[float, Callable[[Target, random.Random], Request]]] = {
    "list (page)": (0.25, lambda t, r: Request("GET", f"{API}/models",
                                                {"limit": PAGE, "offset": r.randrange(t.total)})),
    "list (filtered)": (0.10, lambda t, r: Request("GET", f"{API}/models", {**r.choice(FILTERS), "limit": PAGE})),
    "describe": (0.35, lambda t, r: Request("GET", f"{API}/models/{r.choice(t.names)}")),
    "weights HEAD": (0.15, lambda t, r: Request("HEAD", f"{API}/weights/{t.sha256}")),
    "weights GET": (0.15, lambda t, r: Request("GET", f"{API}/weights/{t.sha256}", size=t.size)),
}


@dataclass(frozen=True)
class Sample:
    """One recorded request: its kind, seconds from sending to the whole answer, and whether it was right."""

    kind: str
    seconds: float
    ok: bool


@dataclass(frozen=True)
class LoadRun:
    """What one load run recorded in `duration` seconds, with how many cores' worth of CPU the service (all its
    processes), the load generator, the PostgreSQL server (None: not on this machine) and the machine used
    meanwhile."""

    samples: list[Sample]
    duration: float
    service_cores: float
    client_cores: float
    database_cores: float | None
    machine_cores: float


# -- the catalog and the service ---------------------------------------------------------


def publish_digits(url: str, token: str) -> tuple[str, int]:
    """Publish the digits weights through the service at `url` as PUBLISHED_AS: the file's SHA-256 and size."""
    body = WEIGHTS_FILE.read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    answer = httpx.post(f"{url}{API}/published/{PUBLISHED_AS}", params={"model": "digits_cnn"}, content=body,
                        headers={"Authorization": f"Bearer {token}", "X-Zoo-SHA256": digest}, timeout=120)
    if answer.status_code != 201:
        raise SystemExit(f"publishing the digits weights failed: {answer.status_code} {answer.text}")
    return digest, len(body)


def make_target(url: str, sha256: str, size: int) -> Target:
    """The load's target at `url`: the torchvision models' names (as the service lists them), the catalog's size."""
    with httpx.Client(base_url=url, timeout=60) as client:
        total = client.get(f"{API}/models", params={"limit": 1}).raise_for_status().json()["total"]
        page = client.get(f"{API}/models", params={"plugin": "torchvision", "limit": 1000}).raise_for_status()
    return Target(url, tuple(m["name"] for m in page.json()["models"]), total, sha256, size)


# -- the load ------------------------------------------------------------------------------


def pick(target: Target, rng: random.Random) -> tuple[str, Request]:
    """A random request of the mix, with its kind."""
    kinds = list(MIX)
    kind = rng.choices(kinds, weights=[MIX[k][0] for k in kinds])[0]
    return kind, MIX[kind][1](target, rng)


async def one_request(client: httpx.AsyncClient, request: Request) -> bool:
    """Send `request`; whether it was answered below 400 (with a body of the right size where one is set)."""
    try:
        answer = await client.request(request.method, request.path, params=request.params)
    except httpx.HTTPError:
        return False
    return answer.status_code < 400 and (request.size is None or len(answer.content) == request.size)


async def client_loop(target: Target, seed: int, start: float, end: float, samples: list[Sample]) -> None:
    """One closed-loop client on a keep-alive connection of its own: requests back to back until `end`;
    those sent from `start` on are recorded."""
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=target.url, limits=httpx.Limits(max_connections=1), timeout=60) as client:
        while (sent := time.perf_counter()) < end:
            kind, request = pick(target, rng)
            ok = await one_request(client, request)
            if sent >= start:
                samples.append(Sample(kind, time.perf_counter() - sent, ok))


def machine_busy_seconds() -> float:
    """CPU seconds all of this machine's CPUs have spent not idle since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


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


def postgres_pid() -> int | None:
    """The id of this machine's PostgreSQL server (a `postgres` process whose parent is not one), if one runs."""
    def name(pid: int | str) -> str:
        return Path(f"/proc/{pid}/comm").read_text().strip()

    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and name(entry.name) == "postgres" and name(proc_stat(entry.name)[1]) != "postgres":
                return int(entry.name)
        except FileNotFoundError:  # it has just ended
            continue
    return None


def cpu_seconds(service_pid: int, database_pid: int | None) -> tuple[float, ...]:
    """Now: wall seconds, and the CPU seconds of the service at `service_pid`, of this process, of the database
    server at `database_pid` (0 without one) and of the machine."""
    return (time.perf_counter(), process_tree_seconds(service_pid), time.process_time(),
            process_tree_seconds(database_pid) if database_pid else 0.0, machine_busy_seconds())


async def run_load(target: Target, service_pid: int, clients: int, warmup: float, duration: float) -> LoadRun:
    """`clients` concurrent clients on `target` for `warmup` + `duration` seconds; the last `duration` recorded,
    with the CPU that the service at `service_pid`, the clients and the machine used meanwhile."""
    samples: list[Sample] = []
    start = time.perf_counter() + warmup
    end = start + duration
    loops = asyncio.gather(*(client_loop(target, seed, start, end, samples) for seed in range(clients)))
    await asyncio.sleep(warmup)
    database_pid = postgres_pid()
    before = cpu_seconds(service_pid, database_pid)
    await asyncio.sleep(max(0.0, end - time.perf_counter()))
    wall, service, client, database, busy = (b - a for a, b in zip(before, cpu_seconds(service_pid, database_pid)))
    await loops
    return LoadRun(samples, duration, service / wall, client / wall, database / wall if database_pid else None,
                   busy / wall)


def p50_p99(seconds: list[float]) -> tuple[float, float]:
    """The median and 99th percentile (inclusive method) of `seconds`, in milliseconds."""
    if len(seconds) < 2:
        return seconds[0] * 1e3, seconds[0] * 1e3
    return statistics.median(seconds) * 1e3, statistics.quantiles(seconds, n=100, method="inclusive")[98] * 1e3


def load_rows(workers: int, run: LoadRun) -> list[list[object]]:
    """Table rows of one load run: all requests, then each kind of the mix."""
    rows = []
    for kind in ("all", *MIX):
        chosen = [s for s in run.samples if kind in ("all", s.kind)]
        if not chosen:
            continue
        p50, p99 = p50_p99([s.seconds for s in chosen])
        errors = sum(not s.ok for s in chosen)
        label = f"**{kind}**" if kind == "all" else kind
        rows.append([workers, label, len(chosen), f"{len(chosen) / run.duration:.1f}", f"{p50:.1f}", f"{p99:.1f}",
                     errors])
    return rows


def cpu_line(workers: int, run: LoadRun) -> str:
    """How many cores the service, the load generator, PostgreSQL and everything else used during one run, and the
    service's CPU time per request (what other work on the machine changes least)."""
    database = f", PostgreSQL (all its databases) {run.database_cores:.2f}" if run.database_cores is not None else ""
    rest = run.machine_cores - run.service_cores - run.client_cores - (run.database_cores or 0)
    per_request = 1e3 * run.service_cores * run.duration / len(run.samples)
    return (f"- {workers} worker{'s' if workers > 1 else ''}, cores used: the service's processes "
            f"{run.service_cores:.2f} ({per_request:.1f} ms of CPU per request), the load generator "
            f"{run.client_cores:.2f}{database}, everything else {max(rest, 0.0):.2f}; in all "
            f"{run.machine_cores:.2f} of {os.cpu_count()}")


# -- a cold `zoo list`, client mode against the catalog itself ---------------------------------


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


# -- the run -------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), and whether there is an NVIDIA GPU (unused here)."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else ())
             if line.startswith("model name")]
    gpu = "an NVIDIA GPU (unused)" if shutil.which("nvidia-smi") else "no GPU"
    return f"{names[0] if names else 'unknown CPU'}, {len(names) or '?'} cores, {gpu}"


def report(args: argparse.Namespace, target: Target, load: list[list[object]], cpu_lines: list[str],
           cold: list[list[object]], sync_s: float, catalog_mb: float, load_before: float) -> str:
    """The markdown of the run: the load table and how busy the CPUs were, the cold `zoo list` table, the machine
    (`load_before`: its load average before the run, what others ran on it)."""
    shares = ", ".join(f"{kind} {share:.0%}" for kind, (share, _) in MIX.items())
    parts = [f"Catalog: PostgreSQL, plugins {PLUGINS} ({target.total} models, {len(target.names)} torchvision), "
             f"synced in {sync_s:.1f} s, {catalog_mb:.1f} MB; one published weights file ({target.size:,} bytes)."]
    if load:
        parts += [
            "",
            f"`zoo serve --workers N` under {args.clients} concurrent closed-loop clients, {args.duration:.0f} s "
            f"recorded after {args.warmup:.0f} s of warm-up. Mix: {shares}; a page is {PAGE} models at a random "
            "offset, a filtered page one of: " + "; ".join(
                "&".join(f"{k}={v}" for k, v in f.items()) for f in FILTERS) + ". Describe: a random torchvision "
            "model. Errors: status 400 or more, transport errors, a weights body of the wrong size (target 0).",
            "",
            markdown_table(["workers", "kind", "requests", "req/s", "p50 (ms)", "p99 (ms)", "errors"], load),
            "",
            f"Load generator: one asyncio loop in the benchmark's process, {args.clients} httpx.AsyncClients of "
            "one keep-alive connection each (one client sharing a pool of them spent 5 times the CPU per request), "
            "on the same cores as the service, its workers and PostgreSQL; uvicorn's access log on (its default), "
            "written to a file.",
            *cpu_lines,
        ]
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
    parts += ["", f"CPU: {cpu_model()}; load average {load_before:.2f} before the run (other processes). "
              f"{machine_line()}."]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, action="append", help="zoo serve --workers N (repeatable; default 1, 2)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    parser.add_argument("--warmup", type=float, default=3, help="unrecorded seconds first (default 3)")
    parser.add_argument("--duration", type=float, default=20, help="recorded seconds (default 20)")
    parser.add_argument("--load", action=argparse.BooleanOptionalAction, default=True,
                        help="run the load (default yes; --no-load with --cold-list for that alone)")
    parser.add_argument("--cold-list", action="store_true", help="also time a cold `zoo list`, client mode vs catalog")
    parser.add_argument("--runs", type=int, default=9, help="fresh processes per cold `zoo list` mode (default 9)")
    parser.add_argument("--output", default="serve_load.md", help="path under benchmarks/results/")
    args = parser.parse_args()
    workers = (args.workers or [1, 2]) if args.load else [1]
    if min(workers) < 1 or args.clients < 1 or args.duration <= 0 or args.warmup < 0 or args.runs < 2:
        parser.error("--workers and --clients must be 1 or more, --runs 2 or more, --duration above 0, "
                     "--warmup 0 or more")

    load: list[list[object]] = []
    cpu_lines: list[str] = []
    cold: list[list[object]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="zoo-serve-load-") as tmp, postgresql_catalog(Path(tmp)) as (url, size):
        folder = Path(tmp)
        env = child_env(ZOO_REGISTRY_URL=url, ZOO_LOAD_PLUGINS=PLUGINS, ZOO_ARTIFACTS=str(folder / "artifacts"))
        synced = run_child(zoo_argv("sync"), env, folder)
        token = run_child(zoo_argv("token", "create", "bench"), env, folder).stdout.strip()
        published: tuple[str, int] | None = None
        for count in workers:
            with serving("--workers", str(count), env=env, log=folder / f"serve-{count}.log") as service:
                if published is None:  # the first service publishes; the catalog and the store outlive it
                    published = publish_digits(service.url, token)
                    if args.cold_list:
                        cold = time_cold_list(env, service.url, folder, args.runs)
                target = make_target(service.url, *published)
                if args.load:
                    run = asyncio.run(run_load(target, service.pid, args.clients, args.warmup, args.duration))
                    load += load_rows(count, run)
                    cpu_lines.append(cpu_line(count, run))
        catalog_mb = size() / 1e6
    write_result(args.output, report(args, target, load, cpu_lines, cold, synced.wall_s, catalog_mb,
                                     load_before))


if __name__ == "__main__":
    main()
