"""Writing a file the user asked for without destroying what is already there.

Every file zoo writes on request (an ONNX export and its ``.data`` tensors, an int8
model) goes through `staged_output`:

- only regular files are written: a directory, symbolic link, device, fifo or socket at
  the path is refused, so ``-o /dev/null`` or a link to a file elsewhere is left alone;
- an existing regular file is replaced only if zoo wrote it (an ONNX model carrying
  zoo's ``zoo.*`` provenance) or the caller passes ``overwrite=True`` (``--force``); a
  write-protected file needs ``overwrite=True`` even then, and its replacement keeps
  its permissions;
- the file is made in a private folder beside the path (``.NAME.XXXXXXXX.tmp``) and
  renamed into place only when the caller's block succeeds, so a failure or a kill
  never leaves a half-written file at the path;
- a lock per path (`file_lock`) is held meanwhile, and under it the folders of dead
  writers to the same path are removed.

A run's scratch files that are no output (`zoo bench`'s export and int8 model) go in a
`scratch_folder`, ``PREFIX-XXXXXXXX`` in the temporary folder, removed when the run ends;
one a killed run leaves is removed by the next run of the same prefix (the same rule: its
owner held its lock while it lived).

Every other file zoo keeps (a weights file in the cache, a blob of the artifact store, an
upload the service checks) is written by `write_atomically`: the bytes stream into a
temporary file in the target's folder, hashed (SHA-256) and counted on the way, checked
against a declared hash and a size bound, fsynced and renamed into place; nothing
half-written is ever visible under the final name, and the temporary file is removed on
any failure. `move_into_place` is its last step (fsync, rename, fsync the folder), which
`staged_output` and the weights cache's adoption of an earlier copy use for files that
are already whole. `content_path` is the one content-addressed layout.

Torch-free; the ``onnx`` package is imported only to recognise an earlier export.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from filelock import FileLock, Timeout, UnixFileLock

from zoo import metadata
from zoo.errors import ArtifactTooLargeError, HashMismatchError, UsageError, ZooError, excerpt

#: Files that travel with an output, by suffix: ONNX external data.
COMPANIONS = (".data",)
#: No ONNX file without external data is larger (protobuf's limit); larger files are not ours.
_MAX_ONNX_BYTES = 2**31 - 1
#: A saved ModelProto starts with its field 1, ir_version (a varint): tag byte 0x08. Other files are not read on.
_ONNX_FIRST_BYTE = b"\x08"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The text chunk (key, value) of the PNG files zoo draws (`png_info`).
_PNG_MARK = ("Software", "zoo")
_FORCE = "pass --force (overwrite=True in Python) to replace it"
#: How a folder is opened to be fsynced, and the errors of file systems that cannot fsync one (not a failure).
_FOLDER = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
_NO_FSYNC = {errno.EINVAL, errno.ENOTSUP, errno.EBADF}
#: Bytes read or written at a time when a file is streamed.
CHUNK = 1 << 20
#: A full SHA-256 as zoo writes it everywhere: 64 lowercase hex digits.
FULL_HASH = re.compile(r"[0-9a-f]{64}")
#: What `tempfile` adds to a name to make it unique: 8 of these characters.
_UNIQUE = "[a-z0-9_]{8}"


@contextlib.contextmanager
def file_lock(target: Path, *, optional: bool = False, wait: bool = True,
              leftovers: str | None = None) -> Iterator[bool]:
    """Hold an exclusive lock on `target` (the file ``.NAME.lock`` beside it, removed afterwards).

    One holder at a time, across processes and threads, by `filelock` (flock on Unix,
    LockFileEx on Windows). Yields whether the lock is held. On Unix the lock file is
    unlinked while still held (filelock keeps it otherwise); a waiter that then gets the
    unlinked file notices and locks a new one. Windows removes it on release. With
    `optional`, a folder where the lock file cannot be made (a read-only cache) is used
    without a lock (yielding False); otherwise that raises `OSError`, as does a lock
    path that is not a regular file. Without `wait`, a lock another holder has is not
    waited for: the block runs without it (yielding False). `leftovers`, a regular
    expression, names the scratch files and folders that holders of this lock make beside
    `target`: those it matches in full are removed once the lock is held, since whoever
    made them is gone.
    """
    lock_path = target.with_name(f".{target.name}.lock")
    # No soft fallback (where flock is missing): unlinking a soft lock's marker would release it.
    lock = FileLock(lock_path, fallback_to_soft=False, on_acquired=_require_regular)
    try:
        # Made (or opened) first, as filelock opens it (never through a symbolic link): filelock waits for ever
        # on a lock file that cannot be created.
        os.close(os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0), 0o644))
        lock.acquire(blocking=wait)
    except Timeout:  # held by another, and not waited for (a TimeoutError: an OSError, so first)
        yield False
        return
    except OSError:
        if not optional:
            raise
        yield False
        return
    try:
        if leftovers is not None:
            _remove_leftovers(target.parent, re.compile(leftovers))
        yield True
    finally:
        if isinstance(lock, UnixFileLock):
            with contextlib.suppress(OSError):
                os.unlink(lock_path)
        lock.release()


def is_regular(path: Path) -> bool:
    """Whether `path` is a regular file itself (not a link to one, a FIFO or a device)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def open_regular(path: Path, *, error: type[ZooError] = UsageError, what: str = "file",
                 only: str = "only a regular file is read") -> BinaryIO:
    """`path` opened for reading without blocking on a FIFO, refused with one `error` line
    (naming it as `what`, saying `only`) unless it is a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise error(f"cannot read {what} {path} ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise error(f"{what} {path} is not a regular file; {only}")
    return os.fdopen(fd, "rb")


@dataclass(frozen=True)
class Written:
    """A file `write_atomically` put in place: where it is, and the SHA-256 and size of its bytes."""

    path: Path
    sha256: str
    size: int


def check_sha256(sha256: object) -> str:
    """`sha256` if it is 64 lowercase hex digits; a one-line `UsageError` otherwise."""
    if not isinstance(sha256, str) or not FULL_HASH.fullmatch(sha256):
        raise UsageError(f"a SHA-256 must be 64 lowercase hex digits, not {excerpt(sha256)}")
    return sha256


def content_path(root: Path, sha256: str, *, suffix: str = "", fan_out: bool = True) -> Path:
    """Where the bytes of `sha256` are kept under `root`, the one content-addressed layout:
    ``sha256/<first 2 hex digits>/<sha256><suffix>`` (the artifact store; git's objects and the
    Hugging Face hub's cache fan out alike), or ``sha256/<sha256><suffix>`` without `fan_out` (the
    weights cache's and a mirror's documented layout). `suffix` is for loaders that tell formats by
    it (``.safetensors``)."""
    check_sha256(sha256)
    if suffix and (not suffix.startswith(".") or any(c in suffix for c in "/\\\0")):
        raise UsageError(f"a content-addressed file's suffix must be one '.SUFFIX', not {excerpt(suffix)}")
    name = sha256 + suffix
    return root / "sha256" / sha256[:2] / name if fan_out else root / "sha256" / name


def write_atomically(
    target: Path | Callable[[str], Path],
    chunks: Iterable[bytes],
    *,
    sha256: str | None = None,
    max_bytes: int | None = None,
    check: Callable[[str, int], None] | None = None,
    folder: Path | None = None,
    origin: str = "the data",
    mode: int | None = None,
    keep_existing: bool = False,
    continuing: Path | None = None,
) -> Written:
    """Write the bytes of `chunks` to `target`, verified on the way; nothing half-written is ever at `target`.

    The bytes stream into a temporary file ``.NAME.XXXXXXXX.part`` in `folder` (default: the
    target's folder; it must be on the target's file system), hashed (SHA-256) and counted:
    more than `max_bytes` raises `ArtifactTooLargeError` as soon as they arrive, a hash other
    than the declared `sha256` raises `HashMismatchError` (errors call the source `origin`),
    and `check(sha256, size)` may refuse by raising what else the caller knows (a hash
    prefix, an announced length). Then the file is fsynced, given `mode` (default: mkstemp's
    private 0o600), renamed to `target` (or to ``target(sha256)``, a content address known
    once the bytes are hashed) and the rename made durable (`move_into_place`). With
    `keep_existing`, a regular file of the same size already at the target stays as it is
    (a content address: the same bytes). On any failure, an interrupt included, the
    temporary file is removed.

    With `continuing`, the temporary file is one the caller made (`partial_file`) and keeps
    across tries (a download resumed after a cut): the bytes it holds come first, hashed and
    counted again (so the hash, `check` and `max_bytes` are of the whole file), `chunks` are
    appended, and on a failure it is left as it is, for the caller to continue or remove.
    """
    if sha256 is not None:
        check_sha256(sha256)
    if max_bytes is not None and (not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0):
        raise UsageError(f"max_bytes must be a whole number of bytes, 0 or more, not {excerpt(max_bytes)}")
    if folder is None and continuing is None:
        if not isinstance(target, Path):
            raise UsageError("write_atomically needs a folder for a target known only by its hash")
        folder = target.parent
    if continuing is None:
        fd, part = _new_part(folder, target.name if isinstance(target, Path) else None)
    else:
        fd, part = os.open(continuing, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0)), continuing
    placed = False
    try:
        with os.fdopen(fd, "r+b") as f:
            incoming = Verified(chunks, sha256=sha256, max_bytes=max_bytes, origin=origin)
            for chunk in iter(lambda: f.read(CHUNK), b""):  # what a continued file holds already
                incoming.count(chunk)
            for chunk in incoming:
                f.write(chunk)
            actual, size = incoming.digest.hexdigest(), incoming.size
            if check is not None:
                check(actual, size)
            final = target if isinstance(target, Path) else target(actual)
            if keep_existing and is_regular(final) and os.lstat(final).st_size == size:
                return Written(final, actual, size)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(part, mode)
        make_folders(final.parent)
        move_into_place(part, final, synced=True)
        placed = True
        return Written(final, actual, size)
    finally:
        if not placed and continuing is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)


class Verified:
    """The bytes of `chunks`, counted and hashed (`digest`, `size`) as they pass: `ArtifactTooLargeError` as soon
    as more than `max_bytes` came, and after the last a `HashMismatchError` unless they hash to `sha256` (when
    given); `origin` names their source in those errors. `write_atomically` writes them to a file, an object
    store's upload sends them (`zoo.s3store`)."""

    def __init__(self, chunks: Iterable[bytes], *, sha256: str | None, max_bytes: int | None, origin: str) -> None:
        self.chunks, self.sha256, self.max_bytes, self.origin = chunks, sha256, max_bytes, origin
        self.digest, self.size = hashlib.sha256(), 0

    def count(self, chunk: bytes) -> None:
        """Count and hash `chunk` (also bytes that are not in `chunks`: a continued file's)."""
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise ArtifactTooLargeError(f"{self.origin} is larger than the limit of {self.max_bytes} bytes; "
                                        f"nothing was stored", limit=self.max_bytes)
        self.digest.update(chunk)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.count(chunk)
            yield chunk
        actual = self.digest.hexdigest()
        if self.sha256 is not None and actual != self.sha256:
            raise HashMismatchError(f"{self.origin} has SHA-256 {actual}, but {self.sha256} was declared; "
                                    f"nothing was stored", path=self.origin, actual=actual, expected=self.sha256)


def partial_file(folder: Path, name: str | None = None) -> Path:
    """A new, empty temporary file in `folder` named as `write_atomically` names its own: ``.NAME.XXXXXXXX.part``
    for a target `name` (so that whoever holds the target's lock may remove one a dead writer left), else
    ``.XXXXXXXX.part``. Private to this user (0o600)."""
    fd, path = _new_part(folder, name)
    os.close(fd)
    return path


def _new_part(folder: Path, name: str | None) -> tuple[int, Path]:
    """`partial_file`, opened: its descriptor (for reading and writing) and its path."""
    fd, path = tempfile.mkstemp(dir=folder, prefix=f".{name}." if name is not None else ".", suffix=".part")
    return fd, Path(path)


def move_into_place(source: Path, target: Path, *, synced: bool = False) -> None:
    """Rename the whole file `source` to `target` (one file system) durably: the file is fsynced first
    (unless `synced`), the folder after; a reader sees the old file or the new one, never a part."""
    if not synced:
        _fsync(source, os.O_RDONLY)
    os.replace(source, target)
    _fsync(target.parent, _FOLDER)


def make_folders(folder: Path) -> None:
    """Make `folder` and its missing parents durably: each new folder's entry is fsynced in its parent, so
    that a file renamed into it (`move_into_place`) is not lost with a folder a crash forgot."""
    if folder.is_dir():
        return
    make_folders(folder.parent)
    folder.mkdir(exist_ok=True)
    _fsync(folder.parent, _FOLDER)


def _fsync(path: Path, flags: int) -> None:
    """Flush `path` (a file or a folder) to disk, where the platform can open it for that and the file system
    can flush it; a failure to write it out (EIO, ENOSPC) is raised, so nothing is called durable that is not."""
    try:
        fd = os.open(path, flags)
    except OSError:  # Windows opens no folder
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_FSYNC:
            raise
    finally:
        os.close(fd)


def _require_regular(fd: int) -> None:
    """Refuse a lock on what is not a regular file (a fifo planted at the lock path)."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise OSError(errno.EEXIST, "its lock file is not a regular file")


@contextlib.contextmanager
def staged_output(path: str | os.PathLike[str], *, overwrite: bool = False, what: str = "output") -> Iterator[Path]:
    """A private folder to write `path`'s file into; the file is moved to `path` if the block succeeds.

    The block writes ``folder / path.name`` (and, if it has one, ``folder / (path.name +
    ".data")``); anything else it leaves in the folder is scratch. A block that writes no
    file publishes nothing. Raises `UsageError` (one line, before any work) when `path`
    is not a file name in a writable folder, is not a regular file, or is a file zoo
    did not write and `overwrite` is false; see the module docstring.
    """
    target = Path(path)
    if os.fspath(path).endswith(os.sep):  # Path drops the slash that says "a directory"
        raise UsageError(f"{what} {_shown(target)} names a directory; give a file name such as model.onnx")
    try:
        _check_name(target, what)
        _regular_or_missing(target, what)  # before the lock file: never one in /dev for /dev/null
    except OSError as exc:  # a name too long, a loop of links
        raise _unwritable(target, exc) from None
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(target, leftovers=rf"\.{re.escape(target.name)}\.{_UNIQUE}\.tmp"))
        except OSError as exc:
            raise _unwritable(target, exc) from None
        before = _permitted(target, overwrite, what)
        try:
            work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        except OSError as exc:
            raise _unwritable(target, exc) from None
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        yield work
        for suffix in COMPANIONS:  # first: the model needs them
            companion = target.with_name(target.name + suffix)
            if (work / companion.name).is_file():
                _publish(work / companion.name, companion, _permitted(companion, overwrite, what, owner=target))
        _publish(work / target.name, target, before)


@contextlib.contextmanager
def scratch_folder(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A new private folder ``PREFIX-XXXXXXXX`` in `parent` (default: the temporary folder) for one run's
    scratch files, removed with what it holds when the block ends.

    A run killed in its block (SIGKILL, a timeout) cannot remove its folder; the next `scratch_folder` of
    the same `prefix` in `parent` does, by `file_lock`'s rule for the leftovers of a lock's dead holders:
    each run holds the lock of its folder's path while it lives, so a folder whose lock can be taken at
    once has no living owner. Folders are made and locked, and the dead ones removed, under the lock of
    ``parent / prefix``, so that no folder is seen between its making and its locking. Where that lock
    cannot be made (a shared folder, another user's lock file), nothing is removed.
    """
    parent = Path(tempfile.gettempdir()) if parent is None else parent
    with contextlib.ExitStack() as stack:
        with file_lock(parent / prefix, optional=True) as held:
            if held:
                _remove_dead_owners(parent, re.compile(rf"{re.escape(prefix)}-{_UNIQUE}"))
            work = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=parent))
            stack.callback(shutil.rmtree, work, ignore_errors=True)  # last, also if the lock cannot be had
            stack.enter_context(file_lock(work))
        yield work


def _remove_dead_owners(parent: Path, owned: re.Pattern[str]) -> None:
    """Remove the folders in `parent` whose names `owned` matches in full and whose owners are gone: a folder
    whose lock can be taken at once is removed as the leftover of that lock (`file_lock`)."""
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        if owned.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            with file_lock(parent / entry.name, optional=True, wait=False, leftovers=re.escape(entry.name)):
                pass


def _check_name(target: Path, what: str) -> None:
    """The path names a file in an existing folder."""
    if not target.name or target.name in (".", "..") or target.is_dir():
        raise UsageError(f"{what} {_shown(target)} is a directory; give a file name such as model.onnx")
    parent = target.parent
    if not parent.exists():
        raise UsageError(f"cannot write {_shown(target)}: directory {_shown(parent)} does not exist")
    if not parent.is_dir():
        raise UsageError(f"cannot write {_shown(target)}: {_shown(parent)} is not a directory")


def _unwritable(target: Path, exc: OSError) -> UsageError:
    """One line for an `OSError` met before writing: the folder is not writable, or why else not."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UsageError(f"cannot write {_shown(target)}: directory {_shown(target.parent)} "
                          f"is not writable ({reason})")
    where = f" ({_shown(Path(exc.filename))})" if exc.filename and exc.filename != str(target) else ""
    return UsageError(f"cannot write {_shown(target)}: {reason}{where}")


def _permitted(target: Path, overwrite: bool, what: str, owner: Path | None = None) -> os.stat_result | None:
    """What is at `target` now (None: nothing), after refusing what may not be replaced.

    A companion file (`owner` given: the model it belongs to) counts as zoo's when its model does.
    """
    st = _regular_or_missing(target, what)
    if st is None or overwrite:
        return st
    shown = _shown(target)
    if not st.st_mode & 0o222 or not os.access(target, os.W_OK):
        raise UsageError(f"{what} {shown} is write-protected (mode {stat.S_IMODE(st.st_mode):04o}); {_FORCE}")
    if not _written_by_zoo(owner or target):
        raise UsageError(f"{what} {shown} exists and is not a file zoo wrote; {_FORCE}, or choose another path")
    return st


def _regular_or_missing(target: Path, what: str) -> os.stat_result | None:
    """What is at `target` (None: nothing), refused unless it is a regular file."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"{what} {_shown(target)} is a symbolic link; zoo writes only regular files: "
                         "give the path it points to, or another path")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{what} {_shown(target)} is a {_kind(st.st_mode)}, not a regular file; "
                         "zoo writes only regular files: give a file name")
    return st


def _shown(path: Path) -> str:
    """A path as error messages quote it: in full unless it is huge."""
    return excerpt(str(path), 160)


def _kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "directory", stat.S_ISCHR: "character device", stat.S_ISBLK: "block device",
             stat.S_ISFIFO: "fifo", stat.S_ISSOCK: "socket"}
    return next((name for test, name in kinds.items() if test(mode)), "special file")


def png_info() -> Any:
    """The text chunk of every PNG file zoo draws (``save(..., pnginfo=png_info())``): a later run that is asked
    to write the same file knows it as zoo's, as it knows its ONNX models by their metadata."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(*_PNG_MARK)
    return info


def _written_by_zoo(target: Path) -> bool:
    """Whether `target` is an ONNX model with zoo's provenance (read only up to protobuf's size limit), or a PNG
    file zoo drew (`png_info`)."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        first = f.read(len(_PNG_SIGNATURE))
        if first == _PNG_SIGNATURE:
            return _drawn_by_zoo(f)
        if st.st_size > _MAX_ONNX_BYTES or first[:1] != _ONNX_FIRST_BYTE:
            return False
        data = first + f.read()
    import onnx

    try:
        proto = onnx.load_model_from_string(data)
    except Exception:  # noqa: BLE001 - whatever does not parse is not an ONNX model
        return False
    return "model" in metadata.decode((p.key, p.value) for p in proto.metadata_props)


def _drawn_by_zoo(f: BinaryIO) -> bool:
    """Whether the PNG file open as `f` carries zoo's text chunk (`png_info`; PIL reads the text chunks before
    the image data when it opens a file, and decodes no pixels here)."""
    from PIL import Image

    f.seek(0)
    try:
        with Image.open(f, formats=["PNG"]) as image:
            return image.info.get(_PNG_MARK[0]) == _PNG_MARK[1]
    except Exception:  # noqa: BLE001 - whatever PIL cannot read is not zoo's drawing
        return False


def _publish(staged: Path, target: Path, before: os.stat_result | None) -> None:
    """Rename `staged` onto `target`, if it was written, keeping a replaced file's permissions."""
    if not staged.is_file():
        return
    try:
        now = os.lstat(target)
    except FileNotFoundError:
        now = None
    if _identity(now) != _identity(before):
        raise UsageError(f"{_shown(target)} changed while zoo was writing it; nothing was replaced")
    if before is not None:
        os.chmod(staged, stat.S_IMODE(before.st_mode))
        with contextlib.suppress(OSError):  # only root may give a file away
            os.chown(staged, before.st_uid, before.st_gid)
    move_into_place(staged, target)


def _identity(st: os.stat_result | None) -> tuple[int, ...] | None:
    return None if st is None else (st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns)


def _remove_leftovers(folder: Path, pattern: re.Pattern[str]) -> None:
    """Remove the entries of `folder` whose names `pattern` matches in full (a folder with what it holds)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if not pattern.fullmatch(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
