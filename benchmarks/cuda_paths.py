"""The CUDA paths, measured on a GPU: what CPU-only CI cannot run.

    python benchmarks/cuda_paths.py                 # every part, markdown on stdout
    python benchmarks/cuda_paths.py --parts syncs,amp --device cpu   # the script's own dry run

Parts:
- syncs: host-device synchronisations per training step, counted with
  `torch.cuda.set_sync_debug_mode("warn")` (one warning per synchronising call), for a bare
  loop and the watch's presets, and over a whole `tw.fit` run; where each extra one comes from.
  The watch's contract: at most one sync per step (its read-out, on measured steps only: the
  first 20, then every 10th), none when nothing is logged.
- speed: watched vs bare step time on the GPU, blocks of steps interleaved A B C A B C, the
  median of per-round ratios (wall time between two synchronisations).
- profile: torch.profiler over watched and bare steps: the CPU time spent waiting for the GPU
  (synchronize, copies to the host) against kernel launches and the rest.
- amp: `tw.fit` of a digits CNN at fp32, bf16, fp16 (GradScaler) and auto: metrics, findings,
  seconds; the fp16 checkpoint holds the scaler; a run stopped half way and resumed ends where
  the uninterrupted one does.
- parallel: `trainwise fit --devices N` with more processes than GPUs exits 2 with the counts.
- labels: `tw.check` on labels the model has no output for gives its verdict, and the GPU still
  works afterwards (the loss on them was a device-side assert that ended the process's CUDA).
- gru: the batch-independence stage measures a GRU in eval mode (cuDNN's RNN has no backward
  in eval mode): `batch-mixing` names a GRU without batch_first, a batch-first one is clean.

The test suite on the GPU, as the first run did it (the machine has torch, lightning,
transformers, torchmetrics; optuna, captum, cleanlab, mnist1d and their needs travel as wheels
in an ignored `.whl/` folder, see the device tool's README):

    pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:$PWD/src python3 -m pytest -q -n 12 --dist loadfile -m "not slow" tests
"""

from __future__ import annotations

import argparse
import collections
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from healthy_setups import cnn_digits  # noqa: E402

import trainwise as tw  # noqa: E402


def cnn(width: int) -> nn.Module:
    return nn.Sequential(  # (B, 3, 32, 32) -> (B, 10)
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 2w, 16, 16)
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(2 * width, 10),
    )  # fmt: skip


class Loop:
    """One configuration's own model, optimizer and (optionally) watch, on fixed batches."""

    def __init__(self, device, width: int, batch: int, preset: str | None):
        torch.manual_seed(0)
        self.model = cnn(width).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(1)
        self.batches = [
            (torch.randn(batch, 3, 32, 32, generator=g).to(device),
             torch.randint(0, 10, (batch,), generator=g).to(device))
            for _ in range(8)
        ]  # fmt: skip
        self.watch = (
            tw.watch(self.model, self.optimizer, preset=preset, record=False, verbose=False)
            if preset else None
        )  # fmt: skip
        self.i = 0

    def step(self) -> None:
        x, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        self.optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        if self.watch is not None:
            self.watch.log(loss=loss)


class SyncCounter:
    """Counts synchronising CUDA calls (warnings of torch's sync debug mode) and where they
    were made from (the warning's file:line is the Python frame that made the call)."""

    def __enter__(self):
        self._warnings = warnings.catch_warnings(record=True)
        self.caught = self._warnings.__enter__()
        warnings.simplefilter("always")
        if torch.cuda.is_available():  # (the CPU dry run counts nothing)
            torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc):
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("default")
        self._warnings.__exit__(*exc)

    def syncs(self) -> list[warnings.WarningMessage]:
        return [w for w in self.caught if "synchroniz" in str(w.message)]

    def count_and_clear(self) -> int:
        n = len(self.syncs())
        self.caught.clear()
        return n


def _where(caught: list[warnings.WarningMessage], top: int = 4) -> str:
    places = collections.Counter(
        f"{Path(w.filename).parent.name}/{Path(w.filename).name}:{w.lineno}" for w in caught
    )
    return ", ".join(f"{place} x{n}" for place, n in places.most_common(top)) or "-"


def part_syncs(device, out) -> None:
    out("\n## Synchronisations per training step (CNN, batch 128)\n")
    out("| loop | median | max | steps with >1 | sources of the syncs (file:line x count) |")
    out("|---|---|---|---|---|")
    for preset in (None, "cheap", "standard", "full"):
        loop = Loop(device, 32, 128, preset)
        for _ in range(3):  # the watch's first step reads its first-forward probe
            loop.step()
        per_step, sources = [], []
        with SyncCounter() as counter:
            for _ in range(40):
                loop.step()
                sources += counter.syncs()
                per_step.append(counter.count_and_clear())
        if loop.watch is not None:
            loop.watch.close()
        over = sum(n > 1 for n in per_step)
        out(f"| {preset or 'bare'} | {statistics.median(per_step):g} | {max(per_step)} | "
            f"{over} of 40 | {_where(sources)} |")  # fmt: skip

    setup = cnn_digits()
    setup.device = device
    steps = []
    with SyncCounter() as counter:
        result = tw.fit(setup, epochs=2, recipe=tw.Recipe(lr=1e-3, precision="fp32"),
                        record=False, verbose=False,
                        on_progress=lambda status: steps.append(status.step))  # fmt: skip
        caught = counter.syncs()
    out(f"\ntw.fit, 2 epochs of the digits CNN (lr given, so no range test): {len(caught)} "
        f"syncs in {result.steps} steps ({len(caught) / max(1, result.steps):.2f} per step, "
        f"whole-set validation and checkpoints included); top sources: {_where(caught, 6)}")  # fmt: skip


def _timed(loop: Loop, steps: int, device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        loop.step()
    sync()
    return (time.perf_counter() - start) / steps


def part_speed(
    device, out, rounds: int = 9, steps: int = 50, sizes=((32, 128), (128, 256))
) -> None:
    out("\n## Step time, watched vs bare (interleaved blocks, median of per-round ratios)\n")
    out("| model | bare ms/step | cheap | standard | full |")
    out("|---|---|---|---|---|")
    for width, batch in sizes:
        loops = {p: Loop(device, width, batch, p) for p in (None, "cheap", "standard", "full")}
        times = {p: [] for p in loops}
        for r in range(rounds):
            for p, loop in loops.items():
                t = _timed(loop, steps, device)
                if r:  # the first round warms up (cuDNN's algorithm search, allocator)
                    times[p].append(t)
        for loop in loops.values():
            if loop.watch is not None:
                loop.watch.close()
        bare = times[None]
        ratios = {
            p: statistics.median(t / b for t, b in zip(times[p], bare, strict=True))
            for p in loops if p
        }  # fmt: skip
        out(f"| CNN width {width}, batch {batch} | {statistics.median(bare) * 1e3:.3f} | "
            f"{ratios['cheap']:.2f}x | {ratios['standard']:.2f}x | {ratios['full']:.2f}x |")  # fmt: skip


def part_profile(device, out, steps: int = 20) -> None:
    """Where a watched step's extra time goes: torch.profiler over `steps` steps per loop, the
    CPU time of the runtime calls that wait for the GPU (synchronize, device-to-host copies)
    against the kernel launches and the rest."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    out(f"\n## Profile of {steps} steps (CNN width 32, batch 128): CPU ms per step\n")
    out("| loop | wall (profiled) | ops' CPU | waits (sync, copies to host) | launches (count) |")
    out("|---|---|---|---|---|")
    for preset in (None, "cheap", "standard"):
        loop = Loop(device, 32, 128, preset)
        for _ in range(5):
            loop.step()
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            for _ in range(steps):
                loop.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall = (time.perf_counter() - start) * 1e3 / steps
        if loop.watch is not None:
            loop.watch.close()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events) / 1e3 / steps
        waits = sum(e.self_cpu_time_total for e in events
                    if "Synchronize" in e.key or "Memcpy" in e.key) / 1e3 / steps  # fmt: skip
        launches = [e for e in events if "LaunchKernel" in e.key]
        launch_ms = sum(e.self_cpu_time_total for e in launches) / 1e3 / steps
        count = sum(e.count for e in launches) / steps
        out(f"| {preset or 'bare'} | {wall:.3f} | {total:.3f} | {waits:.3f} | "
            f"{launch_ms:.3f} ({count:.0f}) |")  # fmt: skip


def _fit(device, precision: str, epochs: int, **kwargs):
    setup = cnn_digits()
    setup.device = device
    start = time.perf_counter()
    result = tw.fit(setup, epochs=epochs, recipe=tw.Recipe(precision=precision), seed=0,
                    verbose=False, **kwargs)  # fmt: skip
    return result, time.perf_counter() - start


def part_amp(device, out, runs: Path, epochs: int = 8) -> None:
    out(f"\n## tw.fit under AMP (digits CNN, {epochs} epochs, default recipe, lr auto)\n")
    out("| precision | val_accuracy | val_loss | val_ece | steps | seconds | findings | notes |")
    out("|---|---|---|---|---|---|---|---|")
    for precision in ("fp32", "bf16", "fp16", "auto"):
        try:
            result, seconds = _fit(device, precision, epochs, runs_dir=runs / precision)
        except Exception as exc:  # a broken path is a result here: print it and go on
            out(f"| {precision} | FAILED: {type(exc).__name__}: {exc} |||||||")
            continue
        m = result.metrics
        slugs = ", ".join(sorted({f.rule for f in result.findings})) or "-"
        notes = "; ".join(n for n in result.notes if "precision" in n or "AMP" in n) or "-"
        out(f"| {precision} | {m.get('val_accuracy', float('nan')):.4f} | "
            f"{m['val_loss']:.4f} | {m.get('val_ece', float('nan')):.4f} | {result.steps} | "
            f"{seconds:.1f} | {slugs} | {notes} |")  # fmt: skip
        if precision == "fp16":
            last = torch.load(result.last_checkpoint, weights_only=True)
            best = torch.load(result.checkpoint, weights_only=True)
            out(f"\nfp16 last checkpoint keys: {sorted(last)}; scaler state: "
                f"{last.get('scaler') or 'none'}; best.pt's tensors on "
                f"{sorted({v.device.type for v in best.values()})} (cpu: loads anywhere)\n")  # fmt: skip

    # stopped half way (StopFit), resumed: the same final weights as one uninterrupted run
    recipe = tw.Recipe(precision="fp16", lr=3e-3)
    setup = cnn_digits()
    setup.device = device
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    full = tw.fit(setup, epochs=4, recipe=recipe, runs_dir=runs / "full", verbose=False)

    def stop_half_way(status):
        if status.step == full.steps // 2:
            raise tw.StopFit("stopped half way")

    cut = tw.fit(setup, epochs=4, recipe=recipe, runs_dir=runs / "cut", verbose=False,
                 on_progress=stop_half_way)  # fmt: skip
    resumed = tw.fit(setup, resume=cut.record_path, runs_dir=runs / "resumed", verbose=False)
    a = torch.load(full.last_checkpoint, weights_only=True)["model"]
    b = torch.load(resumed.last_checkpoint, weights_only=True)["model"]
    gap = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    out(f"fp16 resume: stopped at step {cut.steps} of {full.steps}, resumed to "
        f"{resumed.steps}; largest weight difference from the uninterrupted run {gap:.2e}; "
        f"val_loss {full.metrics['val_loss']:.5f} vs {resumed.metrics['val_loss']:.5f}")  # fmt: skip


PARALLEL_SETUP = """
import torch
from torch import nn
from torch.utils.data import TensorDataset
import trainwise as tw

def setup():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=g)
    y = (x[:, 0] > 0).long()
    return tw.Setup(model=lambda: nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 2)),
                    train=TensorDataset(x[:192], y[:192]), val=TensorDataset(x[192:], y[192:]),
                    loss=nn.CrossEntropyLoss(), device="cuda")
"""


def part_parallel(out, runs: Path) -> None:
    gpus = torch.cuda.device_count()
    file = runs / "parallel_setup.py"
    file.write_text(PARALLEL_SETUP)
    devices = gpus + 1
    run = subprocess.run(
        [sys.executable, "-m", "trainwise", "fit", f"{file}:setup", "--epochs", "1", "--quiet",
         "--devices", str(devices), "--runs-dir", str(runs / "parallel")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    said = " ".join(run.stderr.split())
    error = said[said.find("error:") :] if "error:" in said else said[-600:]
    out(f"\n## fit --devices {devices} on {gpus} GPU(s)\n\nexit {run.returncode}: {error}")


def part_labels(device, out) -> None:
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=g)
    y = (x[:, :4].sum(dim=1) > 0).long() + 1  # labels 1..2 for a 2-output head
    setup = tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2)),
        train=TensorDataset(x, y), loss=nn.CrossEntropyLoss(), device=device,
    )  # fmt: skip
    report = tw.check(setup, quick=True, record=False)
    after = float(torch.ones(4, device=device).sum())  # raises if the CUDA context is gone
    rules = sorted({f.rule for f in report.findings})
    out(f"\n## Labels out of range on {device}\n\nverdict {report.verdict!r}, findings "
        f"{rules}; a CUDA op afterwards: {after:g} (4 expected)")  # fmt: skip


class GRUNet(nn.Module):
    def __init__(self, batch_first: bool):
        super().__init__()
        self.gru = nn.GRU(4, 8, batch_first=batch_first)
        self.head = nn.Linear(8, 2)

    def forward(self, x):  # (B, T, F)
        out, _ = self.gru(x)
        return self.head(out[:, -1])


def part_gru(device, out) -> None:
    from torch.utils.data import TensorDataset

    from trainwise.stages.batch_independence import BatchIndependenceStage

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, 4, generator=g)
    y = (x.sum(dim=(1, 2)) > 0).long()
    out(f"\n## Batch independence of a GRU on {device}\n")
    for batch_first in (False, True):
        setup = tw.Setup(model=lambda bf=batch_first: GRUNet(bf), train=TensorDataset(x, y),
                         loss=nn.CrossEntropyLoss(), device=device)  # fmt: skip
        report = tw.check(setup, stages=[BatchIndependenceStage()], record=False)
        stage = report.stages[-1]
        mixing = [f.where for f in report.findings if f.rule == "batch-mixing"]
        out(f"- batch_first={batch_first}: stage {stage.status}, leak "
            f"{stage.metrics.get('leak', 'missing')}, batch-mixing: {mixing or 'none'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="labels,gru,syncs,speed,profile,amp,parallel")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    quick = (3, 5, ((8, 16),)) if device.type == "cpu" else ()  # the dry run: small and short

    def out(line: str) -> None:
        print(line, flush=True)

    props = torch.cuda.get_device_properties(0) if device.type == "cuda" else None
    out(f"# CUDA paths: torch {torch.__version__}, {props.name if props else 'CPU dry run'}")
    parts = args.parts.split(",")
    with tempfile.TemporaryDirectory() as folder:
        runs = Path(folder)
        for name, part in (("labels", lambda: part_labels(device, out)),
                           ("gru", lambda: part_gru(device, out)),
                           ("syncs", lambda: part_syncs(device, out)),
                           ("speed", lambda: part_speed(device, out, *quick)),
                           ("profile", lambda: part_profile(device, out)),
                           ("amp", lambda: part_amp(device, out, runs)),
                           ("parallel", lambda: part_parallel(out, runs))):  # fmt: skip
            if name in parts:
                try:
                    part()
                except Exception:  # report and go on to the next part
                    out(f"\n{name}: FAILED\n```\n{traceback.format_exc()}```")


if __name__ == "__main__":
    main()
