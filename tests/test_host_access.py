"""`host_access`: the SSH user fjord logs in as and how it becomes root, from the site to the inventory."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fjord.hosts import build_inventory
from fjord.hosts.inventory import site_vars
from fjord.sizing.site import size_site
from fjord.spec.errors import SiteError
from fjord.spec.load import default_site, load_site


def _site(access: dict[str, Any] | None) -> dict[str, Any]:
    raw = copy.deepcopy(default_site())
    if access is not None:
        raw["host_access"] = access
    return raw


def test_a_site_without_host_access_keeps_its_inventory() -> None:
    variables = site_vars(load_site(_site(None)))
    assert not {k for k in variables if k.startswith("ansible_")}


def test_a_non_root_user_becomes_root_with_sudo() -> None:
    site = load_site(_site({"ssh_user": "ops"}))
    variables = site_vars(site)
    assert variables["ansible_user"] == "ops"
    assert variables["ansible_become"] is True
    assert variables["ansible_become_method"] == "sudo"
    data = build_inventory(site, size_site(site)).data  # on the site group, so every host gets them
    site_group = data["all"]["children"][f"site_{site.name}"]
    assert site_group["vars"]["ansible_user"] == "ops"


def test_root_needs_no_become_and_the_method_can_be_chosen() -> None:
    assert "ansible_become" not in site_vars(load_site(_site({"ssh_user": "root"})))
    variables = site_vars(load_site(_site({"ssh_user": "ops", "become_method": "doas"})))
    assert variables["ansible_become_method"] == "doas"


@pytest.mark.parametrize(
    ("access", "path", "words"),
    [
        ({"ssh_user": "ops", "become": False}, "host_access.become", "must act as root"),
        ({"ssh_user": "Ops Team"}, "host_access.ssh_user", "a POSIX user name"),
        ({"ssh_user": "-x"}, "host_access.ssh_user", "a POSIX user name"),
        ({"ssh_user": "ops", "become_method": "pbrun"}, "host_access.become_method", "sudo"),
        ({"ssh_user": "ops", "password": "x"}, "host_access", ""),
    ],
)
def test_bad_host_access_is_rejected_at_its_path(access: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(SiteError) as exc:
        load_site(_site(access))
    lines = exc.value.lines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(path), lines
    assert words in lines[0]
