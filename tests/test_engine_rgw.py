"""The real Pulumi engine with its state in the site's own object store: a single-node Ceph RGW
(tests/ceph_cluster.py). `fjord state init` makes the site's state bucket; `fjord up` without --backend then
uses it (the URL `fjord state init` prints, with the S3 keys fjord resolves); the state objects are read back
from RGW to check that the BMC password is stored only as ciphertext."""

from __future__ import annotations

from pathlib import Path

import pytest

from fjord.adapters.s3 import ObjectStore, S3Credentials

from .ceph_cluster import CephCluster
from .engine_env import make_project
from .redfish_lab import PASSWORD as BMC_PASSWORD
from .redfish_lab import Emulator
from .test_engine import NODES, POOL, changes, slurm_site, wait_on

pytestmark = [pytest.mark.engine, pytest.mark.bmc, pytest.mark.rgw, pytest.mark.usefixtures("engine")]


def test_state_in_the_sites_own_rgw(tmp_path: Path, ceph: CephCluster, dev_bmcs: Emulator) -> None:
    user = ceph.create_user("fjord-engine")
    keys = {"FJORD_S3_ACCESS_KEY_ID": user.access_key, "FJORD_S3_SECRET_ACCESS_KEY": user.secret_key}
    project = make_project(tmp_path, "rgw", backend="")
    site = slurm_site(dev_bmcs.url)
    site["object_store"] = {"endpoint": ceph.endpoint, "jurisdiction": "EEA", "max_attempts": 3}
    project.write_stack(site, configureHosts=False)

    init = project.fjord_raw("state", "init", **keys)
    assert init.returncode == 0, init.stderr
    bucket = "dev-state"
    assert f"s3://{bucket}?endpoint=" in init.stdout
    login = init.stdout.split("pulumi login '", 1)[1].split("'", 1)[0]
    aws = {"AWS_ACCESS_KEY_ID": user.access_key, "AWS_SECRET_ACCESS_KEY": user.secret_key}
    project.backend = login
    project.init(bmc_password=BMC_PASSWORD, **aws)

    # No --backend and no PULUMI_BACKEND_URL: fjord uses the site's own state bucket.
    up = project.report("up", PULUMI_BACKEND_URL="", **keys)
    assert up["ok"] is True
    assert up["by_type"][POOL] == {"create": 1}
    wait_on(dev_bmcs, NODES)
    assert changes(project.report("preview", PULUMI_BACKEND_URL="", **keys)) == []

    store = ObjectStore(ceph.endpoint, S3Credentials(user.access_key, user.secret_key))
    objects = [o.key for o in store.list(bucket, ".pulumi/stacks/", with_metadata=False)]
    assert any(k.endswith("rgw.json") for k in objects), objects
    text = "\n".join(store.get_bytes(bucket, k).decode() for k in objects if k.endswith(".json"))
    assert POOL in text
    assert "ciphertext" in text
    assert BMC_PASSWORD not in text

    project.write_stack(site, configureHosts=False, allowRemove=["h100"])  # clusters are protected until listed
    assert project.report("up", PULUMI_BACKEND_URL="", **keys)["ok"] is True
    gone = project.report("destroy", PULUMI_BACKEND_URL="", **keys)
    assert gone["ok"] is True
    assert gone["by_type"][POOL] == {"delete": 1}
