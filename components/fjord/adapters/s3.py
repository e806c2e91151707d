"""A site's S3 endpoint (Ceph RGW) through boto3: one small typed wrapper, errors as clear `S3Error`s.

- Path-style addressing (RGW serves buckets under one host name), region name as the RGW zonegroup.
- Retries (botocore `standard` or `adaptive` mode, `max_attempts` in all) and connect/read timeouts.
- Checksums on upload: with `checksum="md5"` (the default) every PutObject and UploadPart carries a
  Content-MD5 that the server verifies (RGW answers BadDigest on a mismatch; every RGW release does this).
  `"crc32"`, `"crc32c"` or `"sha256"` use S3 flexible checksums instead, for endpoints that verify them (RGW
  Reef 18.2 and later; Debian 12's Pacific 16.2 accepts and ignores them, so fjord does not use them there).
  On top, every object fjord writes carries the SHA-256 of its content as metadata (`fjord-sha256`), checked
  byte for byte when fjord reads it back.
- Multipart through s3transfer with fjord's `TransferSettings`.
- RGW's Admin Ops API (`/admin/...`, SigV4-signed like S3) for users, bucket owners and quotas; it needs
  an S3 user with the `users=*; buckets=*` caps.

Errors: every boto3, s3transfer and botocore exception (boto3's `S3UploadFailedError` wraps the server's
answer: it is unwrapped) leaves as an `S3Error` subclass with one line naming the action, endpoint, bucket
and key; see `_errors`.

Multipart uploads are never left behind: a failed upload is aborted (s3transfer tries, and fjord aborts
every upload it started, again, when that did not work), and each upload fjord starts is written to an
`UploadJournal` on this machine until it completes or is aborted, so that one whose process was killed, or
whose abort failed because the endpoint was gone, is aborted by the next run (`abort_left_uploads`).

The secret key is held by `S3Credentials` (never in its repr) and appears in no error message.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import boto3
import boto3.exceptions as b3ex
import botocore.exceptions as bex
import s3transfer.exceptions as s3tex
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.httpsession import URLLib3Session

LOG = logging.getLogger("fjord.s3")
Checksum = Literal["md5", "crc32", "crc32c", "sha256"]
SHA256_META = "fjord-sha256"
MiB = 1 << 20


class S3Error(Exception):
    """Something the endpoint refused or could not do; the message names endpoint and bucket, never a secret."""


class EndpointUnreachable(S3Error):
    pass


class CredentialsRejected(S3Error):
    pass


class BucketTaken(S3Error):
    pass


class NotFound(S3Error):
    pass


class ChecksumMismatch(S3Error):
    pass


class NotSupported(S3Error):
    """The endpoint does not implement a feature (e.g. bucket encryption without a KMS on RGW)."""


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Credentials | None:
        """FJORD_S3_ACCESS_KEY_ID / FJORD_S3_SECRET_ACCESS_KEY, else the AWS_* pair; None when unset."""
        e = os.environ if env is None else env
        for prefix in ("FJORD_S3_", "AWS_"):
            key, secret = e.get(f"{prefix}ACCESS_KEY_ID"), e.get(f"{prefix}SECRET_ACCESS_KEY")
            if key and secret:
                return cls(key, secret)
        return None


@dataclass(frozen=True)
class TransferSettings:
    """Retries, timeouts and multipart settings fjord uses against a site's endpoint."""

    max_attempts: int = 8
    """Attempts per request in all (first try included); standard mode backs off exponentially up to 20 s."""
    retry_mode: Literal["standard", "adaptive"] = "standard"
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    multipart_threshold: int = 16 * MiB
    multipart_chunksize: int = 16 * MiB
    max_concurrency: int = 4
    checksum: Checksum = "md5"

    def transfer_config(self) -> TransferConfig:
        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=self.max_concurrency,
            use_threads=self.max_concurrency > 1,
        )


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: str
    metadata: dict[str, str]
    version_id: str | None = None


@dataclass(frozen=True)
class Applied:
    """One bucket setting and whether the endpoint took it."""

    setting: str
    applied: bool
    detail: str


def _content_md5(params: dict[str, Any], **_: Any) -> None:
    """botocore `before-call` hook: a Content-MD5 on PutObject/UploadPart, which the server verifies."""
    body = params.get("body")
    if body is None or "Content-MD5" in params["headers"]:
        return
    md5 = hashlib.md5(usedforsecurity=False)
    if isinstance(body, bytes | bytearray):
        md5.update(body)
    else:
        start = body.tell()
        for chunk in iter(lambda: body.read(MiB), b""):
            md5.update(chunk)
        body.seek(start)
    params["headers"]["Content-MD5"] = base64.b64encode(md5.digest()).decode("ascii")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(4 * MiB), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class OpenUpload:
    """A multipart upload fjord started and has not seen complete or aborted."""

    endpoint: str
    bucket: str
    key: str
    upload_id: str
    host: str
    pid: int
    started: str

    def left(self) -> bool:
        """Whether it is left behind: the process that started it (on this host) is gone, or it is this process
        and the upload is no longer in progress. An upload journalled on another host is left (the journal is
        per machine; a shared home is the exception this errs on)."""
        if self.host != socket.gethostname():
            return True
        if self.pid == os.getpid():
            with _IN_PROGRESS_LOCK:
                return self.upload_id not in _IN_PROGRESS
        return not self._running()

    def _running(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


_IN_PROGRESS: set[str] = set()
"""Upload ids of the multipart uploads this process is sending now (any ObjectStore)."""
_IN_PROGRESS_LOCK = threading.Lock()


def default_journal_path() -> Path:
    """$FJORD_STATE_DIR, else $XDG_STATE_HOME/fjord, else ~/.local/state/fjord; then multipart-uploads.json."""
    base = os.environ.get("FJORD_STATE_DIR")
    if not base:
        xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        base = str(Path(xdg) / "fjord")
    return Path(base) / "multipart-uploads.json"


class UploadJournal:
    """The multipart uploads fjord started on this machine and has not finished, in a small JSON file (no
    secret in it: endpoint, bucket, key, upload id, host, pid, time). Changes are made under an exclusive
    file lock, so that several fjord processes share one journal."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_journal_path()

    @contextmanager
    def _locked(self) -> Iterator[list[OpenUpload]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.with_name(self.path.name + ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                entries: list[OpenUpload] = []
                with suppress(FileNotFoundError, ValueError, TypeError):
                    entries = [OpenUpload(**e) for e in json.loads(self.path.read_text(encoding="utf-8"))]
                before = list(entries)
                yield entries
                if entries != before:
                    tmp = self.path.with_name(self.path.name + ".tmp")
                    tmp.write_text(json.dumps([asdict(e) for e in entries], indent=1), encoding="utf-8")
                    tmp.replace(self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # A journal that cannot be written (a read-only home) must not fail the upload itself: it is logged.

    def add(self, endpoint: str, bucket: str, key: str, upload_id: str) -> None:
        started = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        entry = OpenUpload(endpoint, bucket, key, upload_id, socket.gethostname(), os.getpid(), started)
        try:
            with self._locked() as entries:
                entries.append(entry)
        except OSError as exc:
            LOG.warning("cannot journal multipart upload %s of %s/%s in %s: %s", upload_id, bucket, key, self.path, exc)

    def remove(self, endpoint: str, upload_ids: set[str]) -> None:
        try:
            with self._locked() as entries:
                entries[:] = [e for e in entries if not (e.endpoint == endpoint and e.upload_id in upload_ids)]
        except OSError as exc:
            LOG.warning("cannot update the multipart upload journal %s: %s", self.path, exc)

    def entries(self, endpoint: str | None = None) -> list[OpenUpload]:
        try:
            with self._locked() as entries:
                return [e for e in entries if endpoint is None or e.endpoint == endpoint]
        except OSError as exc:
            LOG.warning("cannot read the multipart upload journal %s: %s", self.path, exc)
            return []


def _first_line(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # an exception whose message cannot be formatted still gets a line: its class
        text = ""
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


_WRAPPERS = (
    b3ex.S3UploadFailedError,
    b3ex.S3TransferFailedError,
    b3ex.RetriesExceededError,
    s3tex.S3UploadFailedError,
    s3tex.S3DownloadFailedError,
    s3tex.RetriesExceededError,
)
_TRANSFER_ERRORS = (
    s3tex.RetriesExceededError,
    s3tex.S3UploadFailedError,
    s3tex.S3DownloadFailedError,
    s3tex.S3CopyFailedError,
    s3tex.CancelledError,
    s3tex.S3ValidationError,
    s3tex.TransferNotDoneError,
    s3tex.InvalidSubscriberMethodError,
    bex.UndefinedModelAttributeError,
)
"""s3transfer's own exception classes (none of them derives from a boto3 or botocore one), and the one
botocore class outside BotoCoreError/ClientError."""


def _wrapped(exc: BaseException) -> BaseException:
    """The error a boto3/s3transfer wrapper stands for: S3UploadFailedError, RetriesExceededError and
    S3TransferFailedError carry it as their cause, context or `last_exception`."""
    seen: set[int] = set()
    current = exc
    while id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "last_exception", None) or current.__cause__ or current.__context__
        if not isinstance(current, _WRAPPERS) or not isinstance(inner, BaseException):
            return current
        current = inner
    return current


class ObjectStore:
    """One S3 endpoint with one set of credentials. Holds an open client: never pickle it into a resource."""

    def __init__(
        self,
        endpoint: str,
        credentials: S3Credentials,
        region: str = "default",
        settings: TransferSettings | None = None,
        journal: UploadJournal | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.region = region
        self.settings = settings or TransferSettings()
        self.journal = journal or UploadJournal()
        self._creds = credentials
        self._started: dict[tuple[str, str], list[str]] = {}
        self._started_lock = threading.Lock()
        s = self.settings
        flexible = s.checksum != "md5"
        self.config = Config(
            region_name=region,
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"mode": s.retry_mode, "total_max_attempts": s.max_attempts},
            connect_timeout=s.connect_timeout_s,
            read_timeout=s.read_timeout_s,
            max_pool_connections=max(10, s.max_concurrency + 2),
            request_checksum_calculation="when_supported" if flexible else "when_required",
            response_checksum_validation="when_supported" if flexible else "when_required",
        )
        try:
            self.client: Any = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=credentials.access_key_id,
                aws_secret_access_key=credentials.secret_access_key,
                config=self.config,
            )
        except (
            bex.BotoCoreError,
            b3ex.Boto3Error,
        ) as exc:  # (a ValueError, such as 'Invalid endpoint', is the caller's)
            raise S3Error(f"S3 endpoint {self.endpoint!r}: no client can be made for it ({_first_line(exc)})") from None
        if not flexible:
            for op in ("PutObject", "UploadPart"):
                self.client.meta.events.register(f"before-call.s3.{op}", _content_md5)
        self.client.meta.events.register("after-call.s3.CreateMultipartUpload", self._upload_created)

    def __repr__(self) -> str:
        return f"ObjectStore({self.endpoint!r}, access key {self._creds.access_key_id})"

    def _extra(self) -> dict[str, str]:
        return {} if self.settings.checksum == "md5" else {"ChecksumAlgorithm": self.settings.checksum.upper()}

    # --- errors -----------------------------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str, bucket: str = "", key: str = "") -> Iterator[None]:
        """Every boto3, s3transfer and botocore exception raised inside, as an `S3Error`."""
        try:
            yield
        except (bex.BotoCoreError, bex.ClientError, b3ex.Boto3Error, *_TRANSFER_ERRORS) as exc:
            raise self.translate(exc, action, bucket, key) from None

    def translate(self, exc: BaseException, action: str, bucket: str = "", key: str = "") -> S3Error:
        """One boto3/s3transfer/botocore exception as fjord's `S3Error` (a subclass where one fits). boto3 wraps
        the server's answer in S3UploadFailedError/RetriesExceededError: the error it wraps decides."""
        where = f"{self.endpoint}/{bucket}" + (f"/{key}" if key else "") if bucket else self.endpoint
        cause = _wrapped(exc)
        if isinstance(cause, S3Error):
            return cause
        if isinstance(cause, bex.ClientError):
            return self._client_error(cause, action, where, bucket)
        if isinstance(cause, bex.ReadTimeoutError):
            return EndpointUnreachable(
                f"{action}: S3 endpoint {self.endpoint} did not answer within {self.settings.read_timeout_s:g} s"
                f" ({self.settings.max_attempts} attempts)"
            )
        if isinstance(cause, bex.ConnectionError | bex.HTTPClientError):
            return EndpointUnreachable(
                f"{action}: S3 endpoint {self.endpoint} is unreachable after {self.settings.max_attempts} attempts"
                f" ({type(cause).__name__})"
            )
        if isinstance(cause, bex.NoCredentialsError | bex.PartialCredentialsError | bex.CredentialRetrievalError):
            return CredentialsRejected(
                f"{action}: no usable S3 credentials for {self.endpoint} ({type(cause).__name__})"
            )
        if isinstance(cause, bex.ChecksumError | bex.FlexibleChecksumError | bex.IncompleteReadError):
            return ChecksumMismatch(f"{action}: {where}: the answer was cut or corrupted ({type(cause).__name__})")
        if isinstance(cause, bex.ParamValidationError):
            return S3Error(f"{action} at {where}: the request is invalid: {_first_line(cause)}")
        return S3Error(f"{action} at {where}: {type(cause).__name__}: {_first_line(cause)}")

    def _client_error(self, exc: bex.ClientError, action: str, where: str, bucket: str) -> S3Error:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "")) or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"):
            return CredentialsRejected(
                f"{action}: S3 endpoint {self.endpoint} rejected access key {self._creds.access_key_id} ({code});"
                " check the credentials (FJORD_S3_ACCESS_KEY_ID / FJORD_S3_SECRET_ACCESS_KEY or the stack's secrets)"
            )
        if code == "BucketAlreadyExists":
            return BucketTaken(
                f"{action}: bucket {bucket!r} at {self.endpoint} belongs to another user ({code});"
                " choose another bucket name or have its owner grant access"
            )
        if code == "403":  # a HEAD's 403 has no body to tell a wrong secret from a missing permission
            return CredentialsRejected(
                f"{action}: S3 endpoint {self.endpoint} refused access key {self._creds.access_key_id} at {where}"
                " (HTTP 403: a wrong secret key, or no permission)"
            )
        if code == "AccessDenied":
            return CredentialsRejected(
                f"{action}: access key {self._creds.access_key_id} may not do this at {where} ({code})"
            )
        if code in ("NoSuchBucket", "NoSuchKey", "404", "NoSuchVersion"):
            return NotFound(f"{action}: {where} does not exist ({code})")
        if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
            return ChecksumMismatch(f"{action}: {where}: the server's checksum check failed ({code})")
        if code in ("NotImplemented", "InvalidArgument", "MalformedXML", "InvalidRequest", "501"):
            return NotSupported(f"{action}: {where}: not supported by the endpoint ({code})")
        msg = str(err.get("Message") or "")
        return S3Error(f"{action} at {where}: {code}{': ' + msg if msg else ''}")

    # --- buckets ----------------------------------------------------------------------------------------

    def check(self) -> None:
        """One cheap authenticated call: raises EndpointUnreachable or CredentialsRejected."""
        with self._errors("list buckets"):
            self.client.list_buckets()

    def ensure_bucket(self, bucket: str, object_lock: bool = False) -> bool:
        """Create the bucket unless this user owns it already; True when created. Taken: BucketTaken."""
        with self._errors("create bucket", bucket):
            try:
                self.client.head_bucket(Bucket=bucket)
                return False
            except bex.ClientError as exc:
                # 404: no such bucket. 403: someone else's, or our credentials are wrong; HEAD has no body to
                # tell which, so CreateBucket below answers precisely (BucketAlreadyExists or a signature error).
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status not in (403, 404):
                    raise
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if object_lock:
                kwargs["ObjectLockEnabledForBucket"] = True
            try:
                self.client.create_bucket(**kwargs)
            except bex.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "BucketAlreadyOwnedByYou":
                    return False
                raise
            return True

    def object_lock_enabled(self, bucket: str) -> bool:
        with self._errors("read object lock", bucket):
            try:
                conf = self.client.get_object_lock_configuration(Bucket=bucket)
            except bex.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
                    return False
                raise
        return bool(conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled")

    def configure_bucket(
        self,
        bucket: str,
        *,
        noncurrent_days: int,
        lock_days: int | None,
        encryption: bool = True,
    ) -> list[Applied]:
        """Versioning, governance-mode default retention, noncurrent expiry and encryption, as far as supported."""
        done: list[Applied] = []
        with self._errors("enable versioning", bucket):
            self.client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        done.append(Applied("versioning", True, "Enabled"))
        if lock_days is None:
            done.append(Applied("object lock", False, "off in the spec"))
        elif not self.object_lock_enabled(bucket):
            done.append(
                Applied("object lock", False, "the bucket was created without object lock; it cannot be added later")
            )
        else:
            rule = {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": lock_days}}
            try:
                with self._errors("set object lock", bucket):
                    self.client.put_object_lock_configuration(
                        Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule}
                    )
                done.append(Applied("object lock", True, f"GOVERNANCE, {lock_days} days default retention"))
            except NotSupported as exc:
                done.append(Applied("object lock", False, str(exc)))
        lifecycle = {
            "Rules": [
                {
                    "ID": "fjord-noncurrent-expiry",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": noncurrent_days},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                }
            ]
        }
        try:
            with self._errors("set lifecycle", bucket):
                self.client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=lifecycle)
            done.append(
                Applied("lifecycle", True, f"noncurrent versions expire after {noncurrent_days} days; stale uploads 7")
            )
        except NotSupported as exc:
            done.append(Applied("lifecycle", False, str(exc)))
        if encryption:
            sse = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
            try:
                with self._errors("set default encryption", bucket):
                    self.client.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=sse)
                done.append(Applied("encryption", True, "SSE-S3 (AES256) by default"))
            except NotSupported as exc:
                done.append(Applied("encryption", False, str(exc)))
        return done

    def bucket_settings(self, bucket: str) -> dict[str, Any]:
        """What the endpoint reports for versioning, object lock and lifecycle (to check what was applied)."""
        with self._errors("read bucket settings", bucket):
            versioning = self.client.get_bucket_versioning(Bucket=bucket).get("Status", "Off")
            rules = self.client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
        lock: dict[str, Any] = {}
        if self.object_lock_enabled(bucket):
            with self._errors("read object lock", bucket):
                lock = self.client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        return {"versioning": versioning, "lifecycle": rules, "object_lock": lock}

    # --- objects ----------------------------------------------------------------------------------------

    def put_file(
        self,
        bucket: str,
        key: str,
        path: Path,
        metadata: Mapping[str, str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ObjectInfo:
        """Upload a file (multipart above the threshold) with its SHA-256 in the metadata; returns what was sent
        (`head` reads back what is stored). A multipart upload that fails, or is interrupted (Ctrl-C), is
        aborted; one that cannot be aborted now stays in the journal for `abort_left_uploads`."""
        digest = sha256_file(path)
        meta = {**(metadata or {}), SHA256_META: digest}
        started: list[str] = []
        with self._started_lock:
            self._started[(bucket, key)] = started
        try:
            with self._errors("upload", bucket, key):
                self.client.upload_file(
                    str(path),
                    bucket,
                    key,
                    ExtraArgs={"Metadata": meta, **self._extra()},
                    Config=self.settings.transfer_config(),
                    Callback=progress,
                )
        except BaseException:
            self._abort(bucket, key, started)
            raise
        else:
            self.journal.remove(self.endpoint, set(started))
        finally:
            with self._started_lock:
                self._started.pop((bucket, key), None)
            with _IN_PROGRESS_LOCK:
                _IN_PROGRESS.difference_update(started)
        return ObjectInfo(key, path.stat().st_size, "", meta)

    def _upload_created(self, parsed: Mapping[str, Any], **_: Any) -> None:
        """botocore `after-call` hook of CreateMultipartUpload: journal the upload before any part is sent."""
        upload_id, bucket, key = parsed.get("UploadId"), parsed.get("Bucket"), parsed.get("Key")
        if not upload_id or not bucket or not key:
            return
        with _IN_PROGRESS_LOCK:
            _IN_PROGRESS.add(str(upload_id))
        self.journal.add(self.endpoint, str(bucket), str(key), str(upload_id))
        with self._started_lock:
            started = self._started.get((str(bucket), str(key)))
            if started is not None:
                started.append(str(upload_id))

    def _abort(self, bucket: str, key: str, upload_ids: list[str]) -> list[str]:
        """Abort these uploads (s3transfer may have done so already: NoSuchUpload is fine); the ids aborted or
        found gone are removed from the journal, the others stay there for the next run."""
        done: set[str] = set()
        for upload_id in upload_ids:
            try:
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
                done.add(upload_id)
            except bex.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchUpload", "404"):
                    done.add(upload_id)
            except (bex.BotoCoreError, b3ex.Boto3Error):
                pass  # the endpoint is gone: the journal keeps the upload for the next run
        if done:
            self.journal.remove(self.endpoint, done)
        return sorted(done)

    def abort_left_uploads(self) -> list[OpenUpload]:
        """Abort the multipart uploads that runs on this machine left at this endpoint (killed, or their abort
        failed) and whose process is gone; returns those aborted (or found gone already)."""
        left = [e for e in self.journal.entries(self.endpoint) if e.left()]
        aborted: list[OpenUpload] = []
        for e in left:
            with self._errors("abort an unfinished upload", e.bucket, e.key):
                if e.upload_id in self._abort(e.bucket, e.key, [e.upload_id]):
                    aborted.append(e)
        return aborted

    def open_uploads(self, bucket: str, prefix: str = "") -> list[dict[str, str]]:
        """Multipart uploads the endpoint holds open in a bucket (key, upload id, initiated)."""
        found: list[dict[str, str]] = []
        with self._errors("list multipart uploads", bucket):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for u in page.get("Uploads", []):
                    found.append({"key": u["Key"], "upload_id": u["UploadId"], "initiated": str(u["Initiated"])})
        return found

    def put_bytes(self, bucket: str, key: str, data: bytes, metadata: Mapping[str, str] | None = None) -> None:
        meta = {**(metadata or {}), SHA256_META: hashlib.sha256(data).hexdigest()}
        with self._errors("upload", bucket, key):
            self.client.put_object(Bucket=bucket, Key=key, Body=data, Metadata=meta, **self._extra())

    def head(self, bucket: str, key: str) -> ObjectInfo:
        with self._errors("read", bucket, key):
            h = self.client.head_object(Bucket=bucket, Key=key)
        return ObjectInfo(
            key, int(h["ContentLength"]), h["LastModified"].isoformat(), dict(h.get("Metadata", {})), h.get("VersionId")
        )

    def get_file(self, bucket: str, key: str, dest: Path, progress: Callable[[int], None] | None = None) -> ObjectInfo:
        """Download to `dest` and check the content against the SHA-256 stored with it (ChecksumMismatch)."""
        info = self.head(bucket, key)
        part = dest.with_name(dest.name + ".part")
        with self._errors("download", bucket, key):
            self.client.download_file(bucket, key, str(part), Config=self.settings.transfer_config(), Callback=progress)
        want = info.metadata.get(SHA256_META)
        got = sha256_file(part)
        if want is not None and want != got:
            part.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"download: {self.endpoint}/{bucket}/{key}: content SHA-256 {got} differs from the stored {want}"
            )
        part.replace(dest)
        return info

    def get_bytes(self, bucket: str, key: str) -> bytes:
        with self._errors("download", bucket, key):
            resp = self.client.get_object(Bucket=bucket, Key=key)
            data: bytes = resp["Body"].read()
        want = resp.get("Metadata", {}).get(SHA256_META)
        if want is not None and want != hashlib.sha256(data).hexdigest():
            raise ChecksumMismatch(f"download: {self.endpoint}/{bucket}/{key}: content differs from its SHA-256")
        return data

    def list(self, bucket: str, prefix: str = "", with_metadata: bool = True) -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        with self._errors("list", bucket):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for o in page.get("Contents", []):
                    found.append(ObjectInfo(o["Key"], int(o["Size"]), o["LastModified"].isoformat(), {}))
        if with_metadata:
            found = [self.head(bucket, o.key) for o in found]
        return found

    def delete_all(self, bucket: str) -> None:
        """Remove every version and the bucket (tests and benchmarks; governance locks are bypassed)."""
        with self._errors("delete bucket", bucket):
            for page in self.client.get_paginator("list_object_versions").paginate(Bucket=bucket):
                for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    self.client.delete_object(
                        Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"], BypassGovernanceRetention=True
                    )
            self.client.delete_bucket(Bucket=bucket)

    # --- RGW Admin Ops API ------------------------------------------------------------------------------

    def admin(self, method: str, resource: str, params: Mapping[str, str]) -> Any:
        """One signed Admin Ops request (`/admin/<resource>`); JSON answer, or None on 404."""
        # RGW's admin sub-resources ('quota') are bare query keys, as in `/admin/user?quota&uid=...`.
        query = "&".join(urlencode({k: v}, quote_via=quote) if v else k for k, v in params.items())
        url = f"{self.endpoint}/admin/{resource}?{query}"
        request = AWSRequest(method=method, url=url)
        creds = Credentials(self._creds.access_key_id, self._creds.secret_access_key)
        S3SigV4Auth(creds, "s3", self.region).add_auth(request)
        # botocore takes a (connect, read) pair here, as its own client does; the stubs say int only.
        timeouts = (self.settings.connect_timeout_s, self.settings.read_timeout_s)
        session = URLLib3Session(timeout=timeouts)  # type: ignore[arg-type]
        try:
            resp = session.send(request.prepare())
        except (bex.HTTPClientError, bex.ConnectionError) as exc:
            raise EndpointUnreachable(
                f"admin {resource}: S3 endpoint {self.endpoint} is unreachable ({type(exc).__name__})"
            ) from None
        finally:
            session.close()
        if resp.status_code == 404:
            return None
        if resp.status_code >= 300:
            code = ""
            with suppress(ValueError):
                code = str(json.loads(resp.content).get("Code", ""))
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise CredentialsRejected(
                    f"admin {resource}: S3 endpoint {self.endpoint} rejected access key"
                    f" {self._creds.access_key_id} ({code}); check the credentials"
                )
            if resp.status_code == 403:
                raise CredentialsRejected(
                    f"admin {resource}: access key {self._creds.access_key_id} may not use the RGW Admin API at"
                    f" {self.endpoint} ({code or 403}); it needs the caps 'users=*; buckets=*'"
                )
            raise S3Error(f"admin {resource} at {self.endpoint}: HTTP {resp.status_code} {code}")
        try:
            return json.loads(resp.content) if resp.content else {}
        except ValueError:
            raise S3Error(
                f"admin {resource} at {self.endpoint}: HTTP {resp.status_code} with an answer that is no JSON"
                " (is this an RGW with the Admin Ops API?)"
            ) from None

    def bucket_owner(self, bucket: str) -> str | None:
        info = self.admin("GET", "bucket", {"bucket": bucket})
        return None if info is None else str(info.get("owner"))

    def ensure_user(self, uid: str, display_name: str) -> bool:
        """Create an RGW user without keys (keys are issued to the tenant separately); True when created."""
        if self.admin("GET", "user", {"uid": uid}) is not None:
            return False
        self.admin("PUT", "user", {"uid": uid, "display-name": display_name, "generate-key": "False"})
        return True

    def link_bucket(self, bucket: str, uid: str) -> None:
        info = self.admin("GET", "bucket", {"bucket": bucket})
        if info is None:
            raise NotFound(f"admin bucket: {self.endpoint}/{bucket} does not exist")
        self.admin("PUT", "bucket", {"bucket": bucket, "uid": uid, "bucket-id": str(info.get("id", ""))})

    def set_user_quota(self, uid: str, max_bytes: int) -> None:
        self.admin(
            "PUT",
            "user",
            {
                "quota": "",
                "uid": uid,
                "quota-type": "user",
                "enabled": "true",
                "max-size-kb": str(max_bytes // 1024),
                "max-objects": "-1",
            },
        )

    def user_quota(self, uid: str) -> dict[str, Any]:
        got = self.admin("GET", "user", {"quota": "", "uid": uid, "quota-type": "user"})
        return dict(got or {})


def endpoint_host(endpoint: str) -> tuple[str, bool]:
    """(host[:port], uses TLS) of an endpoint URL."""
    parts = urlsplit(endpoint)
    return parts.netloc, parts.scheme == "https"
