"""`trainwise runs diff A B`: what changed between two runs (settings, code, results)."""

from __future__ import annotations

import difflib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainwise.runs.describe import flatten
from trainwise.runs.store import RunRecord
from trainwise.runs.table import changed_settings

MAX_DIFF_CHARS = 200_000  # a terminal page is far smaller; the whole diff stays in git


@dataclass
class RunDiff:
    a: RunRecord
    b: RunRecord
    settings: list[tuple[str, Any, Any]] = field(default_factory=list)
    environment: list[tuple[str, Any, Any]] = field(default_factory=list)
    commit_diff: str | None = None  # git diff between the two commits (None: same or unknown)
    commit_note: str = ""
    patch_diff: str = ""  # how the uncommitted changes differ (a diff of the two patches)
    metrics: list[tuple[str, Any, Any]] = field(default_factory=list)


def diff_runs(a: RunRecord, b: RunRecord) -> RunDiff:
    d = RunDiff(a, b)
    d.settings = changed_settings(
        flatten(a.meta.get("config") or {}), flatten(b.meta.get("config") or {})
    )
    env_a = flatten({k: a.meta.get(k) for k in ("seed", "device", "versions")})
    env_b = flatten({k: b.meta.get(k) for k in ("seed", "device", "versions")})
    d.environment = changed_settings(env_a, env_b)
    d.commit_diff, d.commit_note = _commit_diff(a, b)
    if a.patch != b.patch:
        d.patch_diff = "".join(
            difflib.unified_diff(
                a.patch.splitlines(keepends=True),
                b.patch.splitlines(keepends=True),
                fromfile=f"{a.id}/diff.patch",
                tofile=f"{b.id}/diff.patch",
            )
        )[:MAX_DIFF_CHARS]
    d.metrics = _metric_rows(a.summary, b.summary)
    return d


def _commit_diff(a: RunRecord, b: RunRecord) -> tuple[str | None, str]:
    ca, cb = (r.meta.get("git") or {} for r in (a, b))
    if not ca.get("commit") or not cb.get("commit"):
        return None, "no git commit recorded for one of the runs"
    if ca["commit"] == cb["commit"]:
        return None, f"same commit {ca['commit'][:7]}"
    repo = next((g["root"] for g in (cb, ca) if g.get("root") and Path(g["root"]).is_dir()), None)
    if repo is None:
        return None, "the repository the runs came from is not on this machine"
    try:
        done = subprocess.run(
            ["git", "diff", ca["commit"], cb["commit"]],
            cwd=repo,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"git diff failed: {exc}"
    if done.returncode != 0:
        return None, f"git diff failed: {done.stderr.decode(errors='replace').strip()}"
    return done.stdout.decode("utf-8", "replace")[:MAX_DIFF_CHARS], (
        f"commits {ca['commit'][:7]} -> {cb['commit'][:7]}"
    )


def _metric_rows(sa: dict[str, Any], sb: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    rows = []
    for section in ("best", "final"):
        a, b = sa.get(section) or {}, sb.get(section) or {}
        for key in dict.fromkeys([*a, *b]):
            va, vb = a.get(key), b.get(key)
            if section == "best":
                va, vb = (v["value"] if v else None for v in (va, vb))
            rows.append((f"{section} {key}", va, vb))
    for sev in ("error", "warning", "info"):
        fa, fb = (s.get("findings") or {} for s in (sa, sb))
        rows.append((f"{sev} findings", fa.get(sev, 0), fb.get(sev, 0)))
    return rows
