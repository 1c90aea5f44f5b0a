"""The artifact store: published weights files and exports, kept by SHA-256.

`ArtifactStore` is the protocol every caller annotates with: put a stream (with its
declared SHA-256 and a size bound) or a regular file, open a blob for streaming reads,
read its verified bytes, stat, exists, iterate, delete, all by hash. No caller sees
where or how a store keeps its blobs: `location` names it in messages only, and
`scratch` is a local folder for files on their way in (the service's uploads).
`open_store(settings)` picks the store a `zoo.settings.Settings` configures.

`DirectoryStore`, the one implementation so far, keeps a blob at
``ROOT/sha256/<first 2 hex digits>/<64 hex digits>`` (`zoo.outputs.content_path`; the
Hugging Face hub's cache and git's object store do the same), so a file's name is its
identity: the same bytes are stored once, however many names point at them.

Writes are atomic and verified (`zoo.outputs.write_atomically`): the bytes stream into a
temporary file inside the store (``ROOT/tmp``, the same file system), hashed on the way,
fsynced, and renamed into place only when the hash matches the one declared (if any) and
the size limit (if any) held; on any failure the temporary file is removed, so a reader
never sees a partial or wrong blob. The rename is made durable before `put_stream` or
`put_file` returns (its folder, and a fan-out folder made for it, fsynced): a blob whose
publishing was acknowledged survives a crash. An existing blob of the same hash is kept.
Only regular files are read and written; blobs are made read-only.

Where the store is (`open_store`): the settings' ``artifacts`` (``$ZOO_ARTIFACTS``); else
the folder ``artifacts`` beside a SQLite catalog file; else (a PostgreSQL catalog, shared
by machines, or a registry service) ``cache_home/zoo/artifacts``
(``~/.cache/zoo/artifacts``): point ``$ZOO_ARTIFACTS`` of every machine and service
process at one shared folder then.

Torch-free, and SQLAlchemy only to find the folder beside a SQLite catalog.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from zoo.errors import ArtifactError, HashMismatchError, UnknownArtifactError, UsageError, excerpt
from zoo.outputs import CHUNK, FULL_HASH, check_sha256, content_path, is_regular, open_regular, write_atomically

if TYPE_CHECKING:
    from zoo.settings import Settings

__all__ = ["Artifact", "ArtifactStore", "DirectoryStore", "check_sha256", "open_store"]

#: Blobs are read-only: nothing edits a file in place once its name is its hash.
_BLOB_MODE = 0o444


@dataclass(frozen=True)
class Artifact:
    """A blob in a store: its full SHA-256 and its size in bytes."""

    sha256: str
    size: int


class ArtifactStore(Protocol):
    """Files kept by SHA-256. Every method takes a full SHA-256 (64 lowercase hex digits; anything
    else is a one-line `UsageError`) and raises `UnknownArtifactError` for a blob the store lacks."""

    @property
    def location(self) -> str:
        """Where the store is, for messages (a folder, a bucket URL)."""
        ...

    def put_stream(self, chunks: Iterable[bytes], *, sha256: str, max_bytes: int) -> Artifact:
        """Store the bytes of `chunks`, which must hash to `sha256` and be at most `max_bytes` long
        (`ArtifactTooLargeError` as soon as more arrive, `HashMismatchError` otherwise; nothing is kept then)."""
        ...

    def put_file(self, path: str | os.PathLike[str], *, sha256: str | None = None) -> Artifact:
        """Store the regular file at `path` (checked against `sha256` when given)."""
        ...

    def open(self, sha256: str) -> BinaryIO:
        """The blob of `sha256` opened for reading (a binary file object and context manager; seekable)."""
        ...

    def read(self, sha256: str) -> bytes:
        """The bytes of the blob of `sha256`, read once and checked against that hash (`HashMismatchError`)."""
        ...

    def stat(self, sha256: str) -> int | None:
        """The size in bytes of the blob of `sha256`; None when the store lacks it."""
        ...

    def exists(self, sha256: str) -> bool:
        """Whether the store holds the blob of `sha256`."""
        ...

    def __iter__(self) -> Iterator[Artifact]:
        """Every blob in the store (in no particular order)."""
        ...

    def delete(self, sha256: str) -> bool:
        """Remove the blob of `sha256`; whether there was one."""
        ...

    def scratch(self, name: str) -> Path:
        """A local folder `name` (made if missing) for files on their way into the store, such as the
        service's uploads being checked before they are published: never a blob's place, on the store's
        own file system where it has one, shared by the processes that share the store."""
        ...


def open_store(settings: Settings) -> ArtifactStore:
    """The artifact store `settings` configure (see the module docstring)."""
    return DirectoryStore.from_settings(settings)


class DirectoryStore:
    """An `ArtifactStore` in a folder, `root` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()

    def __repr__(self) -> str:
        return f"DirectoryStore({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DirectoryStore) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    @classmethod
    def from_settings(cls, settings: Settings) -> DirectoryStore:
        """``settings.artifacts``, else ``artifacts`` beside a SQLite catalog, else ``cache_home/zoo/artifacts``."""
        if settings.artifacts:
            return cls(settings.artifacts)
        if settings.sqlite_file is not None:
            return cls(settings.sqlite_file.absolute().parent / "artifacts")
        return cls(settings.cache_home / "zoo" / "artifacts")

    @property
    def location(self) -> str:
        return str(self.root)

    def exists(self, sha256: str) -> bool:
        return is_regular(self._blob(sha256))

    def stat(self, sha256: str) -> int | None:
        try:
            st = os.lstat(self._blob(sha256))
        except OSError:
            return None
        return st.st_size if _regular(st) else None

    def open(self, sha256: str) -> BinaryIO:
        path = self._blob(sha256)
        if not is_regular(path):
            raise self._unknown(sha256)
        return open_regular(path, error=ArtifactError, what="stored file", only="only regular files are stored")

    def read(self, sha256: str) -> bytes:
        """The bytes of the blob of `sha256`, read once and checked against that hash.

        Loading from these bytes leaves no gap between the check and the use; a blob
        damaged on disk raises `HashMismatchError`.
        """
        with self.open(sha256) as f:
            data = f.read()
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            where = self._blob(sha256)
            raise HashMismatchError(f"stored file {where} has SHA-256 {actual}, not the {sha256} it is stored "
                                    f"under: the store is damaged; publish the file again",
                                    path=str(where), actual=actual, expected=sha256)
        return data

    def __iter__(self) -> Iterator[Artifact]:
        with contextlib.suppress(FileNotFoundError):
            for fan in sorted(os.scandir(self.root / "sha256"), key=lambda e: e.name):
                if len(fan.name) != 2 or not fan.is_dir(follow_symlinks=False):
                    continue
                for entry in sorted(os.scandir(fan.path), key=lambda e: e.name):
                    if FULL_HASH.fullmatch(entry.name) and entry.name[:2] == fan.name:
                        with contextlib.suppress(OSError):
                            st = entry.stat(follow_symlinks=False)
                            if _regular(st):
                                yield Artifact(entry.name, st.st_size)

    def delete(self, sha256: str) -> bool:
        path = self._blob(sha256)
        if not is_regular(path):
            return False
        try:
            os.unlink(path)
        except FileNotFoundError:  # removed meanwhile by another process
            return False
        return True

    def scratch(self, name: str) -> Path:
        """``ROOT/NAME`` (made if missing); `name` is one plain folder name other than ``sha256``."""
        if name in {"", ".", "..", "sha256", "tmp"} or any(c in name for c in "/\\\0"):
            raise UsageError(f"a scratch folder of the store is one plain name, not {excerpt(name)}")
        folder = self.root / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {folder} in the artifact store ({exc.strerror}); "
                             f"set ZOO_ARTIFACTS to a writable folder") from None
        return folder

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
        """Stream `chunks` through a temporary file in ``ROOT/tmp`` to their blob, if they verify."""
        if sha256 is not None:
            check_sha256(sha256)
        scratch = self.root / "tmp"
        try:
            scratch.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the artifact store {self.root} ({exc.strerror}); "
                             f"set ZOO_ARTIFACTS to a writable folder") from None
        written = write_atomically(self._place, chunks, sha256=sha256, max_bytes=max_bytes, folder=scratch,
                                   origin=origin, mode=_BLOB_MODE, keep_existing=True)
        return Artifact(written.sha256, written.size)

    def _place(self, sha256: str) -> Path:
        """The blob path new bytes of `sha256` are renamed to, refused when something else is there."""
        target = self._blob(sha256)
        if os.path.lexists(target) and not is_regular(target):
            raise ArtifactError(f"the artifact store's entry {target} is not a regular file; remove it")
        return target

    def _blob(self, sha256: str) -> Path:
        """Where the blob of `sha256` is, or would be, stored."""
        return content_path(self.root, sha256)

    def _unknown(self, sha256: str) -> UnknownArtifactError:
        return UnknownArtifactError(f"the artifact store {self.root} has no file with SHA-256 {sha256}")


def _regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)
