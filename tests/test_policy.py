"""fjord's policy rules (fjord.policy): each rule passes the repository's stacks and fails a site that breaks it,
naming the rule, the field path and the value; the settings file; `fjord plan` running them (exit 6)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from fjord.policy import MANDATORY, RULES, Change, PolicyInput, PolicySettings, evaluate, load_settings, policy_input
from fjord.policy.rules import (
    air_gap_images,
    blast_radius,
    bmc_tls,
    data_residency,
    data_residency_unproven,
    no_bmc_exposure,
    no_plaintext_credentials,
    pinned_versions,
    tenant_pod_security,
)
from fjord.sizing.site import size_site
from fjord.spec.errors import SiteError
from fjord.spec.load import parse_stack_doc, read_stack
from fjord.spec.models import Site

from .conftest import STACKS, stack_site

REPO = STACKS.parent
SETTINGS = load_settings(REPO / "policy" / "config.yaml")


def inp(raw: dict[str, Any], stack: str = "test", change: Change | None = None, **config: Any) -> PolicyInput:
    site = Site.model_validate(raw)
    cfg = parse_stack_doc(stack, {"config": {"fjord:site": raw, **config}})
    return policy_input(stack, site, size_site(site), cfg, change=change, settings=SETTINGS)


@pytest.mark.parametrize("stack", ["dev", "uk", "narvik"])
def test_the_repository_stacks_pass_every_mandatory_rule(stack: str) -> None:
    cfg = read_stack(stack, STACKS)
    site = Site.model_validate(cfg.site)
    report = evaluate(policy_input(stack, site, size_site(site), cfg, settings=SETTINGS))
    assert report.passed, report.lines()
    assert {r.rule for r in report.results} == {r.name for r in RULES}
    assert next(r for r in report.results if r.rule == "blast-radius").status == "skipped"


def test_every_rule_is_an_importable_function_with_a_severity() -> None:
    names = [r.name for r in RULES]
    assert len(names) == len(set(names)) >= 9
    assert all(r.severity in ("advisory", "mandatory") for r in RULES)
    assert {r.name for r in RULES if r.severity == MANDATORY} >= {
        "data-residency",
        "no-plaintext-credentials",
        "pinned-versions",
        "no-bmc-exposure",
        "blast-radius",
        "tenant-pod-security",
        "air-gap-images",
    }


def test_residency_fails_an_object_tier_in_another_jurisdiction() -> None:
    raw = stack_site("uk")
    raw["storage"][1]["endpoint"] = "https://s3.frankfurt.fjord.example"
    found = data_residency(inp(raw))
    assert {v.path for v in found} == {"object_store.tier (objects)", "storage[1].endpoint"}
    assert all("EU" in v.message and "allowed: a host in UK" in v.message for v in found)
    report = evaluate(inp(raw))
    assert not report.passed
    assert [r.rule for r in report.mandatory_failed] == ["data-residency"]


def test_residency_fails_an_air_gap_registry_abroad_and_reports_unknown_hosts() -> None:
    raw = stack_site("narvik")
    raw["air_gap"]["registry"] = "registry.london.fjord.example/nvidia"
    assert [(v.path, v.value) for v in data_residency(inp(raw))] == [
        ("air_gap.registry", "registry.london.fjord.example/nvidia")
    ]
    raw["air_gap"]["registry"] = "registry.elsewhere.example/nvidia"
    assert data_residency(inp(raw)) == []
    unproven = data_residency_unproven(inp(raw))
    assert [v.value for v in unproven] == ["registry.elsewhere.example/nvidia"]


def test_plaintext_credentials_are_found_and_never_shown() -> None:
    raw = stack_site("narvik")
    # The site's URL fields refuse a user or password at validation (fjord.spec.models._url); a free-form value
    # such as a BIOS attribute can still hold one, and so can what fjord builds from the site: the policy finds them.
    boot = "https://mirror:hunter2@mirror.narvik.fjord.example/boot.efi"
    raw["bmc"] = {"bios": {"AdminPassword": "hunter3", "HttpBootUri": boot}}
    base = inp(raw, **{"aws:secretKey": "hunter4", "aws:region": "eu-north-1"})
    plat = base.platforms[0]
    rel = plat.releases[0]
    leaky = replace(rel, values={**rel.values, "repoUrl": "https://mirror:hunter5@charts.narvik.fjord.example"})
    bad = replace(base, platforms=(replace(plat, releases=(leaky, *plat.releases[1:])), *base.platforms[1:]))
    found = no_plaintext_credentials(bad)
    assert {v.path for v in found} == {
        "aws:secretKey",
        "bmc.bios.AdminPassword",
        "bmc.bios.HttpBootUri",
        f"{plat.cluster}: release {rel.name} values.repoUrl",
    }
    assert "hunter" not in json.dumps(evaluate(bad).as_dict())
    assert "hunter" not in "".join(evaluate(bad).lines())
    secret = inp(stack_site("uk"), **{"aws:secretKey": {"secure": "v1:abc"}})
    assert no_plaintext_credentials(secret) == []


def test_pinned_versions_fail_a_floating_chart_or_image() -> None:
    base = inp(stack_site("uk"))
    plat = base.platforms[0]
    rel = plat.releases[0]
    floating = replace(rel, chart=replace(rel.chart, version="latest"), values={**rel.values, "image": "nvcr.io/x/y"})
    objects = (*plat.objects, {"kind": "ConfigMap", "metadata": {"name": "x"}, "spec": {"version": "latest"}})
    bad = replace(base, platforms=(replace(plat, releases=(floating, *plat.releases[1:]), objects=objects),))
    found = pinned_versions(bad)
    assert [v.value for v in found] == ["latest", "nvcr.io/x/y", "latest"]
    assert found[0].path.endswith(f"release {rel.name}.chart.version")
    assert pinned_versions(base) == []


def test_no_bmc_exposure_fails_public_bmcs_and_tenant_policies_reaching_them() -> None:
    raw = stack_site("uk")
    raw["ip_plan"]["bmc"] = "8.20.0.0/20"
    found = no_bmc_exposure(inp(raw))
    assert [(v.path, v.value) for v in found] == [("ip_plan.bmc", "8.20.0.0/20")]
    base = inp(stack_site("uk"))
    plat = base.platforms[0]
    leak = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "leak", "namespace": "tenant-x"},
        "spec": {"egress": [{"to": [{"ipBlock": {"cidr": "10.20.1.0/24"}}]}]},
    }
    found = no_bmc_exposure(replace(base, platforms=(replace(plat, objects=(*plat.objects, leak)),)))
    assert [v.value for v in found] == ["10.20.1.0/24"]
    assert "BMC network 10.20.0.0/20" in found[0].message


def test_bmc_tls_is_advisory() -> None:
    raw = stack_site("uk")
    raw["bmc"] = {"scheme": "http", "verify_tls": False}
    report = evaluate(inp(raw))
    assert report.passed
    assert [v.path for v in bmc_tls(inp(raw))] == ["bmc.scheme", "bmc.verify_tls"]
    assert "bmc-tls" in [r.rule for r in report.advisory_failed]
    lab = stack_site("uk")
    lab["bmc"] = {"scheme": "http", "endpoint": "http://127.0.0.1:8000"}
    assert bmc_tls(inp(lab)) == []


def test_blast_radius_fails_moves_and_too_many_restarts() -> None:
    raw = stack_site("uk")
    calm = Change(base_nodes=639, added=32, restarted=60, removed=3)
    assert blast_radius(inp(raw, change=calm)) == []
    moved = Change(base_nodes=639, moved=(("uk-b200-su000-n001", "bmc", "10.20.2.1", "10.20.3.1"),))
    assert [(v.path, v.value) for v in blast_radius(inp(raw, change=moved))] == [
        ("node uk-b200-su000-n001.bmc", "10.20.2.1 -> 10.20.3.1")
    ]
    wide = Change(base_nodes=639, restarted=60, removed=4)
    (v,) = blast_radius(inp(raw, change=wide))
    assert "64 restarted or removed" in v.value
    assert "at most 63" in v.message
    report = evaluate(inp(raw, change=wide))
    assert [r.rule for r in report.mandatory_failed] == ["blast-radius"]


def test_tenant_namespaces_must_be_restricted() -> None:
    base = inp(stack_site("uk"))
    plat = base.platforms[0]
    ns = copy.deepcopy(next(n for n in plat.namespaces if n["metadata"]["name"].startswith("tenant-")))
    ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "baseline"
    others = tuple(n for n in plat.namespaces if n["metadata"]["name"] != ns["metadata"]["name"])
    found = tenant_pod_security(replace(base, platforms=(replace(plat, namespaces=(*others, ns)),)))
    assert [v.value for v in found] == ["baseline"]
    assert found[0].path.endswith("pod-security.kubernetes.io/enforce")
    missing = tenant_pod_security(replace(base, platforms=(replace(plat, namespaces=others),)))
    assert [v.value for v in missing] == ["(missing)"]


def test_air_gap_images_fail_an_upstream_image_on_an_air_gapped_site() -> None:
    base = inp(stack_site("narvik"))
    assert air_gap_images(base) == []
    plat = base.platforms[0]
    rogue = {"kind": "Deployment", "metadata": {"name": "rogue"}, "spec": {"image": "nvcr.io/nvidia/cuda:12.8.0"}}
    found = air_gap_images(replace(base, platforms=(replace(plat, objects=(*plat.objects, rogue)),)))
    assert [(v.value, v.path.split(": ")[1]) for v in found] == [
        ("nvcr.io/nvidia/cuda:12.8.0", "Deployment rogue.spec.image")
    ]
    assert air_gap_images(inp(stack_site("uk"))) == []  # not air-gapped: the rule does not apply


def test_settings_change_severity_disable_and_reject_unknown_rules(tmp_path: Path) -> None:
    raw = stack_site("uk")
    raw["bmc"] = {"scheme": "http"}
    strict = PolicySettings(enforcement={"bmc-tls": "mandatory", "driver-branch-floats": "disabled"})
    report = evaluate(replace(inp(raw), settings=strict))
    assert [r.rule for r in report.mandatory_failed] == ["bmc-tls"]
    assert next(r for r in report.results if r.rule == "driver-branch-floats").status == "skipped"
    bad = tmp_path / "config.yaml"
    bad.write_text(yaml.safe_dump({"enforcement": {"no-such-rule": "disabled"}}))
    with pytest.raises(SiteError, match=r"enforcement\.no-such-rule"):
        load_settings(bad)
    bad.write_text(yaml.safe_dump({"jurisdictions": {"US": ["x.example"]}}))
    with pytest.raises(SiteError, match="jurisdictions"):
        load_settings(bad)
    assert load_settings(tmp_path / "absent.yaml") == PolicySettings()


def test_plan_fails_a_mandatory_rule_with_exit_6_naming_it(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "config.yaml").write_text((REPO / "policy" / "config.yaml").read_text())
    raw = stack_site("uk")
    raw["storage"][1]["endpoint"] = "https://s3.frankfurt.fjord.example"
    (stacks / "Pulumi.uk.yaml").write_text(yaml.safe_dump({"config": {"fjord:site": raw}}))
    shutil.copy(STACKS / "Pulumi.uk.alloc.yaml", stacks)  # the program requires the stack's allocation record
    cmd = [sys.executable, "-m", "fjord", "plan", "uk", "--stacks-dir", str(stacks), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 6, proc.stderr
    assert "uk: policy data-residency (mandatory): storage[1].endpoint" in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["plans"][0]["policy"]["mandatory_failed"] == ["data-residency"]
    # Without the settings nothing places frankfurt anywhere: the plan passes and says so (advisory).
    (tmp_path / "policy" / "config.yaml").unlink()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "data-residency-unproven" in json.loads(proc.stdout)["plans"][0]["policy"]["advisory_failed"]
