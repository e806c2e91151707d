"""The forges' comment APIs behind one typed wrapper: find a pull request's (merge request's) comment for a stack
by its hidden marker and edit it in place, or add it once. GitHub's REST API (issue comments) and GitLab's
(merge request notes), over the standard library's HTTP client; the token goes in a header and nowhere else."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fjord.gitops.comment import find_comment

PER_PAGE = 100
MAX_PAGES = 50


class ForgeError(RuntimeError):
    """A forge API call failed: method, path and status, never the token."""


@dataclass(frozen=True)
class Forge:
    """Where a pull request's comments live and how to reach them."""

    kind: Literal["github", "gitlab"]
    api: str
    """API root: https://api.github.com, or GitLab's .../api/v4."""
    project: str
    """GitHub `owner/name`; GitLab the project id (or its URL-encoded path)."""
    number: int
    """Pull request number (GitHub) or merge request IID (GitLab)."""
    token: str

    def __repr__(self) -> str:  # the token stays out of reprs, tracebacks and logs
        return f"Forge(kind={self.kind!r}, api={self.api!r}, project={self.project!r}, number={self.number})"

    @property
    def _comments(self) -> str:
        if self.kind == "github":
            return f"/repos/{self.project}/issues/{self.number}/comments"
        return f"/projects/{self.project}/merge_requests/{self.number}/notes"

    def _one(self, comment_id: object) -> str:
        if self.kind == "github":
            return f"/repos/{self.project}/issues/comments/{comment_id}"
        return f"{self._comments}/{comment_id}"

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        headers = {"Accept": "application/json", "Content-Type": "application/json", "User-Agent": "fjord-gitops"}
        if self.kind == "github":
            headers |= {"Authorization": f"Bearer {self.token}", "Accept": "application/vnd.github+json"}
        else:
            headers["PRIVATE-TOKEN"] = self.token
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api.rstrip("/") + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                text = resp.read().decode() or "null"
        except urllib.error.HTTPError as exc:
            raise ForgeError(f"{method} {path.split('?')[0]}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ForgeError(f"{method} {path.split('?')[0]}: {getattr(exc, 'reason', exc)}") from None
        return json.loads(text)

    def comments(self) -> list[dict[str, Any]]:
        """Every comment of the pull request, page by page."""
        found: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            batch = self._call("GET", f"{self._comments}?per_page={PER_PAGE}&page={page}")
            found += batch
            if len(batch) < PER_PAGE:
                break
        return found

    def upsert(self, stack: str, body: str) -> Literal["created", "updated", "unchanged"]:
        """Edit the stack's comment in place when its body differs, add it when there is none."""
        existing = find_comment(self.comments(), stack)
        if existing is None:
            self._call("POST", self._comments, {"body": body})
            return "created"
        if str(existing.get("body", "")) == body:
            return "unchanged"
        self._call("PATCH" if self.kind == "github" else "PUT", self._one(existing["id"]), {"body": body})
        return "updated"


def from_environment(env: Mapping[str, str] | None = None, number: int | None = None) -> Forge:
    """The forge of the CI job this runs in: GitHub Actions (GITHUB_TOKEN, GITHUB_REPOSITORY, the pull request
    from GITHUB_EVENT_PATH) or GitLab CI (FJORD_GITLAB_TOKEN, CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID).
    Raises ForgeError naming what is missing."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") == "true" or "GITHUB_REPOSITORY" in env:
        if number is None and env.get("GITHUB_EVENT_PATH"):
            with open(env["GITHUB_EVENT_PATH"], encoding="utf-8") as f:
                event = json.load(f)
            number = (event.get("pull_request") or {}).get("number") or event.get("number")
        missing = [k for k in ("GITHUB_TOKEN", "GITHUB_REPOSITORY") if not env.get(k)]
        if number is None:
            missing.append("the pull request number (--number, or a pull_request event)")
        if missing:
            raise ForgeError(f"GitHub: missing {', '.join(missing)}")
        return Forge(
            "github",
            env.get("GITHUB_API_URL", "https://api.github.com"),
            env["GITHUB_REPOSITORY"],
            int(number),  # type: ignore[arg-type]
            env["GITHUB_TOKEN"],
        )
    if env.get("GITLAB_CI") == "true" or "CI_API_V4_URL" in env:
        iid: int | str | None = number if number is not None else env.get("CI_MERGE_REQUEST_IID")
        missing = [k for k in ("FJORD_GITLAB_TOKEN", "CI_API_V4_URL", "CI_PROJECT_ID") if not env.get(k)]
        if iid is None:
            missing.append("CI_MERGE_REQUEST_IID (a merge request pipeline) or --number")
        if missing or iid is None:
            raise ForgeError(f"GitLab: missing {', '.join(missing)}")
        return Forge("gitlab", env["CI_API_V4_URL"], env["CI_PROJECT_ID"], int(iid), env["FJORD_GITLAB_TOKEN"])
    raise ForgeError("neither GitHub Actions nor GitLab CI: allowed: run in a pull request or merge request job")
