"""Finding a weights file on disk, verified by SHA-256: cache, mirror, then URL.

Sources, in order: a ``file://`` URL (weights shipped inside a plugin) is used in
place; else the cache under ``$TORCH_HOME/hub/checkpoints``; else the mirror
directory ``$ZOO_WEIGHTS_MIRROR`` (a team's pre-seeded copy); else the URL. A
`WeightsCache` holds these settings (`WeightsCache.from_settings`); every function
takes one as ``cache=`` (default: the one `zoo.settings.Settings.from_environ` gives).

The cache is content-addressed, so two URLs never share an entry (every file on the
Hugging Face hub is ``model.safetensors``). A file is kept

- at ``<name>``, exactly where torch.hub keeps it, when its name carries torch.hub's
  hash prefix (``resnet50-0676ba61.pth``): torchvision's files are shared with torch.hub;
- else at ``zoo/sha256/<full SHA-256><suffix>`` when its full hash is known (the
  layout function of the artifact store, `zoo.outputs.content_path`, without its
  2-digit folder: this layout is documented, and mirrors use it too);
- else at ``zoo/url/<SHA-256 of the whole URL>/<name>``; when its full hash becomes
  known (the catalog learns it from the first verified download), the next fetch
  moves it to its SHA-256 entry, as it adopts a file that earlier zoos kept at
  ``<name>`` once that file verifies against the full hash (never otherwise: such a
  file may be another URL's).

The suffix is kept because the loader picks safetensors by it. The mirror is looked
up by full hash (``sha256/<hex><suffix>``), by host and path as ``wget -x`` mirrors a
site (``huggingface.co/timm/resnet18.a1_in1k/resolve/main/model.safetensors``), and
by name only for names with torch.hub's hash prefix.

Nothing reaches the cache unverified: a download streams to a temporary file beside
its entry (`zoo.outputs.write_atomically`, at most the file's known size) and is renamed
into place only when the hash of the whole file matches, so an interrupted or
concurrent fetch never leaves a bad file, and the next fetch of a file removes the
``.part`` files of downloads that died (holding the entry's lock proves their owner
is gone). The attempts of one download share that file: an attempt after a cut asks
for the rest only (``Range: bytes=N-``, with ``If-Range`` and the server's ETag when it
gave one) and appends it when the server answers 206 from byte N, or starts over when
it sends the whole file (200) or anything else; bytes are kept only for a file whose
full hash or ETag can tell that the rest belongs to them. A cached file is re-hashed
on every use: what is loaded are the very bytes whose hash was checked
(`read_verified`), so nothing beside the file (no stamp, no mtime) can make the zoo
believe it. Offline mode (``ZOO_OFFLINE=1``) never touches the network. A cache folder
that cannot be written is refused in one line before a byte is fetched.

A file's bearer token (a registry service's read token) goes to the origin of its URL
(scheme, host and port) only: with the request, and with each redirect back to that
origin, never to another (a presigned URL elsewhere). Redirects go to http(s) URLs only,
with the request's ``Range``. Another origin redirected to that refuses with 400, 401 or
403 (a presigned URL that expired before it was used) makes the download ask the file's
URL again at once, for a fresh one, once per download; a second refusal is final. Each
attempt asks the file's URL, so a resumed download gets a fresh presigned URL too.

A download that fails for a passing reason (a connection error or timeout, HTTP 5xx or
429, a transfer cut short) is tried again with capped exponential backoff and jitter,
waiting as long as a numeric ``Retry-After`` asks, up to the cap; a 4xx, a wrong hash,
more bytes than the file's known size or a redirect loop is final. An attempt waits at
most the file's `WeightsFile.timeout` (`TIMEOUT_S` by default) for each next byte, so a
stalled server fails it. ``$ZOO_FETCH_RETRIES`` (``ATTEMPTS[,BASE_SECONDS]``, default
``4,0.5``) sets how many attempts and the first wait.

Torch-free: the catalog and the CLI use it without importing torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import http.client
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlparse
from urllib.request import HTTPRedirectHandler, Request, build_opener, url2pathname

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential, wait_random

from zoo.errors import HashMismatchError, UsageError, WeightsError, excerpt, first_line, said_by_peer
from zoo.outputs import (
    CHUNK,
    FULL_HASH,
    content_path,
    file_lock,
    is_regular,
    move_into_place,
    open_regular,
    partial_file,
    write_atomically,
)
from zoo.progress import bar
from zoo.settings import FETCH_RETRIES as RETRIES_ENV, MIRROR as MIRROR_ENV, Settings

__all__ = ["CHUNK", "FULL_HASH", "Fetched", "Loaded", "RetryPolicy", "WeightsCache", "WeightsFile", "cache_dir",
           "cached_path", "copy_verified", "counted", "fetch", "read_verified", "sha256_of", "verify"]

TIMEOUT_S = 60
RETRY_ATTEMPTS = 4
MAX_ATTEMPTS = 20
RETRY_BASE_S = 0.5  # the first wait; each next one doubles, plus up to this much jitter
RETRY_MAX_S = 30.0  # no wait is longer, a server's Retry-After included
# torch.hub's convention: "<name>-<first hex digits of the SHA-256>.<ext>"
HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")
DEFAULT_PORTS = {"http": 80, "https": 443}
#: How a place a download was redirected to refuses a presigned URL that expired (S3: 403): asked again once.
EXPIRED_REDIRECT = frozenset({400, 401, 403})
_REASON_BYTES = 4096  # of a refusal's body read for its reason
#: A 206 answer's ``Content-Range`` (RFC 9110): ``bytes FIRST-LAST/SIZE``, the size ``*`` when unknown.
_CONTENT_RANGE = re.compile(r"bytes (\d{1,19})-(\d{1,19})/(\d{1,19}|\*)")
#: A strong ETag, the only kind ``If-Range`` may carry; a longer or odd one is not sent back.
_STRONG_ETAG = re.compile(r'"[\x21\x23-\x7e]{0,200}"')


@dataclass(frozen=True)
class WeightsFile:
    """A weights file to fetch: where it comes from and what its hash must be."""

    url: str
    sha256: str | None = None  # the full hash, when known
    #: A bearer token for the URL's server (a registry service's read token): sent to the URL's origin only,
    #: with the request and its redirects back there; not part of what identifies the file.
    token: str | None = field(default=None, repr=False, compare=False)
    #: The longest wait in seconds for the server's next byte (or its answer) before an attempt fails.
    timeout: float = field(default=TIMEOUT_S, repr=False, compare=False)
    #: The file's size in bytes, when known: a source that sends more is cut off there.
    size: int | None = field(default=None, compare=False)

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
    """A verified file: where it is, and the full SHA-256 and size of the bytes that were checked."""

    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class Loaded(Fetched):
    """A verified file's bytes, read once: the bytes that were hashed are the bytes to load."""

    data: bytes


@dataclass(frozen=True)
class RetryPolicy:
    """How often a download is tried (`attempts`) and the first wait in seconds (`base_s`; each next
    one doubles, plus up to `base_s` of jitter, capped at `RETRY_MAX_S`)."""

    attempts: int = RETRY_ATTEMPTS
    base_s: float = RETRY_BASE_S

    @classmethod
    def parse(cls, text: str) -> RetryPolicy:
        """The policy ``ATTEMPTS[,BASE_SECONDS]`` (``$ZOO_FETCH_RETRIES``) says; the defaults for ""; a one-line
        `UsageError` naming the variable otherwise."""
        value = text.strip()
        if not value:
            return cls()
        attempts, _, base = value.partition(",")
        try:
            policy = cls(int(attempts), float(base) if base else RETRY_BASE_S)
        except ValueError:
            policy = cls(0)
        if not (1 <= policy.attempts <= MAX_ATTEMPTS and 0 <= policy.base_s <= RETRY_MAX_S):
            raise UsageError(f"${RETRIES_ENV} is {excerpt(value)}; give ATTEMPTS[,BASE_SECONDS] with ATTEMPTS "
                             f"from 1 to {MAX_ATTEMPTS} and BASE_SECONDS from 0 to {RETRY_MAX_S:g}, e.g. 4,0.5")
        return policy


@dataclass(frozen=True)
class WeightsCache:
    """Where weights files are cached and where else they come from: the cache `directory`
    (torch.hub's ``$TORCH_HOME/hub/checkpoints``), `offline` (never the network), a `mirror`
    directory and the download `retries` (a `RetryPolicy`, or its ``ATTEMPTS[,BASE_SECONDS]`` text,
    checked when a download needs it: a bad setting does not break a cached file's use)."""

    directory: Path
    offline: bool = False
    mirror: Path | None = None
    retries: RetryPolicy | str = field(default_factory=RetryPolicy)

    @classmethod
    def from_settings(cls, settings: Settings) -> WeightsCache:
        """The cache `settings` configure (TORCH_HOME, ZOO_OFFLINE, ZOO_WEIGHTS_MIRROR, ZOO_FETCH_RETRIES)."""
        return cls(settings.weights_cache, settings.offline, settings.mirror, settings.fetch_retries)

    def content_entry(self, sha256: str, suffix: str = "") -> Path:
        """Where the cache keeps the bytes of `sha256`: ``zoo/sha256/<sha256><suffix>`` (`content_path`
        without its 2-digit folder, the documented layout); keep the suffix a loader tells formats by."""
        return content_path(self.directory / "zoo", sha256, suffix=suffix, fan_out=False)

    @property
    def retry_policy(self) -> RetryPolicy:
        """`retries` as a `RetryPolicy` (a one-line `UsageError` naming ``$ZOO_FETCH_RETRIES`` for bad text)."""
        return self.retries if isinstance(self.retries, RetryPolicy) else RetryPolicy.parse(self.retries)


def _cache(cache: WeightsCache | None) -> WeightsCache:
    """`cache`, or the one this process's environment configures."""
    return cache if cache is not None else WeightsCache.from_settings(Settings.from_environ())


def cache_dir(*, cache: WeightsCache | None = None) -> Path:
    """The directory of the weights cache: ``$TORCH_HOME/hub/checkpoints``, the one torch.hub caches weights in."""
    return _cache(cache).directory


def cached_path(weights: WeightsFile, *, cache: WeightsCache | None = None) -> Path:
    """Where `weights` is used from: the file itself for ``file://`` URLs, else its cache entry,
    or the copy kept under its URL that the next fetch moves to that entry."""
    if weights.local_path is not None:
        return weights.local_path
    cache = _cache(cache)
    entry, url_copy = _cache_entry(cache, weights), _url_entry(cache, weights)
    return url_copy if not os.path.lexists(entry) and is_regular(url_copy) else entry


def fetch(weights: WeightsFile, *, offline: bool | None = None, progress: bool = True,
          cache: WeightsCache | None = None) -> Fetched:
    """A verified local copy of `weights`, fetched from the mirror or the URL if needed.

    `offline` (default: the cache's setting) never touches the network. Raises
    `WeightsError` when the file cannot be had or its hash differs; nothing
    unverified is left in the cache.
    """
    path, fresh = _present(_cache(cache), weights, offline, progress)
    return fresh if fresh is not None else verify(path, weights)  # a file just copied was hashed as it came


def read_verified(weights: WeightsFile, *, offline: bool | None = None, progress: bool = True,
                  cache: WeightsCache | None = None) -> Loaded:
    """The bytes of `weights` (fetched as `fetch` does), checked by the SHA-256 of exactly those bytes.

    Loading from these bytes leaves no gap between the check and the use: a file
    replaced or rewritten on disk after it was checked is never what gets loaded.
    """
    path, _ = _present(_cache(cache), weights, offline, progress)
    data = _read_regular(path)
    actual = hashlib.sha256(data).hexdigest()
    _check(actual, weights, path)
    return Loaded(path, actual, len(data), data)


def verify(path: Path, weights: WeightsFile) -> Fetched:
    """Re-hash the file at `path` and check it against the hash of `weights`."""
    with _open_regular(path) as f:
        actual, size = digest_of(f)
    _check(actual, weights, path)
    return Fetched(path, actual, size)


def _present(cache: WeightsCache, weights: WeightsFile, offline: bool | None,
             progress: bool) -> tuple[Path, Fetched | None]:
    """Where `weights` is on disk: in place for ``file://`` URLs, else in `cache` (fetched if missing); with the
    verified file when it was copied there just now (hashed on its way in), else None (to be hashed by the caller)."""
    offline = cache.offline if offline is None else offline
    if weights.local_path is not None:
        if not weights.local_path.is_file():
            raise WeightsError(f"weights file {weights.local_path} is missing; reinstall the package that ships it")
        return weights.local_path, None
    target = _cache_entry(cache, weights)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(target.parent, exc) from None
    leftovers = rf"\.{re.escape(target.name)}\.(?:[^.]+\.part|zoo-verified)"  # dead downloads, old stamps
    with file_lock(target, optional=True, leftovers=leftovers) as locked:  # one process fetches; the others find it
        if target.is_file():
            return target, None
        if os.path.lexists(target):
            raise WeightsError(f"weights cache entry {target} is not a regular file; remove it, then fetch again")
        earlier = _earlier_copy(cache, weights)
        if earlier is not None:
            return (_moved(earlier, target) if locked else earlier), None
        mirror = _mirror_copy(cache, weights)
        if mirror is None and offline:
            looked = ", ".join(map(str, _cache_places(cache, weights)))
            raise WeightsError(f"offline mode: {weights.name} is not in the cache (looked for "
                               f"{looked}){_mirror_places(cache, weights)}; "
                               f"fetch {excerpt(weights.url, 200)} where there is network (zoo weights fetch NAME) "
                               f"or put it in a mirror directory")
        if not locked:  # its lock file could not be made there: the folder may be read-only
            _check_writable(target.parent)
        if mirror is not None:
            with mirror.open("rb") as source:
                fresh = copy_verified(source, weights, target, origin=str(mirror), progress=False)
        else:
            fresh = _download(cache, weights, target, progress)
        return fresh.path, fresh


def _check_writable(folder: Path) -> None:
    """Refuse, in one line and before a byte is fetched, a cache folder where no file can be made."""
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise _unwritable(folder, exc) from None


def _unwritable(folder: Path, exc: OSError) -> WeightsError:
    return WeightsError(f"cannot write the weights cache {folder} ({exc.strerror}); make it writable, or set "
                        f"TORCH_HOME to a folder you can write")


def _cache_entry(cache: WeightsCache, weights: WeightsFile) -> Path:
    """Where `cache` keeps `weights`: torch.hub's path for names with a hash prefix, else its
    full-hash entry when the hash is known, else its URL's entry."""
    name = _file_name(weights)
    if weights.hash_prefix is not None:
        return cache.directory / name
    if weights.sha256 is not None:
        return cache.content_entry(_full_hash(weights), Path(name).suffix)
    return _url_entry(cache, weights)


def _url_entry(cache: WeightsCache, weights: WeightsFile) -> Path:
    """The cache entry of a file known by its whole URL only."""
    return cache.directory / "zoo" / "url" / hashlib.sha256(weights.url.encode()).hexdigest() / _file_name(weights)


def _full_hash(weights: WeightsFile) -> str:
    """The full SHA-256 declared for `weights`, refused in one line unless it is 64 lowercase hex digits."""
    if weights.sha256 is None or not FULL_HASH.fullmatch(weights.sha256):
        raise UsageError(f"the SHA-256 given for {excerpt(weights.url)} is {excerpt(weights.sha256)}, "
                         f"not 64 lowercase hex digits")
    return weights.sha256


def _file_name(weights: WeightsFile) -> str:
    """The file name at the end of the URL of `weights`, refused unless it is one plain name."""
    name = weights.name
    if name in {"", ".", ".."} or "/" in name or "\0" in name:
        raise UsageError(f"weights URL {excerpt(weights.url)} does not end in a file name")
    return name


def _cache_places(cache: WeightsCache, weights: WeightsFile) -> list[Path]:
    """Where `cache` may hold `weights`: its entry, then the copies `_earlier_copy` adopts."""
    entry = _cache_entry(cache, weights)
    if weights.hash_prefix is not None or weights.sha256 is None:
        return [entry]
    return [entry, _url_entry(cache, weights), cache.directory / _file_name(weights)]


def _earlier_copy(cache: WeightsCache, weights: WeightsFile) -> Path | None:
    """A verified copy of `weights` kept before its full hash was known: under its URL (which
    must verify), or at the per-name path of earlier zoos (used only if it verifies: that
    file may be another URL's)."""
    places = _cache_places(cache, weights)[1:]
    if not places:
        return None
    url_copy, old = places
    if is_regular(url_copy):
        return verify(url_copy, weights).path
    if is_regular(old):
        try:
            return verify(old, weights).path
        except WeightsError:
            return None
    return None


def _moved(source: Path, target: Path) -> Path:
    """`source` renamed to `target` (one file system, so no copy); where it is if that fails."""
    try:
        move_into_place(source, target)
    except OSError:
        return source
    return target


def _open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading, refused unless it is a regular file (never a FIFO or a device)."""
    return open_regular(path, error=WeightsError, what="weights file", only="only a regular file is loaded")


def _read_regular(path: Path) -> bytes:
    """All bytes of the regular file at `path`, in one read."""
    with _open_regular(path) as f:
        return f.read()


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    with path.open("rb") as f:
        return digest_of(f)[0]


def digest_of(f: BinaryIO) -> tuple[str, int]:
    """The SHA-256 and the size of what is left to read in `f`, read in chunks."""
    digest, size = hashlib.sha256(), 0
    while chunk := f.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


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


def _download(cache: WeightsCache, weights: WeightsFile, target: Path, progress: bool) -> Fetched:
    """`weights` downloaded into `target`, tried again with backoff after transient failures.

    The attempts stream into one ``.part`` file, under the entry's lock that `_present` holds:
    an attempt after a cut continues it (`_get`). It is removed when the download fails for good.
    """
    if urlparse(weights.url).scheme not in {"http", "https"}:
        raise UsageError(f"weights URL {weights.url!r} is not http(s) or file; cannot fetch it")
    policy = cache.retry_policy
    retrying = Retrying(stop=stop_after_attempt(policy.attempts), wait=_backoff(policy.base_s), reraise=True,
                        retry=retry_if_exception(lambda error: isinstance(error, _DownloadError) and error.transient),
                        before_sleep=_announce_retry if progress else None)
    try:
        part = _Partial(partial_file(target.parent, target.name))
    except OSError as exc:
        raise _unwritable(target.parent, exc) from None
    try:
        return retrying(_attempt, weights, target, part, progress)
    except _DownloadError as exc:
        attempts = retrying.statistics["attempt_number"]
        raise WeightsError(
            f"downloading {weights.url} failed ({exc}) after {attempts} attempt{'s' if attempts != 1 else ''}; "
            f"nothing was cached; try again, "
            f"or put the file in ${MIRROR_ENV} as {' or '.join(map(str, _mirror_names(weights)))}"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):  # renamed into place when the download succeeded
            os.unlink(part.path)


class _DownloadError(WeightsError):
    """One attempt's failure: `transient` when another attempt may not meet it (the network, the
    server's load), with the server's numeric ``Retry-After`` if it gave one."""

    def __init__(self, reason: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.transient = transient
        self.retry_after = retry_after


class _CutShortError(WeightsError):
    """A transfer that ended before the length its server announced."""


@dataclass
class _Partial:
    """The bytes a download has so far, kept across its attempts in the ``.part`` file at `path`; the strong
    `etag` of the answer they came with (sent back as ``If-Range``); whether the file's URL was asked again
    after the place it redirected to refused (`_attempt`: once per download)."""

    path: Path
    etag: str | None = None
    asked_again: bool = False

    def kept(self, weights: WeightsFile) -> int:
        """How many bytes the next attempt asks the rest after: those kept, when the full hash of `weights` or
        the server's ETag can tell that the rest belongs to them; else none (they are dropped)."""
        size = os.lstat(self.path).st_size
        if size and weights.sha256 is None and self.etag is None:
            self.restart()
            return 0
        return size

    def restart(self) -> None:
        """Drop the bytes kept: the next ones are the file's first."""
        os.truncate(self.path, 0)
        self.etag = None


def _attempt(weights: WeightsFile, target: Path, part: _Partial, progress: bool) -> Fetched:
    """One download of `weights` into `target`, continuing `part` (`_get`); a failure raises `_DownloadError`
    (a wrong hash as itself).

    Another origin the file's URL redirected to (an object store's presigned URL) that refuses with 400, 401
    or 403 may have let the URL expire before it was used: the file's URL is asked again at once, for a fresh
    one, once per download; a second refusal is final.
    """
    try:
        try:
            return _get(weights, target, part, progress)
        except HTTPError as exc:
            if exc.code not in EXPIRED_REDIRECT or not _elsewhere(exc, weights) or part.asked_again:
                raise
            exc.close()
            part.asked_again = True
            return _get(weights, target, part, progress)
    except HTTPError as exc:
        said = _reason(exc)
        exc.close()
        if exc.code == 429 or exc.code >= 500:
            raise _DownloadError(f"{first_line(exc)}{said}", transient=True,
                                 retry_after=_retry_after(exc.headers.get("Retry-After"))) from None
        elsewhere = _elsewhere(exc, weights)
        where = f" from {_shown_origin(exc.geturl())}, where it redirected" if elsewhere else ""
        again = ", also when asked again" if elsewhere and part.asked_again else ""
        raise _DownloadError(f"{first_line(exc)}{where}{again}{said}", transient=False) from None
    except (URLError, http.client.HTTPException, ConnectionError, TimeoutError, _CutShortError) as exc:
        raise _DownloadError(first_line(exc), transient=True) from None
    except OSError as exc:  # the cache's disk, not the network: another try would not help
        raise _DownloadError(first_line(exc), transient=False) from None


def _reason(refusal: HTTPError) -> str:
    """``": <why>"`` when a refusal's body is a zoo registry service's JSON error (``{"error": "..."}``, such as
    its object store being down), else "": read up to `_REASON_BYTES`, shown as one line of at most 300
    characters (`zoo.errors.said_by_peer`)."""
    if (refusal.headers.get("Content-Type") or "").partition(";")[0].strip() != "application/json":
        return ""
    try:
        said = json.loads(refusal.read(_REASON_BYTES))["error"]
    except (OSError, http.client.HTTPException, ValueError, TypeError, KeyError):
        return ""
    return f": {said_by_peer(said, 300)}" if isinstance(said, str) and said.strip() else ""


def _get(weights: WeightsFile, target: Path, part: _Partial, progress: bool) -> Fetched:
    """GET `weights` into `target` through `part`: the rest after the bytes it keeps (``Range``, and ``If-Range``
    with the ETag they came with), appended when the server answers 206 from there; else the whole file again
    (a server that ignores Range, or a file that changed: 200). A range that starts elsewhere or disagrees with
    its length is not appended: the next attempt starts over."""
    kept = part.kept(weights)
    headers = {"User-Agent": "zoo"}
    if kept:  # urllib sends these along with each redirect (not the token: `_authorized`)
        headers["Range"] = f"bytes={kept}-"
        if part.etag is not None:
            headers["If-Range"] = part.etag
    request = _authorized(Request(weights.url, headers=headers), weights)
    try:
        response = build_opener(_Redirects(weights)).open(request, timeout=weights.timeout)
    except HTTPError as exc:
        if exc.code != 416 or not kept:
            raise
        exc.close()  # the bytes kept reach past the end: the file changed
        part.restart()
        raise _DownloadError(f"{first_line(exc)} for bytes {kept}-; starting over", transient=True) from None
    with response:
        total = _length(response.headers.get("Content-Length"))
        if response.status == 206:
            answered = response.headers.get("Content-Range") or ""
            total = _whole_size(answered, kept, total)
            if total is None:
                part.restart()
                raise _DownloadError(f"the server answered with bytes {excerpt(answered, 100)} to a request for "
                                     f"bytes {kept}-; starting over", transient=True)
        elif kept:
            part.restart()
        etag = response.headers.get("ETag") or ""
        part.etag = etag if _STRONG_ETAG.fullmatch(etag) else None
        return copy_verified(response, weights, target, origin=weights.url, progress=progress, total=total,
                             part=part.path)


def _length(declared: str | None) -> int | None:
    """A ``Content-Length`` as a number of bytes; None when there is none or it is not one."""
    declared = declared or ""
    return int(declared) if declared.isascii() and declared.isdigit() and len(declared) < 20 else None


def _whole_size(content_range: str, start: int, length: int | None) -> int | None:
    """The size of the whole file after a 206 answer with `content_range` (its last byte + 1 if it says no
    size); None unless the range starts at `start` and agrees with the answer's `length` and with itself."""
    match = _CONTENT_RANGE.fullmatch(content_range.strip())
    if match is None:
        return None
    first, last, size = int(match[1]), int(match[2]), match[3]
    whole = last + 1 if size == "*" else int(size)
    if first != start or last < first or last >= whole or (length is not None and length != last + 1 - first):
        return None
    return whole


def _elsewhere(error: HTTPError, weights: WeightsFile) -> bool:
    """Whether `error` is the answer of another origin than that of the URL of `weights` (a redirect's)."""
    return _origin(error.geturl()) != _origin(weights.url)


def _shown_origin(url: str) -> str:
    """The origin of `url` as ``SCHEME://HOST[:PORT]``, for messages: never a presigned URL's signature."""
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc.rpartition('@')[2]}"


def _authorized(request: Request, weights: WeightsFile) -> Request:
    """`request` with the bearer token of `weights` if it goes to the origin of their URL (not kept on a redirect:
    `_Redirects` decides each one)."""
    if weights.token and _origin(request.full_url) == _origin(weights.url):
        request.add_unredirected_header("Authorization", f"Bearer {weights.token}")
    return request


def _origin(url: str) -> tuple[str, str, int | None] | None:
    """The origin of `url`: scheme, host and port (the scheme's default if none); None if it has no valid one."""
    parsed = urlparse(url)
    try:
        port = parsed.port or DEFAULT_PORTS.get(parsed.scheme)
    except ValueError:
        return None
    return (parsed.scheme, (parsed.hostname or "").lower(), port) if parsed.hostname else None


class _Redirects(HTTPRedirectHandler):
    """urllib's redirects (a loop or more than 10 is an error), to http(s) URLs only, each given the file's token
    only if it goes back to the file's origin."""

    def __init__(self, weights: WeightsFile) -> None:
        self.weights = weights

    def redirect_request(self, req: Request, fp: BinaryIO, code: int, msg: str, headers: http.client.HTTPMessage,
                         newurl: str) -> Request | None:
        if urlparse(newurl).scheme not in {"http", "https"}:
            raise HTTPError(newurl, code, f"a redirect to {excerpt(newurl)} is not followed: only http(s) is",
                            headers, fp)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        return _authorized(new, self.weights) if new is not None else None


def _backoff(base: float) -> Callable[[RetryCallState], float]:
    """Exponential backoff from `base` with jitter, capped, or the server's Retry-After if longer (also capped)."""
    exponential = wait_exponential(multiplier=base, max=RETRY_MAX_S) + wait_random(0, base)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        asked = getattr(error, "retry_after", None) or 0.0
        return min(max(exponential(state), asked), RETRY_MAX_S)

    return wait


def _retry_after(value: str | None) -> float | None:
    """A numeric ``Retry-After`` in seconds; None for none or for the HTTP-date form (backoff decides)."""
    value = (value or "").strip()
    return float(value) if value.isascii() and value.isdigit() else None


def _announce_retry(state: RetryCallState) -> None:
    """Tell the user, on stderr, that a download failed and when it is tried again."""
    error = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    print(f"zoo: download attempt {state.attempt_number} failed ({error}); retrying in {delay:.1f}s", file=sys.stderr)


def copy_verified(source: BinaryIO, weights: WeightsFile, target: Path, *, origin: str, progress: bool,
                  total: int | None = None, part: Path | None = None) -> Fetched:
    """Copy `source` (called `origin` in errors) into `target` through a temporary file (`part`, continued after
    the bytes it holds, when given), hashing the whole file on the way, with a progress bar if `progress`
    (`zoo.progress`: on a terminal); rename it into place if it is `total` bytes (the whole file's size, when
    known), at most ``weights.size``, and has the hash of `weights`. A download, a mirror's copy, a stored file's
    copy."""

    def check(actual: str, size: int) -> None:
        if total is not None and size != total:
            raise _CutShortError(f"the transfer stopped after {size} of {total} bytes")
        expected = _mismatch(actual, weights)
        if expected is not None:
            raise HashMismatchError(
                f"{origin} gave {weights.name} with SHA-256 {actual}, but {expected}: "
                f"the source is corrupted or serves another file; nothing was cached",
                path=origin, actual=actual, expected=weights.sha256 or weights.hash_prefix or "",
            )

    kept = os.lstat(part).st_size if part is not None else 0
    with bar(total, weights.name, unit="B", initial=kept, show=progress) as shown:
        written = write_atomically(target, counted(source, shown.update), max_bytes=weights.size, check=check,
                                   origin=origin, continuing=part)
    return Fetched(written.path, written.sha256, written.size)


def counted(source: BinaryIO, update: Callable[[int], object]) -> Iterator[bytes]:
    """The chunks of `source`, each counted by `update` (a progress bar's) as it is read."""
    while chunk := source.read(CHUNK):
        update(len(chunk))
        yield chunk


def _mirror_copy(cache: WeightsCache, weights: WeightsFile) -> Path | None:
    """The first of the mirror's places for `weights` that holds a file (`_mirror_names`)."""
    mirror = cache.mirror
    if mirror is None:
        return None
    if not mirror.is_dir():
        raise UsageError(f"${MIRROR_ENV} is {str(mirror)!r}, which is not a directory")
    return next((mirror / name for name in _mirror_names(weights) if (mirror / name).is_file()), None)


def _mirror_names(weights: WeightsFile) -> list[PurePosixPath]:
    """Where a mirror may hold `weights`, relative to it: by full hash, by host and path, and
    by name alone for torch.hub-style names (their hash prefix tells files apart)."""
    names: list[PurePosixPath] = []
    if weights.sha256 is not None:  # as the cache keeps it (`content_path`, without the 2-digit folder)
        by_hash = content_path(Path(), _full_hash(weights), suffix=Path(_file_name(weights)).suffix, fan_out=False)
        names.append(PurePosixPath(*by_hash.parts))
    site = _site_path(weights.url)
    if site is not None:
        names.append(site)
    if weights.hash_prefix is not None:
        names.append(PurePosixPath(_file_name(weights)))
    return names


def _site_path(url: str) -> PurePosixPath | None:
    """``<host>[:<port>]/<path>`` of `url`, as ``wget -x`` lays out a mirror; None if it would leave the mirror."""
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError:
        return None
    host = parsed.hostname or ""
    if port is not None and port != DEFAULT_PORTS.get(parsed.scheme):
        host = f"{host}:{port}"
    parts = (host, *PurePosixPath(unquote(parsed.path)).parts[1:])
    if len(parts) < 2 or any(p in {"", ".", ".."} or "\0" in p for p in parts):
        return None
    return PurePosixPath(*parts)


def _mirror_places(cache: WeightsCache, weights: WeightsFile) -> str:
    """Where the mirror was looked in, for an error message."""
    mirror = cache.mirror
    if mirror is None:
        return f" and ${MIRROR_ENV} is not set"
    names = _mirror_names(weights)
    if not names:
        return f" and the mirror {mirror} has no place for its URL"
    return f" nor in the mirror (looked for {', '.join(str(mirror / n) for n in names)})"
