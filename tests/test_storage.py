"""Storage tiers as the platform sees them (pure offers, and the Storage component under the mocks), and
how the CLI finds S3 credentials without ever showing the secret."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pulumi
import pytest

from fjord.adapters.s3 import ObjectStore, S3Credentials
from fjord.cli.state import pulumi_login_url, resolve_credentials
from fjord.components.storage import Storage, StorageArgs
from fjord.sizing.storage import tier_offers
from fjord.spec.errors import SiteError
from fjord.spec.load import load_site, parse_stack_doc

from .conftest import stack_site

SECRET = "s3cr3t-Never-Printed-0123456789abcdef"
CIPHERTEXT = "v1:Q2lwaGVydGV4dE5ldmVyVG9CZVByaW50ZWQ="


def test_tier_offers_for_the_platform() -> None:
    spec = load_site(stack_site("uk"))
    offers = {o.name: o for o in tier_offers(spec.storage)}
    vast, objects = offers["vast"], offers["objects"]
    assert (vast.interface, vast.storage_class, vast.default) == ("csi-filesystem", "vast", True)
    assert "ReadWriteMany" in vast.access_modes
    assert vast.volume_modes == ("Filesystem",)
    assert (objects.interface, objects.storage_class, objects.default) == ("s3", None, False)
    assert objects.endpoint == "https://s3.uk.fjord.example"
    assert objects.access_modes == ()


def test_block_tier_is_the_default_class() -> None:
    raw = stack_site("uk")
    raw["storage"].append(
        {"name": "ceph-rbd", "kind": "block", "capacity_pb": 1, "hall": "hall-1", "racks": 2, "power_kw": 20}
    )
    offers = tier_offers(load_site(raw).storage)
    assert [o.name for o in offers if o.default] == ["ceph-rbd"]
    rbd = offers[-1]
    assert rbd.volume_modes == ("Filesystem", "Block")
    assert rbd.access_modes[0] == "ReadWriteOnce"


@pulumi.runtime.test
def test_storage_component_outputs() -> Any:
    spec = load_site(stack_site("narvik"))
    storage = Storage("narvik-storage", StorageArgs(spec.storage))
    lustre = storage.tier_resources["lustre"]

    def check(args: list[Any]) -> None:
        offers, tiers, lustre_class, lustre_kind = args
        assert [o["name"] for o in offers] == ["lustre", "objects", "block"]
        lustre_offer, objects_offer, block_offer = offers
        assert lustre_offer["storage_class"] == "lustre"
        assert "ReadWriteMany" in lustre_offer["access_modes"]
        assert objects_offer["storage_class"] is None
        assert objects_offer["endpoint"] == "https://s3.narvik.fjord.example"
        assert [o["default"] for o in offers] == [False, False, True]  # block is the default class
        assert block_offer["volume_modes"] == ["Filesystem", "Block"]
        assert set(lustre_offer) == {
            "name",
            "kind",
            "capacity_pb",
            "hall",
            "endpoint",
            "interface",
            "storage_class",
            "access_modes",
            "volume_modes",
            "default",
        }
        json.dumps(offers)  # plain data for the platform
        assert tiers["lustre"]["capacity_pb"] == 100
        assert (lustre_class, lustre_kind) == ("lustre", "parallel-fs")

    return pulumi.Output.all(storage.offers, storage.tiers, lustre.storage_class, lustre.kind).apply(check)


# --- credentials --------------------------------------------------------------------------------------


def _stack(config: dict[str, Any]) -> Any:
    return parse_stack_doc("uk", {"config": {"fjord:site": stack_site("uk"), **config}}, Path("Pulumi.uk.yaml"))


def test_credentials_from_the_environment_first() -> None:
    cfg = _stack({"fjord:s3AccessKeyId": "FROMSTACK", "fjord:s3SecretAccessKey": {"secure": CIPHERTEXT}})
    env = {"FJORD_S3_ACCESS_KEY_ID": "AK", "FJORD_S3_SECRET_ACCESS_KEY": SECRET, "AWS_ACCESS_KEY_ID": "other"}
    creds = resolve_credentials(cfg, env)
    assert (creds.access_key_id, creds.secret_access_key) == ("AK", SECRET)
    assert SECRET not in repr(creds)
    assert resolve_credentials(cfg, {"AWS_ACCESS_KEY_ID": "A2", "AWS_SECRET_ACCESS_KEY": SECRET}).access_key_id == "A2"


def test_plain_secret_in_the_stack_is_refused_without_showing_it() -> None:
    # Refused as the stack is read, before any credentials are looked for (the environment's included).
    with pytest.raises(SiteError) as caught:
        _stack({"fjord:s3AccessKeyId": "AK", "fjord:s3SecretAccessKey": SECRET})
    assert "fjord:s3SecretAccessKey: is a credential stored in plain text" in str(caught.value)
    assert "pulumi config set --secret fjord:s3SecretAccessKey" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_encrypted_secret_without_the_pulumi_cli_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    cfg = _stack({"fjord:s3AccessKeyId": "AK", "fjord:s3SecretAccessKey": {"secure": CIPHERTEXT}})
    with pytest.raises(SiteError) as caught:
        resolve_credentials(cfg, {})
    assert "FJORD_S3_SECRET_ACCESS_KEY" in str(caught.value)
    assert CIPHERTEXT not in str(caught.value)


def test_no_credentials_at_all() -> None:
    with pytest.raises(SiteError, match="no S3 credentials"):
        resolve_credentials(_stack({}), {})


def test_client_repr_and_login_url_hold_no_secret() -> None:
    store = ObjectStore("https://s3.uk.fjord.example", S3Credentials("AK", SECRET))
    assert SECRET not in repr(store)
    assert "AK" in repr(store)
    target = load_site(stack_site("uk")).store()
    assert target is not None
    assert pulumi_login_url(target) == (
        "s3://uk-state?endpoint=s3.uk.fjord.example&s3ForcePathStyle=true&region=default"
    )


def test_a_cluster_left_by_a_killed_run_is_reaped(tmp_path: Path) -> None:
    """A leftover test cluster (its owner process gone) has its daemons killed and its dir removed."""
    import subprocess

    from .ceph_cluster import PREFIX, reap_leftovers

    dead = subprocess.Popen(["true"])
    dead.wait()
    daemon = subprocess.Popen(["sleep", "300"], start_new_session=True)
    left = tmp_path / f"{PREFIX}leftover"
    left.mkdir()
    (left / "owner.pid").write_text(str(dead.pid))
    (left / "pgid.rgw").write_text(str(daemon.pid))
    alive = tmp_path / f"{PREFIX}running"
    alive.mkdir()
    (alive / "owner.pid").write_text(str(os.getpid()))
    try:
        assert reap_leftovers(tmp_path) == [left]
        assert daemon.wait(timeout=10) == -9
        assert not left.exists()
        assert alive.exists()  # a cluster whose owner still runs is left alone
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
