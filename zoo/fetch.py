"""Finding a weights file on disk, verified by SHA-256: cache, mirror, then URL.

Sources, in order: a ``file://`` URL (weights shipped inside a plugin) is used in
place; else the cache, ``$TORCH_HOME/hub/checkpoints/<file name>`` as torch.hub
keeps it; else the mirror directory ``$ZOO_WEIGHTS_MIRROR`` (a team's pre-seeded
copy); else the URL. Nothing reaches the cache unverified: a download streams to a
temporary file beside it and is renamed into place only when its hash matches, so
an interrupted or concurrent fetch never leaves a bad file. A file already cached
is checked before use; a stamp of its size and mtime stands in for re-hashing until
the file changes. Offline mode (``ZOO_OFFLINE=1``) never touches the network.

Torch-free: the catalog and the CLI use it without importing torch.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.error import URLError
from urllib.parse import unquote, urlparse
from urllib.request import Request, url2pathname, urlopen

from zoo.errors import HashMismatchError, UsageError, WeightsError

OFFLINE_ENV = "ZOO_OFFLINE"
MIRROR_ENV = "ZOO_WEIGHTS_MIRROR"
CHUNK = 1 << 20
TIMEOUT_S = 60
# torch.hub's convention: "<name>-<first hex digits of the SHA-256>.<ext>"
HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")


@dataclass(frozen=True)
class WeightsFile:
    """A weights file to fetch: where it comes from and what its hash must be."""

    url: str
    sha256: str | None = None  # the full hash, when known

    @property
    def name(self) -> str:
        return unquote(Path(urlparse(self.url).path).name)

    @property
    def hash_prefix(self) -> str | None:
        """The hash prefix torch.hub-style file names carry, if any."""
        match = HASH_PREFIX.search(self.name)
        return match[1] if match else None

    @property
    def local_path(self) -> Path | None:
        """The file itself, for ``file://`` URLs."""
        parsed = urlparse(self.url)
        return Path(url2pathname(parsed.path)) if parsed.scheme == "file" else None


@dataclass(frozen=True)
class Fetched:
    """A verified file: where it is, its full SHA-256, and whether it was just checked by hash."""

    path: Path
    sha256: str
    rehashed: bool


def cache_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints``, the directory torch.hub caches weights in."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch"
    )
    return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints"


def offline_from_env() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def cached_path(weights: WeightsFile) -> Path:
    """Where `weights` is used from: the file itself for ``file://`` URLs, else its cache path."""
    return weights.local_path or cache_dir() / weights.name


def fetch(weights: WeightsFile, *, offline: bool | None = None, progress: bool = True) -> Fetched:
    """A verified local copy of `weights`, fetched from the mirror or the URL if needed.

    Raises `WeightsError` when the file cannot be had or its hash differs; nothing
    unverified is left in the cache.
    """
    offline = offline_from_env() if offline is None else offline
    if weights.local_path is not None:
        if not weights.local_path.is_file():
            raise WeightsError(f"weights file {weights.local_path} is missing; reinstall the package that ships it")
        return verify(weights.local_path, weights)
    target = cache_dir() / weights.name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot create the weights cache {target.parent} ({exc}); set TORCH_HOME") from None
    with _lock(target):  # one process fetches; the others then find it cached
        if target.is_file():
            return verify(target, weights)
        mirror = _mirror_copy(weights)
        if mirror is not None:
            with mirror.open("rb") as source:
                return _store(source, weights, target, origin=str(mirror), progress=False)
        if offline:
            where = f" nor in the mirror {_mirror_dir()}" if _mirror_dir() else f" and ${MIRROR_ENV} is not set"
            raise WeightsError(
                f"offline mode: {weights.name} is not in the cache {target.parent}{where}; "
                f"fetch it where there is network (zoo weights fetch NAME) or put it in a mirror directory"
            )
        return _download(weights, target, progress)


def verify(path: Path, weights: WeightsFile, *, force: bool = False) -> Fetched:
    """Check `path` against the hash of `weights`; re-hash only if the file changed (or `force`)."""
    stat = path.stat()
    stamp = _stamp_path(path)
    if not force:
        with contextlib.suppress(OSError, ValueError, KeyError):
            known = json.loads(stamp.read_text())
            if (known["size"], known["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
                _check(known["sha256"], weights, path)
                return Fetched(path, known["sha256"], rehashed=False)
    actual = sha256_of(path)
    _check(actual, weights, path)
    if weights.local_path is None:  # no stamps beside files shipped in packages
        _write_stamp(stamp, actual, stat.st_size, stat.st_mtime_ns)
    return Fetched(path, actual, rehashed=True)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check(actual: str, weights: WeightsFile, path: Path) -> None:
    """Raise if the file at `path` (in place or cached) does not have the hash of `weights`."""
    expected = _mismatch(actual, weights)
    if expected is not None:
        remedy = "reinstall the package that ships it" if weights.local_path else "delete it and fetch it again"
        raise HashMismatchError(
            f"weights file {path} has SHA-256 {actual}, but {expected}: "
            f"the file is corrupted or was replaced; {remedy}",
            path=str(path), actual=actual, expected=weights.sha256 or weights.hash_prefix or "",
        )


def _mismatch(actual: str, weights: WeightsFile) -> str | None:
    """None if `actual` is the hash of `weights`, else what it should have been."""
    if weights.sha256 is not None:
        return None if actual == weights.sha256 else f"it must be {weights.sha256}"
    prefix = weights.hash_prefix
    if prefix is None or actual.startswith(prefix):
        return None
    return f"its file name says it starts with {prefix}"


def _download(weights: WeightsFile, target: Path, progress: bool) -> Fetched:
    if urlparse(weights.url).scheme not in {"http", "https"}:
        raise UsageError(f"weights URL {weights.url!r} is not http(s) or file; cannot fetch it")
    try:
        with urlopen(Request(weights.url, headers={"User-Agent": "zoo"}), timeout=TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            return _store(response, weights, target, origin=weights.url, progress=progress, total=total)
    except (URLError, http.client.HTTPException, OSError) as exc:
        raise WeightsError(
            f"downloading {weights.url} failed ({exc}); nothing was cached; try again, "
            f"or put {weights.name} in ${MIRROR_ENV}"
        ) from None


def _store(source: BinaryIO, weights: WeightsFile, target: Path, *, origin: str, progress: bool,
           total: int | None = None) -> Fetched:
    """Copy `source` into `target` through a temporary file, hashing on the way; rename if it verifies."""
    from tqdm import tqdm

    digest, size = hashlib.sha256(), 0
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part",
                                     delete=False) as part:
        try:
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=target.name,
                      disable=not progress, file=sys.stderr) as bar:
                while chunk := source.read(CHUNK):
                    part.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
            if total is not None and size != total:
                raise WeightsError(f"transfer of {origin} stopped after {size} of {total} bytes; nothing was cached; try again")
            expected = _mismatch(digest.hexdigest(), weights)
            if expected is not None:
                raise HashMismatchError(
                    f"{origin} gave {weights.name} with SHA-256 {digest.hexdigest()}, but {expected}: "
                    f"the source is corrupted or serves another file; nothing was cached",
                    path=origin, actual=digest.hexdigest(), expected=weights.sha256 or weights.hash_prefix or "",
                )
            part.close()
            os.replace(part.name, target)
        except BaseException:
            part.close()
            os.unlink(part.name)
            raise
    stat = target.stat()
    _write_stamp(_stamp_path(target), digest.hexdigest(), stat.st_size, stat.st_mtime_ns)
    return Fetched(target, digest.hexdigest(), rehashed=True)


def _mirror_dir() -> Path | None:
    value = os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None


def _mirror_copy(weights: WeightsFile) -> Path | None:
    mirror = _mirror_dir()
    if mirror is None:
        return None
    if not mirror.is_dir():
        raise UsageError(f"${MIRROR_ENV} is {str(mirror)!r}, which is not a directory")
    candidate = mirror / weights.name
    return candidate if candidate.is_file() else None


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.zoo-verified")


def _write_stamp(stamp: Path, sha256: str, size: int, mtime_ns: int) -> None:
    with contextlib.suppress(OSError):  # a stamp only saves time; never fail for it
        tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"sha256": sha256, "size": size, "mtime_ns": mtime_ns}))
        os.replace(tmp, stamp)


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock per cache file; a read-only cache is used without one."""
    try:
        handle = open(target.with_name(f".{target.name}.lock"), "a")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
