"""GitOps: what a pull request touches and what its review comment says, as pure functions.

`fjord.gitops.stacks` maps the files a change touches to the stacks it affects (shared files touch all) and
orders them for apply (core stacks first); `fjord.gitops.changes` says what a spec change does to a site's nodes;
`fjord.gitops.comment` writes the Markdown body of a stack's pull-request comment. Git and the forges' APIs are
reached through `fjord.adapters.git` and `fjord.adapters.forge`; `fjord gitops ...` (fjord.cli.gitops) joins them,
and the pipelines in `.github/workflows/` and `ci/gitlab/` call it. docs/gitops.md.
"""
