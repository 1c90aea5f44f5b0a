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
Only regular files are read and written; blobs are made read-only. Storing bytes the store
already holds refreshes that blob's modification time, which is its `Artifact.modified`: a blob
published again counts as new to `zoo gc` (`zoo.gc`), as a blob just written does.

Unfinished uploads (`DirectoryStore.leftovers`) are the temporary files of writes in ``ROOT/tmp``
and the service's upload folders in ``ROOT/uploads`` (`zoo.service.common.upload_folder`), left
by a process killed mid-write. Neither is locked: a write in flight changes its file with every
chunk it writes, so its modification time stays recent, and `zoo gc` removes only what is older
than its grace period.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from zoo.errors import ArtifactError, HashMismatchError, UnknownArtifactError, UsageError, excerpt
from zoo.outputs import CHUNK, FULL_HASH, check_sha256, content_path, is_regular, open_regular, write_atomically

if TYPE_CHECKING:
    from zoo.settings import Settings

__all__ = ["Artifact", "ArtifactStore", "DirectoryStore", "Leftover", "check_sha256", "open_store"]

#: Blobs are read-only: nothing edits a file in place once its name is its hash.
_BLOB_MODE = 0o444
#: The folders of a directory store that hold unfinished uploads: the temporary files of `write_atomically`
#: (each a leftover) and the service's upload folders (`zoo.service.common.upload_folder`; each a leftover).
_TEMPORARY, _UPLOADS = "tmp", "uploads"


@dataclass(frozen=True)
class Artifact:
    """A blob in a store: its full SHA-256, its size in bytes and when it was stored (seconds since the epoch;
    `zoo gc` keeps blobs younger than its grace period, so that one being published is never removed)."""

    sha256: str
    size: int
    #: Not part of a blob's identity: the same blob listed twice, or as stored and as listed, compares equal.
    modified: float = field(default=0.0, compare=False)


@dataclass(frozen=True)
class Leftover:
    """An unfinished upload a store still holds (a temporary file, an incomplete multipart upload), never a blob:
    `name` identifies it to `ArtifactStore.remove_leftover`; `zoo gc` removes those older than its grace period."""

    name: str
    size: int
    modified: float


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

    def url_for(self, sha256: str, *, expires_in: int) -> str | None:
        """A URL that GETs the blob of `sha256` straight from the store for `expires_in` seconds (a presigned URL),
        or None for a store that has none (a folder): ``zoo serve --artifacts redirect`` needs one."""
        ...

    def leftovers(self) -> Iterator[Leftover]:
        """The unfinished uploads the store holds (none of them a blob)."""
        ...

    def remove_leftover(self, leftover: Leftover) -> bool:
        """Remove an unfinished upload `leftovers` listed; whether it was still there."""
        ...

    def scratch(self, name: str) -> Path:
        """A local folder `name` (made if missing) for files on their way into the store, such as the
        service's uploads being checked before they are published: never a blob's place, on the store's
        own file system where it has one, shared by the processes that share the store."""
        ...


def checked_limit(max_bytes: object) -> int:
    """`max_bytes` of `ArtifactStore.put_stream`: a whole number of bytes, 0 or more (a one-line `UsageError` else)."""
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
        raise UsageError(f"max_bytes must be a whole number of bytes, 0 or more, not {excerpt(max_bytes)}")
    return max_bytes


def open_store(settings: Settings) -> ArtifactStore:
    """The artifact store `settings` configure (see the module docstring): an `zoo.s3store.S3Store` for an
    ``s3://BUCKET[/PREFIX]`` location, else a `DirectoryStore`."""
    if (settings.artifacts or "").lower().startswith("s3://"):
        from zoo.s3store import S3Store

        return S3Store.from_settings(settings)
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
                                yield Artifact(entry.name, st.st_size, st.st_mtime)

    def delete(self, sha256: str) -> bool:
        path = self._blob(sha256)
        return is_regular(path) and _unlink(path)

    def url_for(self, sha256: str, *, expires_in: int) -> str | None:
        """None: a folder has no URL a client could GET (``zoo serve --artifacts proxy`` streams it)."""
        check_sha256(sha256)
        return None

    def leftovers(self) -> Iterator[Leftover]:
        """The temporary files in ``ROOT/tmp`` (``tmp/NAME``) and the upload folders in ``ROOT/uploads``
        (``uploads/NAME``, the size and newest modification time of the files in it); never a symbolic link."""
        for entry in _entries(self.root / _TEMPORARY):
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if _regular(st):
                    yield Leftover(f"{_TEMPORARY}/{entry.name}", st.st_size, st.st_mtime)
        for entry in _entries(self.root / _UPLOADS):
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    files = [f.stat(follow_symlinks=False) for f in _entries(Path(entry.path))]
                    yield Leftover(f"{_UPLOADS}/{entry.name}", sum(st.st_size for st in files if _regular(st)),
                                   max([entry.stat(follow_symlinks=False).st_mtime, *(st.st_mtime for st in files)]))

    def remove_leftover(self, leftover: Leftover) -> bool:
        """Unlink the temporary file, or the regular files of the upload folder and then the folder, that
        `leftover` names (`leftovers`); False when it is gone. Nothing is followed through a symbolic link,
        and an upload folder holding anything but regular files keeps that, and stays."""
        folder, _, name = leftover.name.partition("/")
        if folder not in {_TEMPORARY, _UPLOADS} or name in {"", ".", ".."} or any(c in name for c in "/\\\0"):
            raise UsageError(f"{excerpt(leftover.name)} is not a leftover of the artifact store {self.root}; "
                             f"expected {_TEMPORARY}/NAME or {_UPLOADS}/NAME")
        path = self.root / folder / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if folder == _TEMPORARY:
            return _regular(st) and _unlink(path)
        if not stat.S_ISDIR(st.st_mode):
            return False
        for entry in _entries(path):
            if entry.is_file(follow_symlinks=False):
                _unlink(Path(entry.path))
        with contextlib.suppress(OSError):  # not empty: it keeps what is not a regular file
            os.rmdir(path)
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
        return self._put(chunks, sha256=check_sha256(sha256), max_bytes=checked_limit(max_bytes), origin="the upload")

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
        # An existing blob kept as it was is new again: `zoo gc` must not take it for an old unreferenced one
        # while the catalog row of this publish is still to be written. Only its owner may touch it.
        try:
            with contextlib.suppress(PermissionError):
                os.utime(written.path)
            return Artifact(written.sha256, written.size, os.lstat(written.path).st_mtime)
        except FileNotFoundError:  # the kept blob was removed meanwhile (zoo gc elsewhere): nothing is stored
            raise ArtifactError(f"the artifact store {self.root} lost its file with SHA-256 {written.sha256} "
                                f"while it was being stored again (zoo gc?); store it again") from None

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


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    """The entries of `folder`, by name; none when it is missing (or not a folder)."""
    try:
        with os.scandir(folder) as found:
            return sorted(found, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _unlink(path: Path) -> bool:
    """Unlink `path` (never what a symbolic link there points to); False when it was gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:  # removed meanwhile by another process
        return False
    return True
