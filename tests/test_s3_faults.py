"""Object-store faults: every boto3/s3transfer/botocore error class as a clean fjord error, and no multipart
upload left behind, against a real single-node Ceph RGW (tests/ceph_cluster.py) where the server matters.

- every exception class the three libraries define leaves `ObjectStore` as an `S3Error` (no server needed);
- `fjord artifacts put` with a wrong secret or into a bucket that does not exist, and the other `artifacts` and
  `state` commands with a wrong secret (`publish` uploads through `put`'s code): one line, exit 3, no traceback,
  no secret;
- a multipart upload that fails is aborted; one whose process is killed, or whose abort failed because RGW was
  gone, is aborted by the next run; RGW's own list of multipart uploads proves none is left.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import string
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import boto3.exceptions as b3ex
import botocore.exceptions as bex
import pytest
import s3transfer.exceptions as s3tex
import yaml
from typer.testing import CliRunner, Result

from fjord.adapters.s3 import (
    ChecksumMismatch,
    CredentialsRejected,
    EndpointUnreachable,
    NotFound,
    ObjectStore,
    S3Credentials,
    S3Error,
    TransferSettings,
    UploadJournal,
)
from fjord.cli.main import app
from fjord.cli.state import EXIT_STORE
from fjord.spec.load import default_site

from .ceph_cluster import CephCluster, S3User

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[1]


# --- every error class, no server needed --------------------------------------------------------------


def _instance(cls: type[BaseException]) -> BaseException:
    """An instance of any of the libraries' exception classes, with made-up values for its message fields."""
    if issubclass(cls, bex.ClientError):
        return cls({"Error": {"Code": "InternalError", "Message": "boom"}}, "PutObject")
    fmt = getattr(cls, "fmt", None)
    try:
        if isinstance(fmt, str) and issubclass(cls, bex.BotoCoreError):
            return cls(**{name: "x" for _, name, _, _ in string.Formatter().parse(fmt) if name})
        return cls("x")
    except TypeError:  # a constructor with other arguments: an instance whose message cannot even be formatted
        return cls.__new__(cls)


def _library_errors() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for module in (bex, b3ex, s3tex):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Exception) and not issubclass(cls, Warning) and cls.__module__ == module.__name__:
                found.append(cls)
    return found


def offline_store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(
        "http://127.0.0.1:9",
        S3Credentials("FJKEY", "offline-secret-value"),
        settings=TransferSettings(max_attempts=1),
        journal=UploadJournal(tmp_path / "journal.json"),
    )


def test_every_boto3_s3transfer_and_botocore_error_class_is_an_s3_error(tmp_path: Path) -> None:
    store = offline_store(tmp_path)
    classes = _library_errors()
    assert len(classes) > 50, "botocore alone defines more than 50"
    for cls in classes:
        exc = _instance(cls)
        with pytest.raises(S3Error) as caught, store._errors("upload", "bucket", "key"):
            raise exc
        text = str(caught.value)
        assert text.startswith("upload"), (cls, text)
        assert "\n" not in text
        assert "offline-secret-value" not in text


def _raise_wrapped(wrapper: BaseException, inner: BaseException) -> None:
    """Raise `wrapper` while handling `inner`, as boto3 does (its S3UploadFailedError has no explicit cause)."""
    try:
        raise inner
    except type(inner):
        raise wrapper  # noqa: B904 - the implicit context is what boto3 leaves


@pytest.mark.parametrize(
    ("inner", "expected", "says"),
    [
        (bex.ClientError({"Error": {"Code": "SignatureDoesNotMatch"}}, "PutObject"), CredentialsRejected, "FJKEY"),
        (bex.ClientError({"Error": {"Code": "InvalidAccessKeyId"}}, "UploadPart"), CredentialsRejected, "FJKEY"),
        (bex.ClientError({"Error": {"Code": "NoSuchBucket"}}, "PutObject"), NotFound, "does not exist"),
        (bex.ClientError({"Error": {"Code": "BadDigest"}}, "UploadPart"), ChecksumMismatch, "checksum"),
        (bex.EndpointConnectionError(endpoint_url="http://x"), EndpointUnreachable, "unreachable"),
        (bex.ReadTimeoutError(endpoint_url="http://x"), EndpointUnreachable, "did not answer"),
    ],
)
def test_boto3s_upload_error_is_unwrapped(
    tmp_path: Path, inner: BaseException, expected: type[S3Error], says: str
) -> None:
    store = offline_store(tmp_path)
    for wrapper in (b3ex.S3UploadFailedError("Failed to upload f to b/k: ..."), s3tex.RetriesExceededError(inner)):
        with pytest.raises(expected, match=says), store._errors("upload", "b", "k"):
            _raise_wrapped(wrapper, inner)


# --- against Ceph RGW ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def user(ceph: CephCluster) -> S3User:
    return ceph.create_user("fjord-faults")


def store_for(ceph: CephCluster, user: S3User, journal: Path, **settings: Any) -> ObjectStore:
    return ObjectStore(
        ceph.endpoint,
        S3Credentials(user.access_key, user.secret_key),
        settings=TransferSettings(**settings),
        journal=UploadJournal(journal),
    )


def lab_stack(folder: Path, endpoint: str, name: str) -> str:
    site = default_site()
    site["name"] = name
    site["object_store"] = {"endpoint": endpoint, "jurisdiction": "EEA", "max_attempts": 2}
    (folder / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": {"fjord:site": site}}), encoding="utf-8")
    return name


def fjord(folder: Path, user: S3User, secret: str | None, state: Path, *args: str) -> Result:
    env = {
        "FJORD_S3_ACCESS_KEY_ID": user.access_key,
        "FJORD_S3_SECRET_ACCESS_KEY": secret or user.secret_key,
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "FJORD_STATE_DIR": str(state),
    }
    return CliRunner().invoke(app, [*args, "--stacks-dir", str(folder)], env=env)


def clean_failure(result: Result, *secrets: str) -> str:
    """The command failed with exit 3 and one `error:` line, no traceback, no secret; returns stderr."""
    assert result.exit_code == EXIT_STORE, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for secret in secrets:
        assert secret not in result.output
    return result.stderr


@pytest.mark.rgw
def test_wrong_secret_is_a_clean_error_for_every_command(ceph: CephCluster, user: S3User, tmp_path: Path) -> None:
    stack = lab_stack(tmp_path, ceph.endpoint, "lab-wrongkey")
    state = tmp_path / "state"
    assert fjord(tmp_path, user, None, state, "state", "init", stack).exit_code == 0
    wrong = "Wr0ng-" + user.secret_key[:20]
    small = tmp_path / "report.json"
    small.write_text("{}", encoding="utf-8")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * MiB))  # above the 16 MiB multipart threshold
    for args in (
        ("artifacts", stack, "put", str(small)),
        ("artifacts", stack, "put", str(big)),
        ("artifacts", stack, "list"),
        ("artifacts", stack, "get", f"{stack}/report/x"),
        ("state", "init", stack),
        ("state", "tenants", stack),
    ):
        err = clean_failure(fjord(tmp_path, user, wrong, state, *args), wrong, user.secret_key)
        assert f"access key {user.access_key}" in err, (args, err)
        assert "rejected" in err or "refused" in err, (args, err)
    assert store_for(ceph, user, state / "j.json").open_uploads(f"{stack}-artifacts") == []


@pytest.mark.rgw
def test_artifacts_put_into_a_missing_bucket_says_how_to_create_it(
    ceph: CephCluster, user: S3User, tmp_path: Path
) -> None:
    stack = lab_stack(tmp_path, ceph.endpoint, "lab-nobucket")
    report = tmp_path / "report.json"
    report.write_text("{}", encoding="utf-8")
    err = clean_failure(fjord(tmp_path, user, None, tmp_path / "state", "artifacts", stack, "put", str(report)))
    assert f"{stack}-artifacts" in err
    assert "does not exist (NoSuchBucket)" in err
    assert f"fjord state init {stack}" in err
    listed = clean_failure(fjord(tmp_path, user, None, tmp_path / "state", "artifacts", stack, "list"))
    assert "does not exist" in listed


@pytest.mark.rgw
def test_a_failed_multipart_upload_is_aborted(ceph: CephCluster, user: S3User, tmp_path: Path) -> None:
    """The third part is corrupted on its way (RGW answers BadDigest): the upload fails with a clean error and
    RGW holds no open multipart upload afterwards; the journal is empty."""
    journal = tmp_path / "journal.json"
    store = store_for(ceph, user, journal, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=1)
    store.ensure_bucket("faults-abort")
    parts = [0]

    def corrupt(params: dict[str, Any], **_: Any) -> None:
        parts[0] += 1
        if parts[0] == 3:
            params["body"] = b"not the part"

    store.client.meta.events.register("before-call.s3.UploadPart", corrupt)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * MiB))
    with pytest.raises(ChecksumMismatch, match="BadDigest"):
        store.put_file("faults-abort", "big.bin", big)
    assert parts[0] >= 3
    assert store.open_uploads("faults-abort") == []
    assert UploadJournal(journal).entries() == []


KILLED_UPLOAD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from fjord.adapters.s3 import ObjectStore, S3Credentials, TransferSettings, UploadJournal
    endpoint, key_id, secret, journal, path = sys.argv[1:6]
    store = ObjectStore(endpoint, S3Credentials(key_id, secret), journal=UploadJournal(Path(journal)),
                        settings=TransferSettings(multipart_threshold=5 << 20, multipart_chunksize=5 << 20,
                                                  max_concurrency=1))
    def slow(n):
        print("sent", n, flush=True)
        time.sleep(0.5)
    store.put_file("faults-killed", "big.bin", Path(path), progress=slow)
    """
)


@pytest.mark.rgw
def test_a_killed_upload_is_aborted_by_the_rerun(ceph: CephCluster, user: S3User, tmp_path: Path) -> None:
    """`kill -9` in the middle of a multipart upload: RGW holds the upload open. The next `fjord artifacts put`
    aborts it (and says so), uploads its own file, and RGW holds no open upload afterwards."""
    state = tmp_path / "state"
    journal = state / "multipart-uploads.json"
    store = store_for(ceph, user, journal)
    store.ensure_bucket("faults-killed")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(30 * MiB))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_UPLOAD, ceph.endpoint, user.access_key, user.secret_key, str(journal), str(big)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the first part is on its way: the upload was created and journalled
        assert line.startswith("sent"), line + proc.stdout.read()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    left = store.open_uploads("faults-killed")
    assert [u["key"] for u in left] == ["big.bin"], "the killed process left its upload open"
    assert [e.upload_id for e in UploadJournal(journal).entries()] == [left[0]["upload_id"]]

    # The rerun: a stack whose artifacts bucket is faults-killed; `artifacts put` cleans up first.
    stack = lab_stack(tmp_path, ceph.endpoint, "lab-killed")
    doc = yaml.safe_load((tmp_path / f"Pulumi.{stack}.yaml").read_text())
    doc["config"]["fjord:site"]["object_store"]["artifacts_bucket"] = "faults-killed"
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    report = tmp_path / "report.json"
    report.write_text("{}", encoding="utf-8")
    rerun = fjord(tmp_path, user, None, state, "artifacts", stack, "put", str(report), "--json")
    assert rerun.exit_code == 0, rerun.output
    assert "aborted an unfinished upload of faults-killed/big.bin left by an earlier run" in rerun.stderr
    assert json.loads(rerun.stdout)[0]["key"].endswith("-report.json")
    assert store.open_uploads("faults-killed") == []
    assert UploadJournal(journal).entries() == []


@pytest.mark.rgw
def test_an_upload_whose_abort_failed_is_aborted_once_rgw_is_back(
    ceph: CephCluster, user: S3User, tmp_path: Path
) -> None:
    """RGW goes away in the middle of a multipart upload: the upload fails cleanly, its abort fails too (nobody
    answers), so the journal keeps it; with RGW back, the next run aborts it."""
    journal = tmp_path / "journal.json"
    settings: dict[str, Any] = {"multipart_threshold": 5 * MiB, "multipart_chunksize": 5 * MiB, "max_concurrency": 1}
    store = store_for(ceph, user, journal, max_attempts=2, connect_timeout_s=1, read_timeout_s=5, **settings)
    store.ensure_bucket("faults-gone")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * MiB))
    sent, stopped = [0], [False]

    def progress(n: int) -> None:
        sent[0] += n
        if sent[0] >= 5 * MiB and not stopped[0]:
            stopped[0] = True
            ceph.stop_rgw()

    try:
        with pytest.raises(EndpointUnreachable, match="unreachable"):
            store.put_file("faults-gone", "big.bin", big, progress=progress)
        entries = UploadJournal(journal).entries()
        assert [e.key for e in entries] == ["big.bin"], "the abort failed: the journal keeps the upload"
    finally:
        ceph.start_rgw()
    rerun = store_for(ceph, user, journal, **settings)
    left = rerun.open_uploads("faults-gone")
    assert [u["upload_id"] for u in left] == [entries[0].upload_id]
    assert [e.key for e in rerun.abort_left_uploads()] == ["big.bin"]
    assert rerun.open_uploads("faults-gone") == []
    assert UploadJournal(journal).entries() == []
