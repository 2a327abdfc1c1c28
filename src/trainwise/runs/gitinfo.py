"""What code a run ran: the git commit, branch, dirty flag, and the uncommitted changes as a patch.

The patch holds `git diff HEAD` (staged and unstaged changes to tracked files) followed by each
untracked source file as a new-file diff, so `git apply diff.patch` on the recorded commit
rebuilds the working tree that ran. Git is optional: outside a repository, or without git, every
field is None and no patch is written.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

GIT_TIMEOUT_S = 10  # a huge repository must not stall the start of training for long

# Untracked files worth recording: source and config, not data, checkpoints or logs.
SOURCE_SUFFIXES = {
    ".py", ".pyi", ".ipynb", ".cfg", ".ini", ".toml", ".yaml", ".yml", ".json", ".txt",
    ".md", ".rst", ".sh", ".c", ".cc", ".cpp", ".h", ".hpp", ".cu", ".cuh", ".js", ".ts",
}  # fmt: skip
MAX_UNTRACKED_FILE_BYTES = 256 * 1024  # a larger "source" file is data in disguise
MAX_PATCH_BYTES = 8 * 1024 * 1024  # keeps a record small even on a messy tree


@dataclass
class GitState:
    root: str | None = None
    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None
    untracked: list[str] | None = None  # untracked source files included in the patch

    def to_dict(self) -> dict:
        return asdict(self)


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None


def git_state(cwd: str | Path = ".", exclude: list[Path] | None = None) -> tuple[GitState, str]:
    """(GitState, patch text) for the repository containing cwd; exclude: folders to leave out
    of the untracked files (the runs folder itself)."""
    cwd = Path(cwd).resolve()
    root = _git(cwd, "rev-parse", "--show-toplevel")
    if root is None:
        return GitState(), ""
    root_path = Path(root.strip())
    commit = _git(root_path, "rev-parse", "HEAD")  # None in a repository without commits
    branch = _git(root_path, "rev-parse", "--abbrev-ref", "HEAD")
    tracked = _git(root_path, "diff", "HEAD", "--binary") if commit else ""
    untracked = _untracked_sources(root_path, [p.resolve() for p in exclude or []])
    patch = (tracked or "") + "".join(_new_file_diff(root_path, rel) for rel in untracked)
    if len(patch.encode()) > MAX_PATCH_BYTES:
        patch = patch[:MAX_PATCH_BYTES] + "\n# trainwise: patch truncated at 8 MiB\n"
    state = GitState(
        root=str(root_path),
        commit=commit.strip() if commit else None,
        branch=branch.strip() if branch else None,
        dirty=bool(tracked) or bool(untracked),
        untracked=untracked,
    )
    return state, patch


def _untracked_sources(root: Path, exclude: list[Path]) -> list[str]:
    listed = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    if not listed:
        return []
    kept = []
    for rel in listed.split("\0"):
        path = root / rel
        if not rel or path.suffix.lower() not in SOURCE_SUFFIXES:
            continue
        if any(path.resolve().is_relative_to(e) for e in exclude):
            continue
        try:
            if path.stat().st_size <= MAX_UNTRACKED_FILE_BYTES:
                kept.append(rel)
        except OSError:
            continue
    return sorted(kept)


def _new_file_diff(root: Path, rel: str) -> str:
    """The patch that creates `rel`, in git's own format, so `git apply` accepts it."""
    try:
        text = (root / rel).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""  # binary or unreadable: not source after all
    lines = text.splitlines(keepends=True)
    head = f"diff --git a/{rel} b/{rel}\nnew file mode 100644\n--- /dev/null\n+++ b/{rel}\n"
    if not lines:
        return f"diff --git a/{rel} b/{rel}\nnew file mode 100644\n"
    body = "".join("+" + line for line in lines)
    if not text.endswith("\n"):
        body += "\n\\ No newline at end of file\n"
    return head + f"@@ -0,0 +1,{len(lines)} @@\n" + body
