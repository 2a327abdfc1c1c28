"""Where the watch's time goes inside a real training step: its entry points and its detectors,
timed in place inside `tw.fit` on the speed tasks of fit_recipe.py (part B's settings).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/watch_in_fit.py [TASK ...] [--runs N]

Why in place: between a step's kernels every library call runs cold. Measured inside fit on the
MNIST-1D CNN, `torch.empty(0)` took ~4.6 us against ~0.6 us in a warm loop, a pure-Python
`sum(range(10))` ~2.0 us against ~0.3 us (the first call of each in the hook; a second call of the
same code was near its warm cost). A change timed in a warm loop of calls can be a regression in
place: numpy trend fits were 2-3x faster in a loop and 2-5x slower here. Time the watch here.

Each entry point is wrapped with a timer (the wrappers add ~1 us per call, included) and the
detectors are timed one by one; so are the activation probe's forward hooks, which run inside
the model's forward, outside every entry point (sampled steps' statistics, measured steps'
non-finite sums), reported apart. Per task: `--runs` runs (the first is warm-up, dropped), then
per entry point the median over runs of its us per training step (the sum over its calls /
steps), its calls, and us per call; the watch's total at its entry points (log, log_val and the
three hooks; the others are inside them) and the detectors' total.
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import fit_recipe  # noqa: E402

import trainwise as tw  # noqa: E402
from trainwise import judging  # noqa: E402
from trainwise.probes import activations, gradients, updates, writes  # noqa: E402

ENTRY_POINTS = ("log", "log_val", "_pre_step", "_post_step", "_forward_pre")  # the watch's own
INSIDE = {  # what the entry points call, by owner
    "Watch": ("_flush", "_run_judge", "_write_quiet", "_write_probes", "_start_iteration"),
    "WriteProbe": ("before_step", "after_step", "write"),
    "ActivationProbe": ("attach", "detach", "collect", "write"),
    "UpdateProbe": ("before_step", "after_step", "write"),
    "GradientProbe": ("set_measuring", "before_step", "after_step", "collect", "write",
                      "_backward_done"),
}
# Run inside the model's forward by the activation probe's hooks (no entry point): timed apart,
# with the hooks themselves as one label, and not in the entry points' total.
IN_FORWARD = {activations: ("output_sums",)}


class Clock:
    """Seconds and calls per label, filled by the wrappers."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter[str] = collections.Counter()

    def wrap(self, label: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - start
                self.calls[label] += 1

        return timed


def instrument(clock: Clock) -> None:
    watch_class = importlib.import_module("trainwise.watch").Watch
    owners = {
        "Watch": watch_class,
        "GradientProbe": gradients.GradientProbe,
        "WriteProbe": writes.WriteProbe,
        "ActivationProbe": activations.ActivationProbe,
        "UpdateProbe": updates.UpdateProbe,
    }
    for name in ENTRY_POINTS:
        setattr(watch_class, name, clock.wrap(name, getattr(watch_class, name)))
    for owner, names in INSIDE.items():
        cls = owners[owner]
        for name in names:
            setattr(cls, name, clock.wrap(f"{owner}.{name}", getattr(cls, name)))
    for module, names in IN_FORWARD.items():
        for name in names:
            setattr(module, name, clock.wrap(name, getattr(module, name)))
    make_hook = activations.ActivationProbe._make_hook

    def timed_hook(probe, name, module):  # each module's forward hook, as one label
        return clock.wrap("activation forward hooks", make_hook(probe, name, module))

    activations.ActivationProbe._make_hook = timed_hook
    run_detector = judging._run

    def detector(d, view):
        start = time.perf_counter()
        try:
            return run_detector(d, view)
        finally:
            clock.seconds[f"detector {d.slug}"] += time.perf_counter() - start
            clock.calls[f"detector {d.slug}"] += 1

    judging._run = detector


def one_run(setup: tw.Setup, epochs: int, seed: int, clock: Clock) -> int:
    """A fit as part B runs it; returns its training steps."""
    clock.seconds.clear()
    clock.calls.clear()
    steps = []
    recipe = tw.Recipe(
        lr=fit_recipe.SPEED_LR, schedule="one-cycle", clip=fit_recipe.SPEED_CLIP,
        label_smoothing=0, output_bias=False, precision="fp32",
    )  # fmt: skip
    tw.fit(
        setup, epochs=epochs, recipe=recipe, seed=seed, record=False, verbose=False,
        preset="standard", on_progress=lambda status: steps.append(status),
    )  # fmt: skip
    return len(steps)


def report(name: str, runs: list[tuple[int, dict[str, float], dict[str, int]]]) -> str:
    labels = sorted({label for _, seconds, _ in runs for label in seconds})
    per_step = {
        label: statistics.median(seconds.get(label, 0.0) / n * 1e6 for n, seconds, _ in runs)
        for label in labels
    }
    calls = {label: statistics.median(c.get(label, 0) for _, _, c in runs) for label in labels}
    lines = [f"{name}: {runs[0][0]} steps per run, {len(runs)} runs (medians)"]
    lines.append(f"  {'':44} {'us/step':>8} {'calls':>7} {'us/call':>8}")
    for label in sorted(labels, key=lambda k: -per_step[k]):
        if per_step[label] < 0.5:
            continue
        per_call = per_step[label] * runs[0][0] / max(calls[label], 1)
        lines.append(f"  {label:44} {per_step[label]:8.1f} {calls[label]:7.0f} {per_call:8.1f}")
    entry = sum(per_step.get(label, 0.0) for label in ENTRY_POINTS)
    judged = sum(v for label, v in per_step.items() if label.startswith("detector "))
    hooks = per_step.get("activation forward hooks", 0.0)
    lines.append(f"  the watch at its entry points: {entry:.1f} us/step; its detectors: "
                 f"{judged:.1f} us/step; its forward hooks, besides: {hooks:.1f} us/step")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", default=["digits-mlp", "mnist1d-cnn"])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per task (+1 warm-up)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clock = Clock()
    instrument(clock)
    known = {**fit_recipe.TASKS, **fit_recipe.SPEED_ONLY}
    for name in args.tasks:
        if name not in known:
            parser.error(f"unknown task {name!r}; known: {', '.join(known)}")
        task = known[name]
        setup = task.build()
        runs = []
        for seed in range(args.runs + 1):
            steps = one_run(setup, task.epochs, seed, clock)
            if seed:  # the first is warm-up
                runs.append((steps, dict(clock.seconds), dict(clock.calls)))
        print(report(name, runs), flush=True)


if __name__ == "__main__":
    main()
