"""Benchmark: `tw.compress` on four trained models: size, CPU latency and accuracy of each
variant against the original, and whether each saved variant loads back to its metric.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/compress.py [-k gru] [--out FILE]

The models and data are fit_recipe.py's (all offline): digits MLP 64-128-10, the digits BN
CNN, the MNIST-1D 1D CNN and a 2-layer GRU on synthetic sequences; each is trained with
`tw.fit` and the default recipe for fit_recipe.py's epochs (seed 0), then compressed with:
    dynamic-int8, static-int8, prune:0.5 (2 fine-tune epochs), prune-channels:0.5 (2),
    distill:half-width and distill:half-depth (the teacher's epochs), prune-channels:0.75, and
    six chains: prune-channels:0.5+static-int8, distill:half-width+dynamic-int8,
    distill:half-width+static-int8, distill:half-depth+dynamic-int8,
    distill:half-depth+static-int8, prune-channels:0.75+static-int8 (a chain's first step is
    the variant of that name: built once)
Latency is compress's own: every variant called in turn (A B C A B C ...) after warm-up, the
median per call on one thread, at batch 1 and at the setup's batch (32); "x smaller" and "x
faster" are the original's size and latency over the variant's. Target (issue 19): at least
one variant per model >= 3.5x smaller with <= 1 point of accuracy lost.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

import trainwise as tw

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from fit_recipe import TASKS  # noqa: E402

MODELS = ("digits-mlp", "digits-cnn", "mnist1d-cnn", "gru-sequence")
METHODS = ("dynamic-int8", "static-int8", "prune:0.5", "prune-channels:0.5", "distill:half-width",
           "distill:half-depth", "prune-channels:0.5+static-int8",
           "distill:half-width+dynamic-int8", "distill:half-width+static-int8",
           "distill:half-depth+dynamic-int8", "distill:half-depth+static-int8",
           "prune-channels:0.75", "prune-channels:0.75+static-int8")  # fmt: skip
TARGET_SMALLER, TARGET_POINTS = 3.5, 1.0


def run(name: str, folder: Path, log, methods=METHODS, finetune_epochs: int = 2) -> dict:
    from trainwise.compress.measure import evaluate
    from trainwise.context import StaticContext

    task = TASKS[name]
    setup = task.build()
    started = time.process_time()
    trained = tw.fit(setup, epochs=task.epochs, seed=0, record=False, verbose=False)
    log(f"{name}: trained ({time.process_time() - started:.1f} CPU s), compressing")
    started = time.process_time()
    result = tw.compress(setup, model=trained.model, methods=methods, folder=folder / name,
                         recipe=trained.recipe, distill_epochs=task.epochs, source=name,
                         finetune_epochs=finetune_epochs)  # fmt: skip
    cpu_s = time.process_time() - started
    data = result.to_dict()
    cpu = dataclasses.replace(setup, device="cpu")
    classes = StaticContext(cpu).num_classes
    for row in data["variants"]:  # each saved variant, loaded back, gives its recorded metric
        model = tw.load_variant(setup, row["path"])
        again = evaluate(cpu, model, "classification", classes)["accuracy"]
        row["reloads"] = again == row["metric"]
    data["cpu_s"] = cpu_s
    return data


def table(name: str, data: dict) -> list[str]:
    o = data["original"]
    lines = [f"### {name} (compress: {data['cpu_s']:.0f} CPU s, {data['threads']} thread)", "",
             "| variant | size | x smaller | weights (nonzero) | ms b1 | x faster b1 | ms b32 | "
             "x faster b32 | accuracy | change (pt) | reloads |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in [o, *data["variants"]]:
        lines.append(
            f"| {row['method']} | {row['size_bytes'] / 1e3:.1f} kB | "
            f"{o['size_bytes'] / row['size_bytes']:.2f} | {row['params']} ({row['nonzero_params']}) | "
            f"{row['latency_ms_b1']:.3f} | {o['latency_ms_b1'] / row['latency_ms_b1']:.2f} | "
            f"{row['latency_ms_batch']:.3f} | {o['latency_ms_batch'] / row['latency_ms_batch']:.2f} | "
            f"{100 * row['metric']:.2f}% | {100 * row['delta']:+.2f} | {_yes(row.get('reloads'))} |"
        )  # fmt: skip
    for s in data["skipped"]:
        lines.append(f"\nskipped {s['method']}: {s['reason']}")
    return lines


def verdict(data: dict) -> str:
    o = data["original"]
    met = [v["method"] for v in data["variants"]
           if o["size_bytes"] / v["size_bytes"] >= TARGET_SMALLER
           and 100 * v["delta"] >= -TARGET_POINTS]  # fmt: skip
    return f"target met by: {', '.join(met)}" if met else "target NOT met"


def _yes(value) -> str:
    return "-" if value is None else "yes" if value else "NO"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-k", help="only the models whose name contains this")
    parser.add_argument("--out", default=str(HERE / "results" / "compress.md"))
    parser.add_argument("--folder", default="/tmp/trainwise-compress-bench")
    parser.add_argument("--method", action="append", help="instead of the list above")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    lines = [f"# benchmarks/compress.py (torch {torch.__version__}, quantized engine "
             f"{torch.backends.quantized.engine})", ""]  # fmt: skip
    for name in MODELS:
        if args.k and args.k not in name:
            continue
        log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
        data = run(name, Path(args.folder), log, args.method or METHODS, args.finetune_epochs)
        block = table(name, data) + ["", verdict(data), ""]
        print("\n".join(block), flush=True)
        lines += block
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
