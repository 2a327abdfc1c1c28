"""What watching costs: bare training step vs watched step, per preset, beside Cockpit.

For each model (a small CNN on 32x32 images, an MLP, a small transformer LM) every
configuration trains its own copy of the model (same init, same batches). Blocks of `--steps`
steps run interleaved, A B C ... A B C ..., for `--rounds` rounds (the first is warm-up and
dropped); each round gives every configuration's mean step time divided by the bare loop's in
that round, and the table prints the median of those ratios (1.00x = free). The watch columns
run with record=False; "watch standard + record" is the default (a run record in a temporary
folder, TensorBoard thread included in the CPU time). Step time is the
process's CPU time (one torch thread): on a shared machine wall time mostly measures the
neighbours; `--wall` measures wall-clock time instead.

Cockpit (f-dangel/cockpit) runs its "economy" configuration on the same models and batches, at
the same tracking frequency as the compared preset (every step for `full`, every 20 steps for
`standard`). It needs BackPACK, which supports Linear/Conv2d/ReLU/pooling but not attention,
Embedding or LayerNorm; where it cannot run, the table says so. Install it with:

    pip install cockpit-for-pytorch backpack-for-pytorch --no-deps
    pip install "setuptools<70" pandas seaborn einops unfoldNd json-tricks --no-deps

(into a venv that already has torch; `--no-deps` keeps pip from replacing torch).

    python benchmarks/overhead.py                  # all models, all configurations
    python benchmarks/overhead.py --rounds 8 --steps 10 --models mlp
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from dataclasses import replace

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

import trainwise as tw
from trainwise.watch import PRESETS

RECORDED = "watch standard + record"

# -- the models ---------------------------------------------------------------------------------


def small_cnn() -> nn.Module:
    # (B, 3, 32, 32) -> (B, 10); no BatchNorm so that BackPACK (Cockpit) can run on it too.
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 16, 16)
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 8, 8)
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 4, 4)
        nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
        nn.Linear(256, 10),
    )  # fmt: skip


class TinyLM(nn.Module):
    def __init__(self, vocab: int = 64, dim: int = 128, block: int = 64, layers: int = 2):
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, dim), nn.Embedding(block, dim)
        layer = nn.TransformerEncoderLayer(
            dim, 4, 4 * dim, dropout=0.1, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab)

    def forward(self, idx):  # (B, T) -> (B * T, V)
        T = idx.shape[1]
        h = self.embed(idx) + self.pos(torch.arange(T, device=idx.device))  # (B, T, C)
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=idx.device)
        return self.head(self.norm(self.blocks(h, mask=mask, is_causal=True))).flatten(0, 1)


def batches(model_name: str, n: int = 8):
    g = torch.Generator().manual_seed(0)
    if model_name == "cnn":
        return [
            (torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g))
            for _ in range(n)
        ]
    if model_name == "mlp":
        return [
            (torch.randn(64, 784, generator=g), torch.randint(0, 10, (64,), generator=g))
            for _ in range(n)
        ]
    out = []
    for _ in range(n):
        x = torch.randint(0, 64, (16, 65), generator=g)
        out.append((x[:, :-1], x[:, 1:].flatten()))  # (B, T), (B * T,)
    return out


MODELS = {"cnn": small_cnn, "mlp": mlp, "lm": TinyLM}
CLOCK = time.process_time

# -- one configuration = a model copy with its optimizer and a step function ---------------------


class Runner:
    def __init__(self, name, make_model, init_state, data):
        self.name, self.data, self.i = name, data, 0
        self.model = make_model()
        self.model.load_state_dict(init_state)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)

    def batch(self):
        self.i += 1
        return self.data[self.i % len(self.data)]

    def step(self):
        x, y = self.batch()
        self.optimizer.zero_grad()
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss

    def close(self):
        pass


class Watched(Runner):
    def __init__(self, name, make_model, init_state, data, preset, record_dir=None):
        super().__init__(name, make_model, init_state, data)
        # record_dir None: the watch alone (no run record); else its record goes there
        self.watch = tw.watch(
            self.model,
            self.optimizer,
            preset=preset,
            verbose=False,
            record=record_dir is not None,
            log_dir=record_dir,
        )

    def step(self):
        self.watch.log(loss=super().step())

    def close(self):
        self.watch.close()


class WithCockpit(Runner):
    def __init__(self, name, make_model, init_state, data, interval):
        from backpack import extend
        from cockpit import Cockpit
        from cockpit.utils import schedules
        from cockpit.utils.configuration import configuration

        super().__init__(name, make_model, init_state, data)
        self.model = extend(self.model)
        self.loss_fn = extend(nn.CrossEntropyLoss())
        self.per_sample = nn.CrossEntropyLoss(reduction="none")
        quantities = configuration("economy", track_schedule=schedules.linear(interval))
        self.cockpit = Cockpit(self.model.parameters(), quantities=quantities)
        self.global_step = 0

    def step(self):
        x, y = self.batch()
        self.optimizer.zero_grad()
        out = self.model(x)
        loss, losses = self.loss_fn(out, y), self.per_sample(out, y)
        info = {"batch_size": len(x), "individual_losses": losses, "loss": loss,
                "optimizer": self.optimizer}  # fmt: skip
        with self.cockpit(self.global_step, info=info):
            loss.backward(create_graph=self.cockpit.create_graph(self.global_step))
        self.optimizer.step()
        self.global_step += 1


NO_WRITES, NO_WRITES_PRESET = "watch standard, no write probe", "standard-without-writes"
PRESETS[NO_WRITES_PRESET] = replace(PRESETS["standard"], watch_writes=False)


def make_runners(
    model_name: str, cockpit: bool, record_dir: str
) -> tuple[list[Runner], dict[str, str]]:
    make = MODELS[model_name]
    torch.manual_seed(0)
    init = make().state_dict()
    data = batches(model_name)
    runners = [Runner("bare", make, init, data)]
    runners += [Watched(f"watch {p}", make, init, data, p) for p in ("cheap", "standard", "full")]
    # standard without its weight fingerprints at each step's start and end (probes.writes):
    # what watching who writes the weights costs
    runners.append(Watched(NO_WRITES, make, init, data, NO_WRITES_PRESET))
    # the default: standard with its run record (files + TensorBoard thread, in CPU time too)
    runners.append(Watched(RECORDED, make, init, data, "standard", record_dir))
    skipped = {}
    if cockpit:
        for interval, label in ((20, "cockpit economy /20"), (1, "cockpit economy /1")):
            try:
                runner = WithCockpit(label, make, init, data, interval)
                for _ in range(2):  # fails here when BackPACK lacks a module's extension
                    runner.step()
                runners.append(runner)
            except Exception as exc:  # noqa: BLE001 - report it in the table and go on
                skipped[label] = f"n/a ({type(exc).__name__}: {str(exc)[:60]})"
    return runners, skipped


def measure(
    model_name: str, rounds: int, steps: int, cockpit: bool, record_dir: str
) -> dict[str, tuple[float, float]]:
    """{config: (median ratio to bare, median bare-relative spread)}, ratios A B A B interleaved."""
    runners, skipped = make_runners(model_name, cockpit, record_dir)
    ratios: dict[str, list[float]] = {r.name: [] for r in runners}
    bare_ms: list[float] = []
    for round_ in range(rounds):
        times = {}
        for runner in runners:
            t0 = CLOCK()
            for _ in range(steps):
                runner.step()
            times[runner.name] = (CLOCK() - t0) / steps
        if round_ == 0:
            continue  # warm-up: allocator, caches, first hooks
        bare_ms.append(times["bare"] * 1e3)
        for name, t in times.items():
            ratios[name].append(t / times["bare"])
    for runner in runners:
        runner.close()
    result = {
        name: (statistics.median(r), statistics.median(bare_ms)) for name, r in ratios.items()
    }
    return result, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-cockpit", action="store_true")
    parser.add_argument("--wall", action="store_true", help="wall-clock instead of CPU time")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if args.wall else time.process_time
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    console = Console()
    use_cockpit = not args.no_cockpit
    if use_cockpit:
        try:
            import cockpit  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - say why the comparison is missing, go on
            console.print(f"[yellow]Cockpit not importable ({exc}); see the install line above.")
            use_cockpit = False
    columns = ["watch cheap", "watch standard", "watch full", RECORDED]
    if use_cockpit:
        columns += ["cockpit economy /20", "cockpit economy /1"]
    clock = "wall" if args.wall else "CPU"
    table = Table(
        title=f"{clock} time per step / bare (median of {args.rounds - 1} interleaved rounds "
        f"of {args.steps} steps, {args.threads} thread)"
    )
    table.add_column("model")
    table.add_column(f"bare {clock} ms/step")
    for c in columns:
        table.add_column(c)
    for name in args.models:
        console.print(f"measuring {name} ...")
        with tempfile.TemporaryDirectory() as record_dir:  # never into the repository
            result, skipped = measure(name, args.rounds, args.steps, use_cockpit, record_dir)
        row = [name, f"{result['bare'][1]:.1f}"]
        for c in columns:
            row.append(f"{result[c][0]:.3f}x" if c in result else skipped.get(c, "n/a"))
        table.add_row(*row)
        recorded = result[RECORDED][0] / result["watch standard"][0]
        console.print(f"{name}: the run record costs {recorded:.3f}x a standard watch without it")
        writes = result["watch standard"][0] / result[NO_WRITES][0]
        console.print(f"{name}: the write probe costs {writes:.3f}x a standard watch without it")
    console.print(table)
    console.print(
        "targets: standard (default) <= 1.03x, full <= 1.15x, below Cockpit at equal "
        "tracking frequency (standard samples every 20 steps, full every step)"
    )


if __name__ == "__main__":
    main()
