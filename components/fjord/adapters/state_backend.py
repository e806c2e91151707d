"""Read a Pulumi self-managed backend's lock objects and a stack's checkpoint (read only: never writes): a
file:// folder directly, an s3:// bucket through the S3 adapter. fjord.gitops.state explains what it finds."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOCKS = ".pulumi/locks/organization"
STACKS = ".pulumi/stacks"


class BackendError(RuntimeError):
    """The backend could not be read: the URL and why."""


def read_state(
    backend: str, project: str, stack: str, env: Mapping[str, str] | None = None
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any] | None]:
    """(locks as (key, content), the checkpoint or None) of `project`/`stack` on `backend`."""
    url = urlsplit(backend)
    lock_prefix = f"{LOCKS}/{project}/{stack}/"
    checkpoint_key = f"{STACKS}/{project}/{stack}.json"
    if url.scheme == "file":
        root = Path(url.netloc + url.path).expanduser()
        if not root.is_dir():
            raise BackendError(f"{backend}: no such folder; allowed: the folder `pulumi login file://...` uses")
        folder = root / lock_prefix
        locks = [(str(p.relative_to(root)), _json(p.read_bytes(), str(p))) for p in sorted(folder.glob("*.json"))]
        path = root / checkpoint_key
        return locks, _json(path.read_bytes(), str(path)) if path.is_file() else None
    if url.scheme == "s3":
        return _read_s3(url.netloc, parse_qs(url.query), lock_prefix, checkpoint_key, env)
    raise BackendError(f"{backend}: unsupported backend; allowed: file://<folder> or s3://<bucket>?endpoint=...")


def _json(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise BackendError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise BackendError(f"{where}: not a JSON object")
    return doc


def _read_s3(
    bucket: str, query: Mapping[str, list[str]], lock_prefix: str, checkpoint_key: str, env: Mapping[str, str] | None
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any] | None]:
    import os

    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    env = os.environ if env is None else env
    endpoint = (query.get("endpoint") or [""])[0]
    if endpoint and "://" not in endpoint:
        scheme = "http" if (query.get("disableSSL") or ["false"])[0] == "true" else "https"
        endpoint = f"{scheme}://{endpoint}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        region_name=(query.get("region") or ["default"])[0],
        aws_access_key_id=env.get("FJORD_S3_ACCESS_KEY_ID") or env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("FJORD_S3_SECRET_ACCESS_KEY") or env.get("AWS_SECRET_ACCESS_KEY"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 4, "mode": "standard"}),
    )
    try:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=lock_prefix).get("Contents", [])
        locks = [
            (o["Key"], _json(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read(), o["Key"]))
            for o in listed
            if o["Key"].endswith(".json")
        ]
        try:
            body = client.get_object(Bucket=bucket, Key=checkpoint_key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return locks, None
            raise
        return locks, _json(body, checkpoint_key)
    except (BotoCoreError, ClientError) as exc:
        raise BackendError(f"s3://{bucket}: {exc}") from None
