"""fjord.gitops: which stacks a change touches, in apply order (pure functions)."""

from __future__ import annotations

from pathlib import Path

from fjord.gitops.stacks import FileChange, apply_order, changed_stacks, is_core, stack_of

STACKS = ["dev", "uk", "narvik", "narvik-core"]


def test_a_stack_file_touches_its_stack_only() -> None:
    got = changed_stacks([FileChange("M", "stacks/Pulumi.uk.yaml")], STACKS)
    assert got.stacks == ("uk",)
    assert got.reasons == {"uk": ("stacks/Pulumi.uk.yaml",)}
    assert not got.shared
    assert not got.removed


def test_shared_files_touch_every_stack_core_first() -> None:
    for path in (
        "components/fjord/spec/default_site.yaml",
        "components/fjord/sizing/ipam.py",
        "playbooks/roles/nvidia_driver/tasks/main.yml",
        "pyproject.toml",
        "policy/config.yaml",
        "Pulumi.yaml",
    ):
        got = changed_stacks([FileChange("M", path), FileChange("M", "stacks/Pulumi.uk.yaml")], STACKS)
        assert got.stacks == ("narvik-core", "dev", "narvik", "uk"), path
        assert got.core == ("narvik-core",)
        assert got.rest == ("dev", "narvik", "uk")
        assert got.shared == (path,)
        assert got.reasons["uk"] == ("stacks/Pulumi.uk.yaml", path)


def test_docs_tests_and_ci_touch_nothing() -> None:
    changes = [
        FileChange("M", p)
        for p in ("README.md", "docs/gitops.md", "tests/test_cli.py", "bench/plan_scale.py", ".github/workflows/x.yml")
    ]
    assert changed_stacks(changes, STACKS).stacks == ()
    # A file that only looks like a stack file, in another folder, touches nothing either.
    assert changed_stacks([FileChange("A", "docs/Pulumi.uk.yaml")], STACKS).stacks == ()


def test_added_removed_and_renamed_stacks() -> None:
    got = changed_stacks(
        [
            FileChange("A", "stacks/Pulumi.oslo.yaml"),
            FileChange("D", "stacks/Pulumi.old.yaml"),
            FileChange("R", "stacks/Pulumi.bergen.yaml", old_path="stacks/Pulumi.bergen-old.yaml"),
        ],
        [*STACKS, "oslo", "bergen"],
    )
    assert got.stacks == ("bergen", "oslo")
    assert got.removed == ("bergen-old", "old")


def test_core_stacks_and_names() -> None:
    assert is_core("core")
    assert is_core("uk-core")
    assert not is_core("uk")
    assert not is_core("corex")
    assert apply_order(["uk", "b-core", "a", "core"]) == ["b-core", "core", "a", "uk"]
    assert stack_of("stacks/Pulumi.uk.yaml") == "uk"
    assert stack_of("stacks/Pulumi.uk.alloc.yaml") == "uk"  # the allocation record touches its stack
    assert stack_of("stacks/sub/Pulumi.uk.yaml") is None
    assert stack_of("stacks/Pulumi..yaml") is None


def test_the_comment_carries_the_marker_and_finds_itself_again() -> None:
    from fjord.gitops.comment import StackReview, comment_body, find_comment, stack_of_comment

    review = StackReview(
        "uk",
        "main (abc)",
        "HEAD (def)",
        ["site uk"],
        True,
        diff={"verdict": "safe", "totals": {"added": 32}, "clusters": [{"name": "b|200", "nodes_before": 1}]},
        plan={"resources": 106, "by_type": {"a": 2}},
        base_plan={"resources": 105, "by_type": {"a": 1}},
        policy={"mandatory_failed": [], "results": [{"rule": "r", "severity": "advisory", "status": "passed"}]},
    )
    body = comment_body(review)
    assert body.startswith("<!-- fjord-gitops stack=uk -->\n")
    assert stack_of_comment(body) == "uk"
    assert "ready to merge" in body
    assert "| b\\|200 |" in body  # a pipe in a value does not break the table
    assert "**106 resources** (+1 against the base's 105)" in body
    assert "| a | 1 | 2 | +1 |" in body
    comments = [
        {"id": 1, "body": "lgtm"},
        {"id": 2, "body": body},
        {"id": 3, "body": "<!-- fjord-gitops stack=uk-core -->"},
    ]
    assert find_comment(comments, "uk") == comments[1]
    assert find_comment(comments, "uk-core") == comments[2]
    assert find_comment(comments, "dev") is None
    blocked = comment_body(
        StackReview("uk", "b", "h", ["clusters[0].gpus: bad"], False, policy={"mandatory_failed": ["x"]})
    )
    assert "blocked (the site is rejected; mandatory policy failed: x)" in blocked
    assert "- clusters[0].gpus: bad" in blocked


def test_diff_document_to_policy_change() -> None:
    from fjord.gitops.diffs import change_from_diff

    doc = {
        "totals": {"added": 32, "removed": 2, "restarted": 100, "moved": 1},
        "clusters": [{"nodes_before": 127}, {"nodes_before": 512}],
        "moves": [{"node": "n1", "field": "bmc", "before": "10.0.0.1", "after": "10.0.1.1"}],
    }
    change = change_from_diff(doc)
    assert (change.base_nodes, change.added, change.removed, change.restarted) == (639, 32, 2, 100)
    assert change.moved == (("n1", "bmc", "10.0.0.1", "10.0.1.1"),)


def test_locks_live_and_stale_and_pending_operations() -> None:
    import datetime as dt

    from fjord.gitops.state import explain_state

    now = dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC)
    live = ("k1", {"username": "a", "hostname": "h", "pid": 1, "timestamp": "2026-12-06T11:30:00Z"})
    stale = ("k2", {"username": "b", "hostname": "h2", "pid": 2, "timestamp": "2026-12-06T01:00:00+00:00"})
    pending = {"checkpoint": {"latest": {"pending_operations": [{"resource": {"urn": "u"}, "type": "updating"}]}}}
    found = explain_state("uk", [live, stale], pending, now)
    assert [f.kind for f in found] == ["lock", "stale-lock", "pending-operation"]
    assert "wait" in found[0].fix
    assert "pulumi cancel --stack uk" in found[1].fix
    assert "pulumi refresh --stack uk" in found[2].fix
    assert explain_state("uk", [], {"checkpoint": {"latest": {}}}, now) == []


def test_drift_compares_the_record_with_now() -> None:
    from fjord.gitops.drift import applied_record, drift, spec_digest

    digest = spec_digest({"name": "uk"}, {"fjord:bmcPassword": "[secret]"})
    was = applied_record("uk", "c0ffee", digest, {"resources": 3, "by_type": {"a": 2, "b": 1}})
    assert drift(was, applied_record("uk", "d00d", digest, {"resources": 3, "by_type": {"b": 1, "a": 2}})) == []
    moved = applied_record("uk", "d00d", spec_digest({"name": "uk2"}, {}), {"by_type": {"a": 3}})
    found = drift(was, moved)
    assert found[0].startswith("the spec differs from the one applied at c0ffee")
    assert found[1:] == ["a: 2 applied, 3 asked for now", "b: 1 applied, 0 asked for now"]


def test_forge_from_the_ci_environment_never_shows_the_token(tmp_path: Path) -> None:
    import json

    import pytest

    from fjord.adapters.forge import ForgeError, from_environment

    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 42}}))
    gh = from_environment({"GITHUB_REPOSITORY": "o/r", "GITHUB_TOKEN": "tok-123", "GITHUB_EVENT_PATH": str(event)})
    assert (gh.kind, gh.project, gh.number, gh.api) == ("github", "o/r", 42, "https://api.github.com")
    assert "tok-123" not in repr(gh)
    gl = from_environment(
        {"GITLAB_CI": "true", "CI_API_V4_URL": "https://gl/api/v4", "CI_PROJECT_ID": "9", "FJORD_GITLAB_TOKEN": "t"},
        number=5,
    )
    assert (gl.kind, gl.project, gl.number) == ("gitlab", "9", 5)
    with pytest.raises(ForgeError, match="FJORD_GITLAB_TOKEN"):
        from_environment({"GITLAB_CI": "true", "CI_API_V4_URL": "u", "CI_PROJECT_ID": "9", "CI_MERGE_REQUEST_IID": "1"})
    with pytest.raises(ForgeError, match="neither GitHub Actions nor GitLab CI"):
        from_environment({})


def test_odd_file_names_never_become_stack_names() -> None:
    assert stack_of("stacks/Pulumi.$(touch x).yaml") is None
    assert stack_of("stacks/Pulumi.a b.yaml") is None
    assert stack_of("stacks/Pulumi.uk.alloc.yaml") == "uk"  # the stack's allocation record touches the stack


def test_an_engine_preview_that_changes_anything_is_drift(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from fjord.cli.main import app
    from fjord.gitops.drift import preview_drift

    clean = {"ok": True, "changes": {"same": 37}, "steps": []}
    assert preview_drift(clean) == []
    step = {"urn": "urn:pulumi:dev::fjord::pulumi-python:dynamic/baremetal:NodePool::dev-h100-su000-baremetal"}
    drifted = {"ok": True, "changes": {"update": 1, "same": 36}, "steps": [{**step, "op": "update"}]}
    assert preview_drift(drifted) == ["1 to update", f"update {step['urn']}"]
    assert preview_drift({"ok": False, "errors": ["BMC unreachable"]}) == ["the preview failed: BMC unreachable"]
    file = tmp_path / "preview.json"
    file.write_text(json.dumps(drifted))
    result = CliRunner().invoke(app, ["gitops", "drift", "dev", "--preview", str(file)])
    assert result.exit_code == 5  # drift (3: the check could not be made)
    assert "dev: drift: 1 to update" in result.stderr
    file.write_text(json.dumps(clean))
    result = CliRunner().invoke(app, ["gitops", "drift", "dev", "--preview", str(file)])
    assert result.exit_code == 0, result.output
    assert "dev: no drift from the state" in result.stdout
    both = CliRunner().invoke(app, ["gitops", "drift", "dev", "--preview", str(file), "--record", str(file)])
    assert both.exit_code == 1
