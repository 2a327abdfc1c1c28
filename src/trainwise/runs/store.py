"""Reading run records: the list of runs (one small run.json each, nothing else until asked),
one run's files, and a run found by id, prefix, name or position."""

from __future__ import annotations

import json
import os
import socket
from functools import cached_property
from pathlib import Path
from typing import Any

from trainwise.errors import SetupError
from trainwise.runs.layout import (
    CURVES,
    DATA,
    DIFF_PATCH,
    FINDINGS,
    HISTOGRAMS,
    LAYERS,
    METRICS,
    REPORT_JSON,
    RUN_JSON,
    TABLES,
    runs_root,
)
from trainwise.runs.summary import MetricSummary


class RunRecord:
    """A run folder on disk. Only run.json is read up front; every other file on first use."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.meta = meta

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunRecord:
        path = Path(path)
        try:
            meta = json.loads((path / RUN_JSON).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SetupError(f"{path}: not a trainwise run record (no run.json)") from None
        except (OSError, ValueError) as exc:
            raise SetupError(f"{path / RUN_JSON}: unreadable ({exc})") from None
        return cls(path, meta)

    @property
    def id(self) -> str:
        return self.meta.get("id", self.path.name)

    @property
    def status(self) -> str:
        """As recorded, except that a "running" record whose process is gone is "killed"."""
        status = self.meta.get("status", "unknown")
        if status == "running" and not _alive(self.meta):
            return "killed"
        return status

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @cached_property
    def summary(self) -> dict[str, Any]:
        """Final and best metrics and finding counts; rebuilt from metrics.jsonl and
        findings.json when the process died before it could write them."""
        summary = dict(self.meta.get("summary") or {})
        if self.status != "killed":
            return summary
        replay = MetricSummary()
        for row in self.metrics:
            replay.update(row["step"], {k: v for k, v in row.items() if k not in ("step", "t")})
        counts = {s: 0 for s in ("error", "warning", "info")}
        for f in self.findings:
            counts[f.get("severity", "info")] = counts.get(f.get("severity", "info"), 0) + 1
        return {**summary, **replay.to_dict(), "findings": counts}

    # -- the files, read on first use ----------------------------------------------------------

    @cached_property
    def metrics(self) -> list[dict[str, Any]]:
        return _read_jsonl(self.path / METRICS)

    @cached_property
    def layers(self) -> list[dict[str, Any]]:
        return _read_jsonl(self.path / LAYERS)

    @cached_property
    def histograms(self) -> list[dict[str, Any]]:
        return _read_jsonl(self.path / HISTOGRAMS)

    @cached_property
    def findings(self) -> list[dict[str, Any]]:
        return _read_json(self.path / FINDINGS, [])

    @cached_property
    def curves(self) -> dict[str, Any]:
        return _read_json(self.path / CURVES, {})

    @cached_property
    def tables(self) -> dict[str, Any]:
        return _read_json(self.path / TABLES, {})

    @cached_property
    def data(self) -> dict[str, Any] | None:
        return _read_json(self.path / DATA, None)

    @cached_property
    def report(self) -> dict[str, Any] | None:
        return _read_json(self.path / REPORT_JSON, None)

    @cached_property
    def patch(self) -> str:
        try:
            return (self.path / DIFF_PATCH).read_text(encoding="utf-8")
        except OSError:
            return ""

    @property
    def files(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir() if not p.name.startswith("."))


def list_runs(root: str | os.PathLike | None = None) -> list[RunRecord]:
    """Every run under root, oldest first. Folders without a readable run.json are skipped."""
    base = runs_root(root)
    if not base.is_dir():
        return []
    runs = []
    with os.scandir(base) as entries:
        for entry in entries:
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            try:
                with open(os.path.join(entry.path, RUN_JSON), encoding="utf-8") as f:
                    runs.append(RunRecord(Path(entry.path), json.load(f)))
            except (OSError, ValueError):
                continue  # not a record, or one being created this instant
    runs.sort(key=lambda r: (r.meta.get("started") or "", r.path.name))
    return runs


def find_run(ref: str, root: str | os.PathLike | None = None) -> RunRecord:
    """A run by folder path, full id, unique id prefix, unique name, or position (-1 or
    "latest" = the latest, 1 = the first; as numbered by `trainwise runs`)."""
    if Path(ref, RUN_JSON).is_file():
        return RunRecord.load(ref)
    runs = list_runs(root)
    if not runs:
        raise SetupError(f"no runs in {runs_root(root)} (set --root or $TRAINWISE_RUNS_DIR)")
    if ref in ("latest", "last"):
        ref = "-1"
    if ref.lstrip("-").isdigit():
        n = int(ref)
        if n == 0 or abs(n) > len(runs):
            raise SetupError(f"run number {n}: there are {len(runs)} runs (1..{len(runs)})")
        return runs[n - 1 if n > 0 else n]
    for match in (
        [r for r in runs if r.id == ref],
        [r for r in runs if r.id.startswith(ref)],
        [r for r in runs if r.meta.get("name") == ref],
        [r for r in runs if ref in r.id],
    ):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            ids = ", ".join(r.id for r in match[-5:])
            raise SetupError(f"{ref!r} matches {len(match)} runs ({ids}); give more of the id")
    raise SetupError(f"no run {ref!r} in {runs_root(root)}; `trainwise runs` lists them")


def _alive(meta: dict[str, Any]) -> bool:
    """Whether the process that writes this record still runs. On another host we cannot
    tell, so it is assumed alive."""
    pid = meta.get("pid")
    if not isinstance(pid, int):
        return False
    if (meta.get("host") or {}).get("hostname") != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line; a last line cut short by a crash is dropped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default
