"""The artifact store in S3 or an S3-compatible object store: ``ZOO_ARTIFACTS=s3://BUCKET[/PREFIX]``.

`S3Store` is the `zoo.store.ArtifactStore` of a bucket: a blob is the object
``PREFIX/sha256/<first 2 hex digits>/<64 hex digits>``, the layout of a `DirectoryStore`
(`zoo.outputs.content_path`), so the same bytes are stored once and a folder store synced
to a bucket (``aws s3 sync ROOT s3://BUCKET/PREFIX``) is that bucket's store.

Writes are verified and never leave a partial or wrong object under a blob's key. The
bytes are hashed (SHA-256) and counted as they stream. A body smaller than one part
(`S3Store.part_size`, 8 MiB) is held in memory and PUT once its hash checks out, with
that hash for the object store to check as well (``x-amz-checksum-sha256``). A larger one
is a multipart upload straight to the blob's key, its parts sent as they fill by a few
threads (`S3Store.parts_in_flight`); S3 shows the object only once the upload is completed,
and it is completed only when the whole body has the declared hash and kept to the size
limit, aborted otherwise (an interrupt included): no temporary object, no copy afterwards.
So an upload holds at most ``(parts_in_flight + 1) * part_size`` bytes (40 MiB), whatever
its size; a reader (`S3Store.open`) holds one read's bytes, streamed by a ranged GET from
where it is. An existing blob of the same hash is kept (the incoming bytes are still
verified). A process killed during a multipart upload leaves an incomplete upload (invisible,
but billed): `S3Store.leftovers` lists those of the store's keys and ``zoo gc`` aborts the
ones older than its grace period, as it removes blobs no catalog entry names (a bucket
lifecycle rule "AbortIncompleteMultipartUpload" does the former too).

boto3, not a hand-made S3 client: it is well kept, finds credentials as every AWS tool does
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and
``~/.aws/config``, instance roles), signs presigned URLs (`S3Store.url_for`, for ``zoo serve
--artifacts redirect``) and retries what S3 asks to be retried. It is imported only when an
``s3://`` store is opened (the ``s3`` extra). The ``AWS_*`` variables come from
`zoo.settings.Settings.aws` and are given to boto3 explicitly (keys, token, region, profile,
``AWS_ENDPOINT_URL``, e.g. a MinIO or SeaweedFS server), so settings built from any mapping
reach the store they name. Timeouts are short and retries few, so a store that is down
fails in seconds: `zoo.errors.StoreUnavailableError` (a service answers 503) for an
unreachable or failing store and for refused credentials, a `UsageError` for a bucket that
does not exist, each in one line naming the store and what to check.

`S3Store.scratch` is a local folder (``cache_home/zoo/scratch``): the service's uploads are
checked there before they are stored. Torch-free.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from zoo.errors import (
    ArtifactError,
    HashMismatchError,
    StoreUnavailableError,
    UnknownArtifactError,
    UsageError,
    ZooError,
    excerpt,
    first_line,
)
from zoo.fetch import digest_of
from zoo.outputs import CHUNK, Verified, check_sha256, open_regular
from zoo.settings import ARTIFACTS, Settings
from zoo.store import Artifact, DirectoryStore, Leftover, checked_limit

__all__ = ["S3Store"]

_FORM = ("s3://BUCKET[/PREFIX] (a bucket name of 3 to 63 lowercase letters, digits, '.' and '-'; a prefix of "
         "names of letters, digits, '.', '_' and '-' separated by '/')")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_NAME = re.compile(r"[A-Za-z0-9._-]+")
_NO_BOTO3 = f"{ARTIFACTS} is an s3:// URL but boto3 is not installed: pip install 'zoo-registry[s3]'"
#: How a `Leftover`'s name joins an incomplete upload's key and its upload id (a key of the store has no '?').
_UPLOAD_ID = "?uploadId="
_CONTENT_TYPE = "application/octet-stream"
#: S3's limits: a multipart upload has at most 10,000 parts; a presigned (SigV4) URL lives at most 7 days.
_MAX_PARTS = 10_000
_MAX_URL_SECONDS = 7 * 24 * 3600
#: Error codes: the credentials were refused; the store is busy or failing (also any 5xx); the key is missing.
_REFUSED = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
                      "InvalidToken", "TokenRefreshRequired", "403"})
_BUSY = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"})
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


class S3Store:
    """An `ArtifactStore` in the object store's `bucket` under `prefix` (see the module docstring), reached
    by the boto3 S3 `client`; `scratch_root` is the local folder of `scratch`."""

    #: Bytes per part of a multipart upload (S3: 5 MiB at least, but for the last); a smaller body is one PUT.
    part_size: ClassVar[int] = 8 << 20
    #: Parts sent at once by one upload (and so held in memory, with the one filling).
    parts_in_flight: ClassVar[int] = 4

    def __init__(self, bucket: str, prefix: str, client: Any, scratch_root: Path) -> None:
        self.bucket, self.prefix, self.scratch_root = bucket, prefix, scratch_root
        self._client = client
        self._base = f"{prefix}/" if prefix else ""
        self._blob_key = re.compile(re.escape(self._base) + r"sha256/([0-9a-f]{2})/(\1[0-9a-f]{62})")

    def __repr__(self) -> str:
        return f"S3Store({self.location!r}, endpoint={self.endpoint!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        """The store ``settings.artifacts`` (``s3://BUCKET[/PREFIX]``) names, reached with ``settings.aws``."""
        bucket, prefix = _parse(settings.artifacts or "")
        return cls(bucket, prefix, _connect(dict(settings.aws)), settings.cache_home / "zoo" / "scratch")

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".removesuffix("/")

    @property
    def endpoint(self) -> str:
        """The object store's URL, for messages."""
        return str(self._client.meta.endpoint_url)

    def exists(self, sha256: str) -> bool:
        return self.stat(sha256) is not None

    def stat(self, sha256: str) -> int | None:
        head = self._head(self._key(sha256))
        return None if head is None else int(head["ContentLength"])

    def open(self, sha256: str) -> BinaryIO:
        """The blob of `sha256` as a seekable binary file that streams it with ranged GETs."""
        size = self.stat(sha256)
        if size is None:
            raise self._unknown(sha256)
        return io.BufferedReader(_Reader(self, sha256, size))

    def read(self, sha256: str) -> bytes:
        """The bytes of the blob of `sha256`, read once and checked against that hash (`HashMismatchError`)."""
        key = self._key(sha256)
        answer = self._call("get_object", Key=key, missing=_MISSING)
        if answer is None:
            raise self._unknown(sha256)
        with self._errors(f"reading {sha256}"):
            data = answer["Body"].read()
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            where = self._url(key)
            raise HashMismatchError(f"stored file {where} has SHA-256 {actual}, not the {sha256} it is stored "
                                    f"under: the store is damaged; publish the file again",
                                    path=where, actual=actual, expected=sha256)
        return data

    def __iter__(self) -> Iterator[Artifact]:
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                       Prefix=f"{self._base}sha256/")
        with self._errors("listing the stored files"):
            for page in pages:
                for item in page.get("Contents", ()):
                    found = self._blob_key.fullmatch(item["Key"])
                    if found:
                        yield Artifact(found[2], int(item["Size"]), item["LastModified"].timestamp())

    def delete(self, sha256: str) -> bool:
        key = self._key(sha256)
        if self._head(key) is None:
            return False
        self._call("delete_object", Key=key)
        return True

    def url_for(self, sha256: str, *, expires_in: int) -> str:
        """A presigned URL that GETs the blob of `sha256` for `expires_in` seconds (1 to 7 days' worth); it is
        made here, without asking the store, so the blob may be missing."""
        key = self._key(sha256)
        if not isinstance(expires_in, int) or isinstance(expires_in, bool) or not 0 < expires_in <= _MAX_URL_SECONDS:
            raise UsageError(f"expires_in must be a whole number of seconds from 1 to {_MAX_URL_SECONDS}, "
                             f"not {excerpt(expires_in)}")
        with self._errors("signing a URL"):
            return str(self._client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                                           ExpiresIn=expires_in))

    def leftovers(self) -> Iterator[Leftover]:
        """The incomplete multipart uploads to the store's keys: named ``KEY?uploadId=ID``, sized by their parts."""
        pages = self._client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=f"{self._base}sha256/")
        with self._errors("listing unfinished uploads"):
            for page in pages:
                for upload in page.get("Uploads", ()):
                    key, upload_id = upload["Key"], upload["UploadId"]
                    if self._blob_key.fullmatch(key):
                        yield Leftover(f"{key}{_UPLOAD_ID}{upload_id}", self._uploaded(key, upload_id),
                                       upload["Initiated"].timestamp())

    def remove_leftover(self, leftover: Leftover) -> bool:
        """Abort the incomplete upload `leftover` names; whether it was still there."""
        key, _, upload_id = leftover.name.partition(_UPLOAD_ID)
        if not upload_id or not self._blob_key.fullmatch(key):
            raise UsageError(f"{excerpt(leftover.name)} is not an unfinished upload of the artifact store "
                             f"{self.location}")
        # asked first: S3 refuses to abort an upload that is gone, but some S3-compatible stores do not
        if self._call("list_parts", Key=key, UploadId=upload_id, MaxParts=1, missing={"NoSuchUpload"}) is None:
            return False
        return self._call("abort_multipart_upload", Key=key, UploadId=upload_id, missing={"NoSuchUpload"}) is not None

    def scratch(self, name: str) -> Path:
        """``scratch_root/NAME`` (made if missing), a local folder: an object store has no file system to share."""
        return DirectoryStore(self.scratch_root).scratch(name)

    def put_file(self, path: str | os.PathLike[str], *, sha256: str | None = None) -> Artifact:
        """Store the regular file at `path` (checked against `sha256` when given; hashed first otherwise)."""
        source = Path(path)
        with open_regular(source, only="only regular files are stored") as f:
            if sha256 is None:
                sha256 = digest_of(f)[0]
                f.seek(0)
            return self._put(iter(lambda: f.read(CHUNK), b""), sha256=check_sha256(sha256), max_bytes=None,
                             origin=str(source))

    def put_stream(self, chunks: Iterable[bytes], *, sha256: str, max_bytes: int) -> Artifact:
        """Store the bytes of `chunks`, which must hash to `sha256` and be at most `max_bytes` long.

        Raises `ArtifactTooLargeError` as soon as more than `max_bytes` arrive and
        `HashMismatchError` when the bytes hash to something else; nothing is kept then.
        """
        return self._put(chunks, sha256=check_sha256(sha256), max_bytes=checked_limit(max_bytes), origin="the upload")

    def _put(self, chunks: Iterable[bytes], *, sha256: str, max_bytes: int | None, origin: str) -> Artifact:
        """Stream `chunks` to the blob of `sha256` if they verify, or only verify them if the blob is there."""
        key = self._key(sha256)
        incoming = Verified(chunks, sha256=sha256, max_bytes=max_bytes, origin=origin)
        head = self._head(key)
        if head is None:
            self._upload(key, incoming)
        else:
            for _ in incoming:
                pass
            if int(head["ContentLength"]) != incoming.size:
                raise ArtifactError(f"the artifact store's object {self._url(key)} is {head['ContentLength']} bytes, "
                                    f"not the {incoming.size} bytes with its SHA-256: it is damaged; delete it "
                                    f"and publish again")
            self._date_again(key)
        return Artifact(sha256, incoming.size)

    def _date_again(self, key: str) -> None:
        """Make the object `key` new again (a copy onto itself, in the store: `LastModified` is now), so that `zoo gc`
        does not take a blob stored again for an old unreferenced one while its catalog row is still to come."""
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import ClientError

        # one CopyObject up to S3's limit for it (5 GiB), a multipart copy in the store beyond
        config = TransferConfig(multipart_threshold=5 << 30, multipart_chunksize=1 << 30,
                                max_concurrency=self.parts_in_flight)
        source = {"Bucket": self.bucket, "Key": key}
        with self._errors("dating a stored file again"):
            try:
                self._client.copy(source, self.bucket, key, Config=config,
                                  ExtraArgs={"MetadataDirective": "REPLACE", "ContentType": _CONTENT_TYPE})
            except ClientError as exc:
                if _code(exc) not in _MISSING:
                    raise
                raise ArtifactError(f"the artifact store {self.location} lost its file {self._url(key)} while it "
                                    f"was being stored again (zoo gc?); store it again") from None

    def _upload(self, key: str, incoming: Verified) -> None:
        """PUT the bytes of `incoming` (which raises on its last step unless they verify) to `key`, in one
        request or as a multipart upload that is completed only once they verified."""
        buffer, upload = bytearray(), None
        try:
            for chunk in incoming:
                view = memoryview(chunk)
                while view:
                    room = self.part_size - len(buffer)
                    buffer += view[:room]
                    view = view[room:]
                    if len(buffer) == self.part_size:
                        upload = upload or _Multipart(self, key)
                        upload.send(buffer)
                        buffer = bytearray()
            if upload is None:
                checksum = base64.b64encode(incoming.digest.digest()).decode()
                self._call("put_object", Key=key, Body=buffer, ContentType=_CONTENT_TYPE, ChecksumSHA256=checksum)
                return
            if buffer:
                upload.send(buffer)
            upload.complete()
        except BaseException:
            if upload is not None:
                upload.abort()
            raise

    def _uploaded(self, key: str, upload_id: str) -> int:
        """The bytes the parts of an incomplete upload hold (0 once it is gone)."""
        from botocore.exceptions import ClientError

        pages = self._client.get_paginator("list_parts").paginate(Bucket=self.bucket, Key=key, UploadId=upload_id)
        with self._errors("listing an unfinished upload's parts"):
            try:
                return sum(int(part["Size"]) for page in pages for part in page.get("Parts", ()))
            except ClientError as exc:
                if _code(exc) != "NoSuchUpload":
                    raise
                return 0

    def _head(self, key: str) -> dict[str, Any] | None:
        """The object `key`'s metadata (a HEAD); None when there is none."""
        return self._call("head_object", Key=key, missing=_MISSING)

    def _call(self, operation: str, *, missing: Iterable[str] = (), **params: Any) -> Any:
        """The answer of the S3 `operation` on the bucket with `params`; None when the store answers an error code
        in `missing`; any other failure as one line (`_failure`)."""
        from botocore.exceptions import ClientError

        with self._errors(operation):
            try:
                return getattr(self._client, operation)(Bucket=self.bucket, **params)
            except ClientError as exc:
                if _code(exc) in missing:
                    return None
                raise

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """botocore's failures in the block (while `doing` something) raised as zoo's one-line errors."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise self._failure(exc, doing) from None

    def _failure(self, exc: Exception, doing: str) -> ZooError:
        """The one-line error for botocore's `exc`: a missing bucket is a `UsageError`; an unreachable or failing
        store and refused credentials are `StoreUnavailableError` (trying later may help); else `ArtifactError`."""
        from botocore import exceptions as boto

        where = f"the artifact store {self.location} at {self.endpoint}"
        if isinstance(exc, boto.ClientError):
            code, status = _code(exc), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            said = excerpt(exc.response.get("Error", {}).get("Message") or code, 200)
            if code == "NoSuchBucket":
                return UsageError(f"bucket {self.bucket} does not exist at {self.endpoint}; create it, or set "
                                  f"{ARTIFACTS} to s3://BUCKET/PREFIX of one that does")
            if code in _REFUSED or status in (401, 403):
                return StoreUnavailableError(f"{where} refused the credentials ({code}: {said}) while {doing}; "
                                             f"check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) "
                                             f"and what they may do in the bucket")
            if code in _BUSY or status >= 500:
                return StoreUnavailableError(f"{where} failed ({code}, HTTP {status}) while {doing}; "
                                             f"try again later, or check the object store")
            return ArtifactError(f"{where} refused {doing} ({code}: {said})")
        if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError | boto.CredentialRetrievalError):
            return StoreUnavailableError(f"{where}: no usable AWS credentials ({first_line(exc)}); set "
                                         f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")
        if isinstance(exc, boto.ConnectionError | boto.HTTPClientError | boto.IncompleteReadError):
            return StoreUnavailableError(f"{where} cannot be reached while {doing} ({first_line(exc)}); check "
                                         f"AWS_ENDPOINT_URL and that the object store is up")
        return ArtifactError(f"{where} failed while {doing}: {first_line(exc)}")

    def _key(self, sha256: str) -> str:
        """The key of the blob of `sha256` (the layout of `zoo.outputs.content_path`)."""
        check_sha256(sha256)
        return f"{self._base}sha256/{sha256[:2]}/{sha256}"

    def _url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _unknown(self, sha256: str) -> UnknownArtifactError:
        return UnknownArtifactError(f"the artifact store {self.location} has no file with SHA-256 {sha256}")


class _Multipart:
    """A multipart upload to `key` of `store`: parts sent as they fill, by up to `S3Store.parts_in_flight`
    threads at once (`send` waits for one to finish beyond that), then completed or aborted."""

    def __init__(self, store: S3Store, key: str) -> None:
        self.store, self.key = store, key
        self.upload_id = store._call("create_multipart_upload", Key=key, ContentType=_CONTENT_TYPE)["UploadId"]
        self.pool = ThreadPoolExecutor(max_workers=store.parts_in_flight, thread_name_prefix="zoo-s3-part")
        self.sending: set[Future[dict[str, Any]]] = set()
        self.sent: list[dict[str, Any]] = []
        self.parts = 0

    def send(self, data: bytearray) -> None:
        """Send `data` as the next part (a sending part that failed raises here)."""
        if self.parts == _MAX_PARTS:
            raise ArtifactError(f"{self.store._url(self.key)} would have more than {_MAX_PARTS} parts of "
                                f"{self.store.part_size} bytes, S3's limit; nothing was stored")
        while len(self.sending) >= self.store.parts_in_flight:
            self._collect(wait(self.sending, return_when=FIRST_COMPLETED).done)
        self.parts += 1
        self.sending.add(self.pool.submit(self._part, self.parts, data))

    def complete(self) -> None:
        """Wait for the parts, then complete the upload: the object appears under its key."""
        self._collect(wait(self.sending).done)
        self.pool.shutdown()
        self.store._call("complete_multipart_upload", Key=self.key, UploadId=self.upload_id,
                         MultipartUpload={"Parts": sorted(self.sent, key=lambda part: part["PartNumber"])})

    def abort(self) -> None:
        """Stop sending and abort the upload (after the parts being sent: one sent after an abort would stay);
        a store that cannot be told leaves an incomplete upload for ``zoo gc``."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(ZooError):
            self.store._call("abort_multipart_upload", Key=self.key, UploadId=self.upload_id)

    def _part(self, number: int, data: bytearray) -> dict[str, Any]:
        answer = self.store._call("upload_part", Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _collect(self, done: Iterable[Future[dict[str, Any]]]) -> None:
        for future in done:
            self.sending.discard(future)
            self.sent.append(future.result())


class _Reader(io.RawIOBase):
    """The blob of `sha256` (`size` bytes) in `store`, read by a ranged GET from the position, opened at the
    first read after a seek (the service's proxy seeks to a range's start and reads on)."""

    def __init__(self, store: S3Store, sha256: str, size: int) -> None:
        super().__init__()
        self.store, self.sha256, self.size = store, sha256, size
        self.position = 0
        self.body: Any = None  # the streaming body of the GET now open, at `position`

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self.closed:
            raise ValueError("seek of a closed file")
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence {whence!r}")
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        if base + offset != self.position:
            self._drop()
            self.position = base + offset
        return self.position

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("read of a closed file")
        wanted = min(len(buffer), self.size - self.position)
        if wanted <= 0:
            return 0
        key = self.store._key(self.sha256)
        if self.body is None:
            answer = self.store._call("get_object", Key=key, Range=f"bytes={self.position}-", missing=_MISSING)
            if answer is None:
                raise self.store._unknown(self.sha256)
            self.body = answer["Body"]
        with self.store._errors(f"reading {self.sha256}"):
            data = self.body.read(wanted)
        if not data:
            raise ArtifactError(f"stored file {self.store._url(key)} ended at byte {self.position} of its {self.size}")
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)

    def close(self) -> None:
        self._drop()
        super().close()

    def _drop(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None


def _parse(location: str) -> tuple[str, str]:
    """The bucket and prefix of ``s3://BUCKET[/PREFIX]`` (a trailing '/' aside); a one-line `UsageError` else."""
    scheme, sep, rest = location.partition("://")
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.removesuffix("/")
    names = prefix.split("/") if prefix else []
    if (scheme.lower() != "s3" or not sep or not _BUCKET.fullmatch(bucket) or ".." in bucket
            or not all(_NAME.fullmatch(name) and name not in {".", ".."} for name in names)):
        raise UsageError(f"{ARTIFACTS} must be {_FORM}, not {excerpt(location)}")
    return bucket, prefix


def _connect(aws: Mapping[str, str]) -> Any:
    """A boto3 S3 client configured by the ``AWS_*`` variables `aws` (and, as boto3 does, the AWS config files)."""
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError
    except ImportError:
        raise UsageError(_NO_BOTO3) from None
    key, secret = aws.get("AWS_ACCESS_KEY_ID") or None, aws.get("AWS_SECRET_ACCESS_KEY") or None
    if (key is None) != (secret is None):
        raise UsageError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set together (or neither, for "
                         "AWS_PROFILE or the AWS config files)")
    endpoint = aws.get("AWS_ENDPOINT_URL_S3") or aws.get("AWS_ENDPOINT_URL") or None
    config = Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 3},
                    max_pool_connections=32, signature_version="s3v4")
    try:
        session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret,
                                        aws_session_token=aws.get("AWS_SESSION_TOKEN") or None,
                                        region_name=aws.get("AWS_REGION") or aws.get("AWS_DEFAULT_REGION") or None,
                                        profile_name=aws.get("AWS_PROFILE") or None)
        return session.client("s3", endpoint_url=endpoint, config=config)
    except (BotoCoreError, ValueError) as exc:  # an unknown profile, a bad endpoint URL or region
        raise UsageError(f"the AWS settings of {ARTIFACTS}'s object store are not usable ({first_line(exc)}); "
                         f"check AWS_ENDPOINT_URL, AWS_REGION and AWS_PROFILE") from None


def _code(exc: Any) -> str:
    """The error code of a botocore `ClientError` (the HTTP status for a HEAD, which has no body)."""
    return str(exc.response.get("Error", {}).get("Code", ""))
