"""TensorBoard event files in the run folder, written with torch.utils.tensorboard.

`tensorboard --logdir trainwise-runs` then lists every run. Written: scalars (metrics and
per-layer signals as "<signal>/<layer>"), histograms (precomputed, add_histogram_raw), curves
(one scalar per point, step = point index), and at the end the hyperparameters with the run's
final metrics in the SAME run (add_hparams would open a separate one) and the findings as a
markdown table under the "findings" text tag.

Building TensorBoard's protobuf events costs about 100 us per scalar, so the caller only puts
the numbers on a queue and one background thread writes them, in order: logging from a
training loop stays at a few microseconds. Any failure disables this sink with one warning:
TensorBoard must never stop a training.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from pathlib import Path
from typing import Any

from trainwise.runs.describe import flatten

log = logging.getLogger("trainwise")

SCALAR_BATCH = 64  # steps of scalars handed to the writer thread at once
HAND_EVERY_S = 2.0  # ... or after this long, so TensorBoard shows a live run


class TensorBoardSink:
    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._drain, name="trainwise-tensorboard", daemon=True
        )
        self._thread.start()
        self._rows: list[tuple[int, dict[str, float]]] = []  # scalars not yet handed over
        self._handed = time.monotonic()

    @classmethod
    def open(cls, path: Path) -> TensorBoardSink | None:
        try:
            from torch.utils.tensorboard import SummaryWriter

            return cls(SummaryWriter(log_dir=str(path), flush_secs=10))
        except Exception as exc:  # tensorboard missing or broken: the record goes on without
            log.warning("trainwise: TensorBoard events disabled: %s: %s", type(exc).__name__, exc)
            return None

    def _do(self, action: Any) -> None:
        """Queue a write for the background thread (None: the sink is closed or disabled)."""
        if self.writer is not None:
            self._queue.put(action)

    def _drain(self) -> None:
        while True:
            action = self._queue.get()
            if action is None:
                return
            if self.writer is None:
                continue  # disabled after an error: drop what is left
            try:
                action()
            except Exception as exc:
                log.warning(
                    "trainwise: TensorBoard events disabled: %s: %s", type(exc).__name__, exc
                )
                self.writer = None

    def scalars(self, step: int, row: dict[str, float]) -> None:
        # Rows are handed to the writer thread in batches: woken every step, it would take the
        # GIL every step, and a training thread waiting for the GIL back loses up to the 5 ms
        # switch interval each time (measured: a tiny watched loop ran 2x slower).
        self._rows.append((step, row))
        if len(self._rows) >= SCALAR_BATCH or time.monotonic() - self._handed > HAND_EVERY_S:
            self._hand_rows()

    def _hand_rows(self) -> None:
        rows, self._rows = self._rows, []
        self._handed = time.monotonic()
        if not rows:
            return

        def write() -> None:
            # One event per step holding all its scalars: what add_scalar writes, one value
            # each, at a fraction of the cost of one add_scalar call per value.
            from tensorboard.compat.proto.summary_pb2 import Summary

            writer = self.writer._get_file_writer()
            for step, row in rows:
                values = [Summary.Value(tag=k, simple_value=float(v)) for k, v in row.items()]
                writer.add_summary(Summary(value=values), step)

        self._do(write)

    def histogram(self, step: int, name: str, hist: dict[str, Any]) -> None:
        if not hist["counts"]:
            return
        self._do(
            lambda: self.writer.add_histogram_raw(
                name,
                min=hist["min"],
                max=hist["max"],
                num=hist["num"],
                sum=hist["sum"],
                sum_squares=hist["sum_squares"],
                bucket_limits=hist["edges"][1:],  # right edge of each bucket
                bucket_counts=hist["counts"],
                global_step=step,
            )
        )

    def curve(self, name: str, xs: list[float], ys: list[float], ylabel: str) -> None:
        def write() -> None:
            for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
                self.writer.add_scalar(f"{name}/{ylabel}", y, i)
                self.writer.add_scalar(f"{name}/x", x, i)

        self._do(write)

    def finish(self, meta: dict[str, Any], findings: list[dict[str, Any]]) -> None:
        self._hand_rows()

        def write() -> None:
            from torch.utils.tensorboard.summary import hparams

            if findings:
                self.writer.add_text("findings", findings_markdown(findings))
            params = {k: _hparam(v) for k, v in flatten(meta["config"]).items()}
            params.update(kind=meta["kind"], seed=_hparam(meta["seed"]))
            summary = meta["summary"]
            # The final metrics, under their own tags so the HParams table has a column each.
            final = {f"final/{k}": v for k, v in summary.get("final", {}).items()}
            final.update({f"best/{k}": b["value"] for k, b in summary.get("best", {}).items()})
            counts = summary.get("findings", {})
            final.update({f"findings/{s}": float(n) for s, n in counts.items()})
            final = {k: float(v) for k, v in final.items() if _finite(v)}
            step = summary.get("last_step") or 0
            for key, value in final.items():
                self.writer.add_scalar(key, value, step)
            # hparams() builds the three plugin summaries; writing them to this run's own file
            # writer is what keeps them in the same run as the scalars.
            writer = self.writer._get_file_writer()
            for event in hparams(params, final):
                writer.add_summary(event)
            self.writer.close()

        self._do(write)
        self._queue.put(None)  # then stop: every queued write is done before join returns
        self._thread.join()


def findings_markdown(findings: list[dict[str, Any]]) -> str:
    rows = ["| severity | rule | where | message |", "|---|---|---|---|"]
    for f in findings:
        msg = str(f.get("message", "")).replace("|", "\\|").replace("\n", " ")
        rows.append(f"| {f.get('severity')} | {f.get('rule')} | {f.get('where') or ''} | {msg} |")
    return "\n".join(rows)


def _hparam(value: Any) -> Any:
    """TensorBoard takes int, float, str and bool hyperparameters; anything else as text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
