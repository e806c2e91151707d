"""Object storage against a real single-node Ceph RGW (tests/ceph_cluster.py): state backend, artifacts,
tenant buckets, and faults (endpoint down, RGW restarted during a multipart upload, wrong credentials,
bucket taken). The cluster is started once for this module and torn down at its end, also on failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from fjord.adapters.s3 import (
    SHA256_META,
    BucketTaken,
    ChecksumMismatch,
    CredentialsRejected,
    EndpointUnreachable,
    ObjectStore,
    S3Credentials,
    TransferSettings,
)
from fjord.cli.main import app
from fjord.cli.state import EXIT_STORE
from fjord.spec.load import default_site

from .ceph_cluster import CephCluster, S3User
from .test_cli import CIPHERTEXT, write_record

pytestmark = pytest.mark.rgw
MiB = 1 << 20


@pytest.fixture(scope="module")
def admin_user(ceph: CephCluster) -> S3User:
    """fjord's S3 user on the site: may create buckets, and use the Admin API for tenants and quotas."""
    user = ceph.create_user("fjord-admin")
    ceph.admin("caps", "add", "--uid=fjord-admin", "--caps=users=*;buckets=*")
    return user


@pytest.fixture(scope="module")
def other_user(ceph: CephCluster) -> S3User:
    return ceph.create_user("someone-else")


def store_for(ceph: CephCluster, user: S3User, **settings: Any) -> ObjectStore:
    return ObjectStore(
        ceph.endpoint, S3Credentials(user.access_key, user.secret_key), settings=TransferSettings(**settings)
    )


def env_for(user: S3User) -> dict[str, str]:
    return {"FJORD_S3_ACCESS_KEY_ID": user.access_key, "FJORD_S3_SECRET_ACCESS_KEY": user.secret_key}


def lab_stack(
    folder: Path, endpoint: str, name: str = "lab", config: dict[str, Any] | None = None, **store: Any
) -> str:
    """A stack of the dev site whose object store is the test RGW (an explicit endpoint in the site's EEA),
    with `config` besides the site."""
    site = default_site()
    site["name"] = name
    site["object_store"] = {"endpoint": endpoint, "jurisdiction": "EEA", "max_attempts": 3, **store}
    site["tenants"][0]["buckets"] = ["datasets", "checkpoints"]
    doc = {"config": {"fjord:site": site, **(config or {})}}
    (folder / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    write_record(folder, name, site)  # the program (artifacts publish plans) requires the allocation record
    return name


def fjord(folder: Path, user: S3User | None, *args: str) -> Result:
    env = env_for(user) if user else {"FJORD_S3_ACCESS_KEY_ID": "", "FJORD_S3_SECRET_ACCESS_KEY": ""}
    env |= {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    return CliRunner().invoke(app, [*args, "--stacks-dir", str(folder)], env=env)


def artifacts(folder: Path, user: S3User, stack: str, *args: str) -> Result:
    env = env_for(user) | {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    return CliRunner().invoke(app, ["artifacts", stack, *args, "--stacks-dir", str(folder)], env=env)


# --- state backend ------------------------------------------------------------------------------------


def test_state_init_creates_a_versioned_locked_bucket_and_prints_the_login(
    ceph: CephCluster, admin_user: S3User, tmp_path: Path
) -> None:
    stack = lab_stack(tmp_path, ceph.endpoint, "lab-init", noncurrent_days=30, lock_days=3)
    first = fjord(tmp_path, admin_user, "state", "init", stack)
    assert first.exit_code == 0, first.output
    host = ceph.endpoint.removeprefix("http://")
    assert f"pulumi login 's3://lab-init-state?endpoint={host}&s3ForcePathStyle=true&region=default" in first.stdout
    assert "&disableSSL=true'" in first.stdout
    store = store_for(ceph, admin_user)
    got = store.bucket_settings("lab-init-state")
    assert got["versioning"] == "Enabled"
    assert got["object_lock"]["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 3}
    assert got["lifecycle"][0]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert store.bucket_settings("lab-init-artifacts")["versioning"] == "Enabled"

    again = fjord(tmp_path, admin_user, "state", "init", stack, "--json")
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert [b["created"] for b in report["buckets"]] == [False, False]
    applied = {s["setting"]: s for s in report["buckets"][0]["settings"]}
    assert applied["versioning"]["applied"]
    assert applied["object lock"]["applied"]
    assert applied["lifecycle"]["applied"]
    # Debian 12's RGW (Pacific) has no SSE-S3 without a KMS: reported, not hidden.
    assert applied["encryption"]["applied"] is False
    assert "not supported" in applied["encryption"]["detail"]


def test_state_versions_are_kept_and_locked(ceph: CephCluster, admin_user: S3User, tmp_path: Path) -> None:
    stack = lab_stack(tmp_path, ceph.endpoint, "lab-lock", lock_days=1, noncurrent_days=1)
    assert fjord(tmp_path, admin_user, "state", "init", stack).exit_code == 0
    store = store_for(ceph, admin_user)
    store.put_bytes("lab-lock-state", ".pulumi/stacks/lab-lock.json", b'{"version": 1}')
    store.put_bytes("lab-lock-state", ".pulumi/stacks/lab-lock.json", b'{"version": 2}')
    versions = store.client.list_object_versions(Bucket="lab-lock-state")["Versions"]
    assert len(versions) == 2
    oldest = min(versions, key=lambda v: v["LastModified"])
    retention = store.client.get_object_retention(
        Bucket="lab-lock-state", Key=oldest["Key"], VersionId=oldest["VersionId"]
    )
    assert retention["Retention"]["Mode"] == "GOVERNANCE"
    with pytest.raises(Exception, match="AccessDenied"):
        store.client.delete_object(Bucket="lab-lock-state", Key=oldest["Key"], VersionId=oldest["VersionId"])


def test_state_in_another_jurisdiction_is_refused_and_nothing_is_created(
    ceph: CephCluster, admin_user: S3User, tmp_path: Path
) -> None:
    stack = lab_stack(tmp_path, ceph.endpoint, "lab-uk", jurisdiction="UK")
    result = fjord(tmp_path, admin_user, "state", "init", stack)
    assert result.exit_code == 1
    assert "object_store.jurisdiction" in result.stderr
    assert "allowed: 'EEA'" in result.stderr
    names = [b["Name"] for b in store_for(ceph, admin_user).client.list_buckets()["Buckets"]]
    assert not [n for n in names if n.startswith("lab-uk")]


# --- artifacts ----------------------------------------------------------------------------------------


def test_artifacts_put_list_get_round_trip(ceph: CephCluster, admin_user: S3User, tmp_path: Path) -> None:
    stack = lab_stack(tmp_path, ceph.endpoint, "lab-art")
    assert fjord(tmp_path, admin_user, "state", "init", stack).exit_code == 0
    report = tmp_path / "dcgm-report.json"
    report.write_bytes(os.urandom(3 * MiB))
    put = artifacts(tmp_path, admin_user, stack, "put", str(report), "--kind", "validation", "--json")
    assert put.exit_code == 0, put.output
    stored = json.loads(put.stdout)[0]
    assert stored["key"].startswith("lab-art/validation/")
    assert stored["key"].endswith("-dcgm-report.json")
    assert stored["sha256"] == hashlib.sha256(report.read_bytes()).hexdigest()
    assert (stored["site"], stored["stack"], stored["kind"]) == ("lab-art", "lab-art", "validation")
    assert stored["git_commit"]
    assert stored["created"]

    listed = artifacts(tmp_path, admin_user, stack, "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [r["key"] for r in json.loads(listed.stdout)] == [stored["key"]]
    table = artifacts(tmp_path, admin_user, stack, "list")
    assert "dcgm-report.json" in table.stdout

    dest = tmp_path / "back.json"
    got = artifacts(tmp_path, admin_user, stack, "get", stored["key"], "-o", str(dest))
    assert got.exit_code == 0, got.output
    assert dest.read_bytes() == report.read_bytes()

    # Content changed behind fjord's back (metadata kept): `get` refuses it and leaves no file.
    store = store_for(ceph, admin_user)
    store.client.put_object(
        Bucket="lab-art-artifacts", Key=stored["key"], Body=b"tampered", Metadata={SHA256_META: stored["sha256"]}
    )
    bad = artifacts(tmp_path, admin_user, stack, "get", stored["key"], "-o", str(tmp_path / "bad.json"))
    assert bad.exit_code == EXIT_STORE
    assert "differs from the stored" in bad.stderr
    assert not (tmp_path / "bad.json").exists()
    with pytest.raises(ChecksumMismatch):
        store.get_bytes("lab-art-artifacts", stored["key"])


def test_artifacts_publish_uploads_plan_and_inventory(ceph: CephCluster, admin_user: S3User, tmp_path: Path) -> None:
    stack = lab_stack(tmp_path, ceph.endpoint, "lab-pub")
    assert fjord(tmp_path, admin_user, "state", "init", stack).exit_code == 0
    result = artifacts(tmp_path, admin_user, stack, "publish", "--json")
    assert result.exit_code == 0, result.output
    kinds = {r["kind"]: r for r in json.loads(result.stdout)}
    assert set(kinds) == {"plan", "inventory"}
    store = store_for(ceph, admin_user)
    plan = json.loads(store.get_bytes("lab-pub-artifacts", kinds["plan"]["key"]))
    inventory = json.loads(store.get_bytes("lab-pub-artifacts", kinds["inventory"]["key"]))
    assert plan["stack"] == "lab-pub"
    assert plan["resources"] > 0
    assert len(inventory) == plan["inventory_hosts"] > 0


# --- tenants ------------------------------------------------------------------------------------------


def test_tenant_buckets_users_and_quota_idempotent(ceph: CephCluster, admin_user: S3User, tmp_path: Path) -> None:
    stack = lab_stack(tmp_path, ceph.endpoint, "lab-ten")
    first = fjord(tmp_path, admin_user, "state", "tenants", stack, "--json")
    assert first.exit_code == 0, first.output
    rows = json.loads(first.stdout)
    buckets = {r["bucket"]: r["created"] for r in rows if "bucket" in r}
    assert buckets == {"lab-ten-platform-datasets": True, "lab-ten-platform-checkpoints": True}
    store = store_for(ceph, admin_user)
    assert store.bucket_owner("lab-ten-platform-datasets") == "lab-ten-platform"
    quota = store.user_quota("lab-ten-platform")
    assert quota["enabled"] is True
    assert quota["max_size"] == 10 * 10**12  # object_quota_tb: 10 in the dev site
    info = json.loads(ceph.admin("user", "info", "--uid=lab-ten-platform"))
    assert info["keys"] == []  # fjord creates no keys for tenants: no secret to leak

    again = fjord(tmp_path, admin_user, "state", "tenants", stack, "--json")
    assert again.exit_code == 0, again.output
    assert all(not r.get("created", False) and not r.get("user_created", False) for r in json.loads(again.stdout))


@pytest.mark.parametrize(
    ("command", "stack", "bucket", "says"),
    [
        ("tenants", "lab-taken", "lab-taken-platform-datasets", "belongs to user 'someone-else'"),
        ("init", "lab-grab", "lab-grab-state", "belongs to another user"),
    ],
)
def test_bucket_taken_by_someone_else_is_a_clear_error(
    ceph: CephCluster,
    admin_user: S3User,
    other_user: S3User,
    tmp_path: Path,
    command: str,
    stack: str,
    bucket: str,
    says: str,
) -> None:
    lab_stack(tmp_path, ceph.endpoint, stack)
    store_for(ceph, other_user).ensure_bucket(bucket)
    result = fjord(tmp_path, admin_user, "state", command, stack)
    assert result.exit_code == EXIT_STORE
    line = result.stderr.strip()
    assert f"bucket '{bucket}' at {ceph.endpoint}" in line
    assert says in line
    assert "Traceback" not in result.output
    with pytest.raises(BucketTaken):
        store_for(ceph, admin_user).ensure_bucket(bucket)


# --- faults -------------------------------------------------------------------------------------------


def test_endpoint_down_is_a_clear_error(admin_user: S3User, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stack = lab_stack(tmp_path, f"http://127.0.0.1:{port}", "lab-down", max_attempts=2)
    result = fjord(tmp_path, admin_user, "state", "init", stack)
    assert result.exit_code == EXIT_STORE
    assert f"S3 endpoint http://127.0.0.1:{port} is unreachable after 2 attempts" in result.stderr
    store = ObjectStore(
        f"http://127.0.0.1:{port}",
        S3Credentials(admin_user.access_key, admin_user.secret_key),
        settings=TransferSettings(max_attempts=1),
    )
    with pytest.raises(EndpointUnreachable):
        store.check()


def test_wrong_credentials_are_a_clear_error(ceph: CephCluster, admin_user: S3User, tmp_path: Path) -> None:
    stack = lab_stack(tmp_path, ceph.endpoint, "lab-creds")
    wrong = S3User(admin_user.uid, admin_user.access_key, "not-the-secret-" + "x" * 25)
    result = fjord(tmp_path, wrong, "state", "init", stack)
    assert result.exit_code == EXIT_STORE
    assert f"rejected access key {admin_user.access_key} (SignatureDoesNotMatch)" in result.stderr
    assert wrong.secret_key not in result.output
    unknown = S3User("nobody", "FJNOSUCHKEY000000000", "whatever-secret-value-123")
    with pytest.raises(CredentialsRejected, match="InvalidAccessKeyId"):
        store_for(ceph, unknown).check()
    missing = fjord(tmp_path, None, "state", "init", stack)
    assert missing.exit_code == 1
    assert "FJORD_S3_ACCESS_KEY_ID" in missing.stderr


def test_rgw_restart_during_multipart_upload(ceph: CephCluster, admin_user: S3User, tmp_path: Path) -> None:
    """RGW is killed while a part is on the wire and started again: retries finish the upload, and every
    object that was acknowledged meanwhile reads back byte for byte."""
    store = store_for(
        ceph, admin_user, max_attempts=12, multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=2
    )
    store.ensure_bucket("fault-restart")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(48 * MiB))
    in_flight, restarted = threading.Event(), threading.Event()
    sent = [0]

    def progress(n: int) -> None:
        sent[0] += n
        if sent[0] >= 4 * MiB and not in_flight.is_set():
            in_flight.set()
            restarted.wait(120)  # hold this part mid-request while RGW goes away and comes back

    part_sends = [0]

    def count_part(**_: Any) -> None:
        part_sends[0] += 1

    store.client.meta.events.register("before-send.s3.UploadPart", count_part)
    results: dict[str, Any] = {}
    acknowledged: dict[str, bytes] = {}
    stop = threading.Event()

    def upload_big() -> None:
        try:
            results["big"] = store.put_file("fault-restart", "big.bin", big, {"site": "lab"}, progress)
        except Exception as exc:
            results["big"] = exc

    def upload_small() -> None:
        i = 0
        while not stop.is_set():
            data = os.urandom(256 * 1024)
            try:
                store.put_bytes("fault-restart", f"small/{i:04d}", data)
                acknowledged[f"small/{i:04d}"] = data
            except Exception as exc:
                results.setdefault("small_errors", []).append(exc)
            i += 1

    threads = [threading.Thread(target=upload_big), threading.Thread(target=upload_small)]
    for t in threads:
        t.start()
    assert in_flight.wait(60)
    ceph.stop_rgw()
    time.sleep(1)
    ceph.start_rgw()
    restarted.set()
    threads[0].join(300)
    stop.set()
    threads[1].join(300)

    assert not isinstance(results["big"], Exception), results["big"]
    assert results["big"].size == big.stat().st_size
    head = store.client.head_object(Bucket="fault-restart", Key="big.bin")
    assert head["ETag"].endswith('-6"')  # 6 parts of 8 MiB: it was a multipart upload
    assert part_sends[0] > 6  # and at least one part was sent again after the restart
    back = tmp_path / "back.bin"
    store.get_file("fault-restart", "big.bin", back)
    assert back.read_bytes() == big.read_bytes()
    assert acknowledged
    for key, data in acknowledged.items():
        assert store.get_bytes("fault-restart", key) == data, key
    # Whatever failed failed with a clear fjord error, not a raw botocore one.
    for exc in results.get("small_errors", []):
        assert isinstance(exc, EndpointUnreachable), repr(exc)


def test_checksum_is_verified_on_upload(ceph: CephCluster, admin_user: S3User) -> None:
    """Every PutObject/UploadPart carries a Content-MD5 that RGW verifies: a corrupted body is refused."""
    store = store_for(ceph, admin_user)
    store.ensure_bucket("fault-digest")
    sent: list[Any] = []

    def record(request: Any, **_: Any) -> None:
        sent.append(request.headers.get("Content-MD5"))

    store.client.meta.events.register("before-send.s3.PutObject", record)
    store.put_bytes("fault-digest", "ok", b"payload")
    assert [v.decode() if isinstance(v, bytes) else v for v in sent] == [base64_md5(b"payload")]

    def corrupt(params: dict[str, Any], **_: Any) -> None:
        params["body"] = b"pay1oad"  # the body changes after the checksum was taken

    store.client.meta.events.register("before-call.s3.PutObject", corrupt)
    with pytest.raises(ChecksumMismatch, match="BadDigest"):
        store.put_bytes("fault-digest", "bad", b"payload")


def base64_md5(data: bytes) -> str:
    import base64

    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


# --- secrets ------------------------------------------------------------------------------------------


def test_secret_key_never_appears_in_output_errors_or_artifacts(
    ceph: CephCluster, admin_user: S3User, tmp_path: Path
) -> None:
    # The stack also holds its credentials as Pulumi secrets (ciphertext the offline commands cannot decrypt).
    encrypted = {k: {"secure": CIPHERTEXT} for k in ("fjord:bmcPassword", "fjord:s3SecretAccessKey")}
    stack = lab_stack(tmp_path, ceph.endpoint, "lab-sec", config=encrypted)
    secret = admin_user.secret_key
    report = tmp_path / "report.txt"
    report.write_text("node ok\n")
    runs = [
        fjord(tmp_path, admin_user, "state", "init", stack),
        fjord(tmp_path, admin_user, "state", "init", stack, "--json"),
        fjord(tmp_path, admin_user, "state", "tenants", stack),
        artifacts(tmp_path, admin_user, stack, "put", str(report)),
        artifacts(tmp_path, admin_user, stack, "publish", "--json"),
        artifacts(tmp_path, admin_user, stack, "list", "--json"),
        artifacts(tmp_path, admin_user, stack, "get", "lab-sec/report/nope", "-o", str(tmp_path / "x")),
        fjord(tmp_path, S3User("x", admin_user.access_key, secret[::-1]), "state", "init", stack),
    ]
    assert [r.exit_code for r in runs] == [0, 0, 0, 0, 0, 0, EXIT_STORE, EXIT_STORE]
    for r in runs:
        for needle in (secret, secret[::-1], CIPHERTEXT):
            assert needle not in r.output
    store = store_for(ceph, admin_user)
    assert secret not in repr(store)
    assert secret not in repr(S3Credentials(admin_user.access_key, secret))
    listed = store.list("lab-sec-artifacts")
    # The uploaded report, and the published plan and inventory: read back whole, metadata and body.
    assert sorted(o.key.split("/")[1] for o in listed) == ["inventory", "plan", "report"]
    for o in listed:
        body = store.get_bytes("lab-sec-artifacts", o.key)
        assert body
        for needle in (secret, CIPHERTEXT):
            assert needle not in json.dumps(o.metadata)
            assert needle.encode() not in body
