"""MLflow's model-registry server for the load benchmarks: installed in a virtual environment of its own, backed by
a PostgreSQL database, populated through MLflow's own Python client.

`mlflow_venv` makes (once; later runs reuse it) a virtual environment outside the
checkout with MLflow and psycopg, never touching zoo's. `mlflow_serving` runs ``mlflow
server`` on a loopback port with its backend store in a PostgreSQL database and proxied
artifact serving (``--serve-artifacts``) from a local folder. `populate` registers
models with MLflow's client, run by that environment's Python (a script written to a
temporary file): one registered model per catalog model with its tags, one version
each whose source is a folder of a run's artifacts (the models given files get those
files there), and downloads each file back through the registry as MLflow's client
does (``models:/NAME/1``) to check the path the benchmark loads.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from http_load import free_port, started

#: What the environment holds (3.18.0 needs mlflow-tracing 3.18.0, which the package index here lacks).
REQUIREMENTS = ("mlflow==3.17.2", "psycopg[binary]")
VENV = Path(tempfile.gettempdir()) / "zoo-bench-mlflow-venv"
REGISTRY = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts/"
PAGE = 50

#: Run by the environment's Python: argv[1] a JSON file of {"url", "models": [{"name", "tags"}], "files": {name:
#: path}, "download": folder}; prints JSON: the MLflow version, the page tokens of the registered models' search
#: (pages of PAGE), and for each file the version's download URI and the size downloaded through the registry.
_POPULATE = """\
import json, os, sys
import mlflow
from mlflow import MlflowClient

spec = json.load(open(sys.argv[1]))
client = MlflowClient(tracking_uri=spec["url"], registry_uri=spec["url"])
mlflow.set_tracking_uri(spec["url"])
run = client.create_run(client.create_experiment("zoo-bench"))
for name, path in spec["files"].items():
    client.log_artifact(run.info.run_id, path, artifact_path=name)
client.set_terminated(run.info.run_id)
for model in spec["models"]:
    client.create_registered_model(model["name"], tags=model["tags"])
    client.create_model_version(model["name"], f"{run.info.artifact_uri}/{model['name']}", run_id=run.info.run_id)
tokens, page = [], client.search_registered_models(max_results=%(page)d)
while page.token:
    tokens.append(page.token)
    page = client.search_registered_models(max_results=%(page)d, page_token=page.token)
files = {}
for name, path in spec["files"].items():
    folder = mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=os.path.join(spec["download"], name))
    got = os.path.join(folder, os.path.basename(path))
    files[name] = {"uri": client.get_model_version_download_uri(name, "1"), "size": os.path.getsize(got)}
    os.remove(got)
print(json.dumps({"version": mlflow.__version__, "page_tokens": tokens, "files": files}))
""" % {"page": PAGE}


@dataclass(frozen=True)
class Populated:
    """The registry as `populate` left it: MLflow's version, the search's page tokens (after the first page) and
    each file's download path on the server (what MLflow's client GETs for ``models:/NAME/1``), by model name."""

    version: str
    page_tokens: tuple[str, ...]
    file_paths: dict[str, str]


def mlflow_venv(path: Path = VENV) -> Path:
    """The Python of a virtual environment at `path` holding REQUIREMENTS, made or completed now if it does not;
    SystemExit saying why if that fails."""
    python = path / "bin" / "python"
    check = ("import importlib.metadata as m, sys, psycopg; "
             f"sys.exit(m.version('mlflow') != {REQUIREMENTS[0].split('==')[1]!r})")
    if python.exists() and subprocess.run([python, "-c", check], capture_output=True).returncode == 0:
        return python
    print(f"installing {', '.join(REQUIREMENTS)} into {path} (about 1 GB) ...", file=sys.stderr, flush=True)
    for argv in ([sys.executable, "-m", "venv", str(path)], [python, "-m", "pip", "install", "-q", *REQUIREMENTS]):
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"MLflow could not be installed ({' '.join(map(str, argv))}):\n{done.stderr[-3000:]}")
    return python


@contextlib.contextmanager
def mlflow_serving(python: Path, database_url: str, folder: Path, workers: int) -> Iterator[tuple[str, int]]:
    """``mlflow server`` of the environment of `python` (`workers` worker processes, uvicorn, its default) with its
    backend store at `database_url` and proxied artifacts in `folder`/artifacts, on a loopback port, until the
    block ends: its address and process id, once /health answers."""
    port = free_port()
    argv = [str(python.parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--backend-store-uri", database_url, "--serve-artifacts",
            "--artifacts-destination", str(folder / "artifacts")]
    url = f"http://127.0.0.1:{port}"
    with started(argv, f"{url}/health", folder / "mlflow-server.log") as process:
        yield url, process.pid


def populate(python: Path, url: str, models: Sequence[Mapping[str, object]], files: Mapping[str, Path],
             folder: Path) -> Populated:
    """Register `models` ({"name", "tags"}) in the MLflow server at `url` with MLflow's client, `files` (by model
    name) as the artifacts of those models' versions; check each downloads through the registry whole."""
    script, spec = folder / "populate_mlflow.py", folder / "populate_mlflow.json"
    script.write_text(_POPULATE)
    spec.write_text(json.dumps({"url": url, "models": list(models), "download": str(folder / "downloaded"),
                                "files": {name: str(path) for name, path in files.items()}}))
    done = subprocess.run([python, str(script), str(spec)], capture_output=True, text=True, cwd=folder)
    if done.returncode != 0:
        raise SystemExit(f"populating MLflow's registry failed:\n{done.stderr[-3000:]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    for name, got in answer["files"].items():
        if got["size"] != files[name].stat().st_size:
            raise SystemExit(f"MLflow's registry gave back {got['size']} bytes of {name}'s file, not "
                             f"{files[name].stat().st_size}")
    prefix = "mlflow-artifacts:/"
    paths = {name: ARTIFACTS + got["uri"].removeprefix(prefix).lstrip("/") + "/" + files[name].name
             for name, got in answer["files"].items() if got["uri"].startswith(prefix)}
    if len(paths) != len(files):
        raise SystemExit(f"MLflow's versions are not in its proxied artifact store: {answer['files']}")
    return Populated(answer["version"], tuple(answer["page_tokens"]), paths)
