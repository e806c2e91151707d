"""fjord.gitops: which stacks a change touches, in apply order (pure functions)."""

from __future__ import annotations

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
