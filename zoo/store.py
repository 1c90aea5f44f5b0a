"""A content-addressed artifact store: published weights files and exports, kept by SHA-256.

A blob lives at ``ROOT/sha256/<first 2 hex digits>/<64 hex digits>`` (the Hugging Face
hub's cache and git's object store do the same), so a file's name is its identity:
the same bytes are stored once, however many names point at them.

Writes are atomic and verified: the bytes stream into a temporary file inside the
store (``ROOT/tmp``, the same file system), hashed on the way, fsynced, and renamed
into place only when the hash matches the one declared (if any) and the size limit
(if any) held; on any failure the temporary file is removed, so a reader never sees
a partial or wrong blob. An existing blob of the same hash is kept. Only regular
files are read and written; blobs are made read-only.

Where the store is (`ArtifactStore.default`): ``$ZOO_ARTIFACTS``; else the folder
``artifacts`` beside a SQLite catalog file; else (a PostgreSQL catalog, shared by
machines) ``$XDG_CACHE_HOME/zoo/artifacts`` (``~/.cache/zoo/artifacts``): point
``$ZOO_ARTIFACTS`` of every machine and service process at one shared folder then.

Torch-free, and SQLAlchemy only to find the default folder of a catalog.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from zoo.errors import ArtifactError, ArtifactTooLargeError, HashMismatchError, UnknownArtifactError, UsageError, excerpt
from zoo.fetch import CHUNK, FULL_HASH
from zoo.outputs import is_regular, open_regular

ARTIFACTS_ENV = "ZOO_ARTIFACTS"
#: Blobs are read-only: nothing edits a file in place once its name is its hash.
_BLOB_MODE = 0o444


@dataclass(frozen=True)
class Artifact:
    """A blob in the store: its full SHA-256, its size in bytes and where it is."""

    sha256: str
    size: int
    path: Path


def check_sha256(sha256: object) -> str:
    """`sha256` if it is 64 lowercase hex digits; a one-line `UsageError` otherwise."""
    if not isinstance(sha256, str) or not FULL_HASH.fullmatch(sha256):
        raise UsageError(f"a SHA-256 must be 64 lowercase hex digits, not {excerpt(sha256)}")
    return sha256


class ArtifactStore:
    """Files kept by SHA-256 under `root` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self.root)!r})"

    @classmethod
    def default(cls) -> ArtifactStore:
        """``$ZOO_ARTIFACTS``, else ``artifacts`` beside a SQLite catalog, else ``~/.cache/zoo/artifacts``."""
        configured = os.environ.get(ARTIFACTS_ENV, "").strip()
        if configured:
            return cls(configured)
        from zoo.catalog.engine import catalog_url

        url = catalog_url()
        if url.get_backend_name() == "sqlite":
            return cls(Path(url.database or "").absolute().parent / "artifacts")
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        return cls(Path(cache) / "zoo" / "artifacts")

    def blob_path(self, sha256: str) -> Path:
        """Where the blob of `sha256` is, or would be, stored."""
        check_sha256(sha256)
        return self.root / "sha256" / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        """Whether the store holds the blob of `sha256` (a regular file)."""
        return is_regular(self.blob_path(sha256))

    def path(self, sha256: str) -> Path:
        """The stored blob of `sha256`; `UnknownArtifactError` when the store lacks it."""
        path = self.blob_path(sha256)
        if not is_regular(path):
            raise UnknownArtifactError(f"the artifact store {self.root} has no file with SHA-256 {sha256}")
        return path

    def read(self, sha256: str) -> bytes:
        """The bytes of the blob of `sha256`, read once and checked against that hash.

        Loading from these bytes leaves no gap between the check and the use; a blob
        damaged on disk raises `HashMismatchError`.
        """
        path = self.path(sha256)
        with open_regular(path, only="only regular files are stored") as f:
            data = f.read()
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise HashMismatchError(f"stored file {path} has SHA-256 {actual}, not the {sha256} it is stored "
                                    f"under: the store is damaged; publish the file again",
                                    path=str(path), actual=actual, expected=sha256)
        return data

    def put_file(self, path: str | os.PathLike[str], *, sha256: str | None = None) -> Artifact:
        """Store the regular file at `path` (checked against `sha256` when given)."""
        source = Path(path)
        with open_regular(source, only="only regular files are stored") as f:
            return self._put(iter(lambda: f.read(CHUNK), b""), sha256=sha256, max_bytes=None, origin=str(source))

    def put_stream(self, chunks: Iterable[bytes], *, sha256: str, max_bytes: int) -> Artifact:
        """Store the bytes of `chunks`, which must hash to `sha256` and be at most `max_bytes` long.

        Raises `ArtifactTooLargeError` as soon as more than `max_bytes` arrive and
        `HashMismatchError` when the bytes hash to something else; nothing is kept then.
        """
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
            raise UsageError(f"max_bytes must be a whole number of bytes, 0 or more, not {excerpt(max_bytes)}")
        return self._put(chunks, sha256=check_sha256(sha256), max_bytes=max_bytes, origin="the upload")

    def _put(self, chunks: Iterable[bytes], *, sha256: str | None, max_bytes: int | None, origin: str) -> Artifact:
        """Stream `chunks` into a temporary file in the store; rename it to its blob path if it verifies."""
        if sha256 is not None:
            check_sha256(sha256)
        with self._temporary() as (part, name):
            digest, size = hashlib.sha256(), 0
            for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise ArtifactTooLargeError(f"{origin} is larger than the limit of {max_bytes} bytes; "
                                                f"nothing was stored", limit=max_bytes)
                digest.update(chunk)
                part.write(chunk)
            actual = digest.hexdigest()
            if sha256 is not None and actual != sha256:
                raise HashMismatchError(f"{origin} has SHA-256 {actual}, but {sha256} was declared; "
                                        f"nothing was stored", path=origin, actual=actual, expected=sha256)
            target = self.blob_path(actual)
            if is_regular(target) and target.stat().st_size == size:
                return Artifact(actual, size, target)  # deduplicated: the same bytes are there already
            if os.path.lexists(target) and not is_regular(target):
                raise ArtifactError(f"the artifact store's entry {target} is not a regular file; remove it")
            part.flush()
            os.fsync(part.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(name, _BLOB_MODE)
            os.replace(name, target)
            _fsync_folder(target.parent)
            return Artifact(actual, size, target)

    @contextlib.contextmanager
    def _temporary(self) -> Iterator[tuple[BinaryIO, str]]:
        """A new temporary file in the store (and its name), removed unless it was renamed into place."""
        folder = self.root / "tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the artifact store {self.root} ({exc.strerror}); "
                             f"set {ARTIFACTS_ENV} to a writable folder") from None
        fd, name = tempfile.mkstemp(dir=folder, prefix=".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as part:
                yield part, name
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform can open folders)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
