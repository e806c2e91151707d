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

The secret key is held by `S3Credentials` (never in its repr) and appears in no error message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import boto3
import botocore.exceptions as bex
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.httpsession import URLLib3Session

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


class ObjectStore:
    """One S3 endpoint with one set of credentials. Holds an open client: never pickle it into a resource."""

    def __init__(
        self,
        endpoint: str,
        credentials: S3Credentials,
        region: str = "default",
        settings: TransferSettings | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.region = region
        self.settings = settings or TransferSettings()
        self._creds = credentials
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
        self.client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            config=self.config,
        )
        if not flexible:
            for op in ("PutObject", "UploadPart"):
                self.client.meta.events.register(f"before-call.s3.{op}", _content_md5)

    def __repr__(self) -> str:
        return f"ObjectStore({self.endpoint!r}, access key {self._creds.access_key_id})"

    def _extra(self) -> dict[str, str]:
        return {} if self.settings.checksum == "md5" else {"ChecksumAlgorithm": self.settings.checksum.upper()}

    # --- errors -----------------------------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str, bucket: str = "", key: str = "") -> Iterator[None]:
        where = f"{self.endpoint}/{bucket}" + (f"/{key}" if key else "") if bucket else self.endpoint
        try:
            yield
        except bex.ClientError as exc:
            raise self._client_error(exc, action, where, bucket) from None
        except (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ConnectionClosedError) as exc:
            raise EndpointUnreachable(
                f"{action}: S3 endpoint {self.endpoint} is unreachable after {self.settings.max_attempts} attempts"
                f" ({type(exc).__name__})"
            ) from None
        except bex.ReadTimeoutError:
            raise EndpointUnreachable(
                f"{action}: S3 endpoint {self.endpoint} did not answer within {self.settings.read_timeout_s:g} s"
                f" ({self.settings.max_attempts} attempts)"
            ) from None
        except bex.NoCredentialsError:
            raise CredentialsRejected(f"{action}: no S3 credentials for {self.endpoint}") from None
        except bex.BotoCoreError as exc:
            raise S3Error(f"{action} at {where}: {type(exc).__name__}") from None

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
        if code in ("AccessDenied", "403"):
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
        (`head` reads back what is stored)."""
        digest = sha256_file(path)
        meta = {**(metadata or {}), SHA256_META: digest}
        with self._errors("upload", bucket, key):
            self.client.upload_file(
                str(path),
                bucket,
                key,
                ExtraArgs={"Metadata": meta, **self._extra()},
                Config=self.settings.transfer_config(),
                Callback=progress,
            )
        return ObjectInfo(key, path.stat().st_size, "", meta)

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
        except bex.HTTPClientError as exc:
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
        return json.loads(resp.content) if resp.content else {}

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
