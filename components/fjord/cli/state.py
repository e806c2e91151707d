"""`fjord state`: the site's Pulumi state bucket and tenant buckets on the site's own S3 endpoint.

Credentials: FJORD_S3_ACCESS_KEY_ID / FJORD_S3_SECRET_ACCESS_KEY (or the AWS_* pair), else the stack's
Pulumi config `fjord:s3AccessKeyId` and the secret `fjord:s3SecretAccessKey` (decrypted with
`pulumi config get`, which needs the Pulumi CLI). The secret key is never printed.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from fjord.cli.common import (
    JsonFlag,
    StackArg,
    StacksDir,
    error_line,
    labelled,
    load_stack,
    out,
    plain,
    reject,
    write_json,
)
from fjord.spec.errors import Problem, SiteError
from fjord.spec.load import SECRET_PLACEHOLDER, StackConfig, read_stack, stacks_dir

if TYPE_CHECKING:  # boto3 is loaded when a command talks to the object store
    from fjord.adapters.s3 import ObjectStore, S3Credentials, S3Error
    from fjord.spec.models import Site, StoreTarget

EXIT_STORE = 3
"""The object store refused or failed (unreachable, credentials rejected, bucket taken)."""
ACCESS_KEY = "fjord:s3AccessKeyId"
SECRET_KEY = "fjord:s3SecretAccessKey"  # one of fjord.spec.load.SECRET_CONFIG_KEYS
TB = 10**12

app: typer.Typer = typer.Typer(
    help="The site's Pulumi state backend and tenant buckets on its S3 endpoint.", no_args_is_help=True
)


def _pulumi_get(stack: str, key: str, folder: Path) -> str | None:
    """Decrypt one secret config value with the Pulumi CLI; None when the CLI is not installed."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        return None
    done = subprocess.run(
        [pulumi, "config", "get", key, "--stack", stack],
        capture_output=True,
        text=True,
        cwd=folder.parent,
        check=False,
        timeout=60,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def resolve_credentials(
    cfg: StackConfig, env: Mapping[str, str] | None = None, folder: Path | None = None
) -> S3Credentials:
    """The S3 credentials for a stack: environment first, then the stack's Pulumi config (the key a secret)."""
    from fjord.adapters.s3 import S3Credentials

    found = S3Credentials.from_env(env)
    if found is not None:
        return found
    source = str(cfg.path or cfg.stack)
    access = cfg.config.get(ACCESS_KEY)
    if SECRET_KEY in cfg.secret_keys and access is not None:
        where = folder or stacks_dir()
        key_id = _pulumi_get(cfg.stack, ACCESS_KEY, where) if access == SECRET_PLACEHOLDER else str(access)
        secret = _pulumi_get(cfg.stack, SECRET_KEY, where)
        if key_id and secret:
            return S3Credentials(key_id, secret)
        raise SiteError(
            [
                Problem(
                    SECRET_KEY,
                    SECRET_PLACEHOLDER,
                    "cannot be decrypted here (no Pulumi CLI, or not logged in);"
                    " allowed: set FJORD_S3_ACCESS_KEY_ID and FJORD_S3_SECRET_ACCESS_KEY instead",
                )
            ],
            source,
        )
    raise SiteError(
        [
            Problem(
                SECRET_KEY,
                None,
                "no S3 credentials; allowed: FJORD_S3_ACCESS_KEY_ID + FJORD_S3_SECRET_ACCESS_KEY in the environment,"
                f" or {ACCESS_KEY} + the secret {SECRET_KEY} in the stack",
            )
        ],
        source,
    )


def open_store(stack: str, folder: Path | None) -> tuple[Site, StoreTarget, ObjectStore]:
    """The stack's site, its resolved object store and a client for it; rejects a site without one."""
    site, _, source = load_stack(stack, folder)
    return (site, *connect_store(stack, folder, site, source))


def connect_store(stack: str, folder: Path | None, site: Site, source: str) -> tuple[StoreTarget, ObjectStore]:
    """The resolved object store of the stack's validated `site` and a client for it; rejects a site without
    one (`source`: where the site came from, for the message)."""
    from fjord.adapters.s3 import ObjectStore, S3Error, TransferSettings

    target = site.store()
    if target is None:
        raise reject(
            source,
            [
                str(
                    Problem(
                        "object_store",
                        None,
                        "the site has no object store; allowed: an object_store section, or one storage tier of"
                        " kind 'object' with an endpoint",
                    )
                )
            ],
        )
    try:
        creds = resolve_credentials(read_stack(stack, folder), folder=stacks_dir(folder))
    except SiteError as exc:
        raise reject(exc.source or source, exc.lines()) from None
    spec = target.spec
    settings = TransferSettings(
        max_attempts=spec.max_attempts, connect_timeout_s=spec.connect_timeout_s, read_timeout_s=spec.read_timeout_s
    )
    try:
        return target, ObjectStore(target.endpoint, creds, target.region, settings)
    except S3Error as exc:
        raise store_failed(exc) from None
    except ValueError as exc:  # botocore refuses an endpoint the spec's URL check let through: no traceback
        where = f"storage tier {spec.tier!r}" if spec.tier else "object_store.endpoint"
        raise reject(
            source,
            [f"{where}: the S3 client cannot use {target.endpoint!r} ({exc}); allowed: an http(s)://host[:port] URL"],
        ) from None


def store_failed(exc: S3Error) -> typer.Exit:
    """One line on stderr for an object-store failure; exit 3."""

    error_line(str(exc))
    return typer.Exit(EXIT_STORE)


def pulumi_login_url(target: StoreTarget) -> str:
    from fjord.adapters.s3 import endpoint_host

    host, tls = endpoint_host(target.endpoint)
    url = f"s3://{target.state_bucket}?endpoint={host}&s3ForcePathStyle=true&region={target.region}"
    return url if tls else url + "&disableSSL=true"


def init_state(site: Site, target: StoreTarget, store: ObjectStore) -> dict[str, Any]:
    """Create and configure the state and artifacts buckets; what was applied, per bucket."""
    spec = target.spec
    report: dict[str, Any] = {
        "site": site.name,
        "endpoint": target.endpoint,
        "jurisdiction": target.jurisdiction,
        "buckets": [],
    }
    for bucket, lock in ((target.state_bucket, spec.object_lock), (target.artifacts_bucket, False)):
        created = store.ensure_bucket(bucket, object_lock=lock)
        applied = store.configure_bucket(
            bucket, noncurrent_days=spec.noncurrent_days, lock_days=spec.lock_days if lock else None
        )
        report["buckets"].append(
            {"bucket": bucket, "created": created, "settings": [asdict(a) for a in applied]},
        )
    report["pulumi_login"] = f"pulumi login '{pulumi_login_url(target)}'"
    return report


@app.command("init")
def init(stack: StackArg, stacks_dir_: StacksDir = None, as_json: JsonFlag = False) -> None:
    """Create the site's Pulumi state bucket (versioned, object lock, noncurrent expiry) and artifacts bucket."""
    from fjord.adapters.s3 import Applied, S3Error

    site, target, store = open_store(stack, stacks_dir_)
    try:
        report = init_state(site, target, store)
    except S3Error as exc:
        raise store_failed(exc) from None

    if as_json:
        write_json(report)
        return
    out.print(
        labelled(
            site.name, "bold", f": object store {target.endpoint} ({target.jurisdiction}, the site's jurisdiction)"
        )
    )
    table = Table(title="Buckets", title_justify="left", header_style="bold")
    for col in ("bucket", "state", "setting", "applied", "detail"):
        table.add_column(col)
    for b in report["buckets"]:
        for i, a in enumerate(Applied(**s) for s in b["settings"]):
            table.add_row(
                plain(b["bucket"] if i == 0 else ""),
                ("created" if b["created"] else "exists") if i == 0 else "",
                plain(a.setting),
                plain("yes", "green") if a.applied else plain("no", "yellow"),
                plain(a.detail),
            )
    out.print(table)
    out.print("Log in to this site's state backend (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set to the S3 keys):")
    # soft_wrap: the login line must stay one copyable line in any terminal width.
    out.print(plain(report["pulumi_login"]), soft_wrap=True)


def ensure_tenants(site: Site, store: ObjectStore) -> list[dict[str, Any]]:
    """Per tenant: an RGW user `<site>-<tenant>` owning its buckets, with the tenant's quota. Idempotent."""
    from fjord.adapters.s3 import BucketTaken
    from fjord.spec.models import tenant_bucket

    rows: list[dict[str, Any]] = []
    for t in site.tenants:
        if not t.buckets and t.object_quota_tb is None:
            continue
        uid = f"{site.name}-{t.name}"
        user_created = store.ensure_user(uid, f"fjord tenant {t.name} of site {site.name}")
        for b in t.buckets:
            bucket = tenant_bucket(site.name, t.name, b)
            try:
                created = store.ensure_bucket(bucket)
            except BucketTaken:
                owner = store.bucket_owner(bucket)
                if owner != uid:
                    raise BucketTaken(
                        f"tenant {t.name}: bucket {bucket!r} at {store.endpoint} belongs to user {owner!r}, not to"
                        f" the tenant's user {uid!r}; rename the bucket in the spec or hand the bucket over"
                    ) from None
                created = False
            if store.bucket_owner(bucket) != uid:
                store.link_bucket(bucket, uid)
            rows.append({"tenant": t.name, "user": uid, "bucket": bucket, "created": created})
        quota = "none in the spec"
        if t.object_quota_tb is not None:
            store.set_user_quota(uid, int(t.object_quota_tb * TB))
            q = store.user_quota(uid)
            quota = f"{q.get('max_size', 0) / TB:g} TB (enabled)" if q.get("enabled") else "not enabled"
        rows.append({"tenant": t.name, "user": uid, "user_created": user_created, "quota": quota})
    return rows


@app.command("tenants")
def tenants(stack: StackArg, stacks_dir_: StacksDir = None, as_json: JsonFlag = False) -> None:
    """Create each tenant's RGW user, buckets and quota from the spec (needs the `users=*; buckets=*` caps)."""
    from fjord.adapters.s3 import S3Error

    site, _, store = open_store(stack, stacks_dir_)
    try:
        rows = ensure_tenants(site, store)
    except S3Error as exc:
        raise store_failed(exc) from None

    if as_json:
        write_json(rows)
        return
    table = Table(title=plain(f"{site.name}: tenant object storage"), title_justify="left", header_style="bold")
    for col in ("tenant", "user", "bucket / quota", "state"):
        table.add_column(col)
    for r in rows:
        if "bucket" in r:
            table.add_row(
                plain(r["tenant"]), plain(r["user"]), plain(r["bucket"]), "created" if r["created"] else "exists"
            )
        else:
            table.add_row(
                plain(r["tenant"]),
                plain(r["user"]),
                plain(f"quota {r['quota']}"),
                "user created" if r["user_created"] else "",
            )
    out.print(table)
