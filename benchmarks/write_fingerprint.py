"""What the write probe's fingerprint costs when each step ends, by model size: the norm of every
tensor (`torch._foreach_norm` over all the weights, the probe's first design) against the
sampled fingerprint it uses now (16 evenly spaced elements of each tensor, copied by one
`torch.cat` of views per device and dtype).

For each model the two run interleaved, A B A B, in blocks of `--calls` calls, for `--rounds`
rounds; the table gives the median microseconds per call of each and their ratio. The models:
the digits MLP and MNIST-1D CNN of benchmarks/fit_recipe.py (4 and 8 tensors, 10k elements),
a 6-layer transformer encoder (72 tensors, 19M elements) and a wide MLP (6 tensors, 50M
elements), where the full norm is a pass over 200 MB of weights.

    python benchmarks/write_fingerprint.py
    python benchmarks/write_fingerprint.py --rounds 5 --calls 20 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from trainwise.probes.writes import _Layout


def models() -> dict[str, nn.Module]:
    encoder = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(d_model=512, nhead=8, dim_feedforward=2048), num_layers=6
    )
    return {
        "digits MLP": nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
        "MNIST-1D CNN": nn.Sequential(
            nn.Conv1d(1, 32, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(32, 32, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.Conv1d(32, 32, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(320, 10),
        ),  # fmt: skip
        "transformer (6 x 512)": encoder,
        "wide MLP (50M)": nn.Sequential(
            nn.Linear(1024, 16384),
            nn.ReLU(),
            nn.Linear(16384, 2048),
            nn.ReLU(),
            nn.Linear(2048, 1024),
        ),  # fmt: skip
    }


def norms(params: list[torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack(torch._foreach_norm(params, 2))


def per_call(fn, calls: int, sync) -> float:
    """Microseconds per call over a block of `calls` calls (the device drained before and after)."""
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    table = Table(title=f"write probe fingerprint per step end ({device.type}, one thread)")
    for col in ("model", "tensors", "elements", "norm of all (us)", "sampled (us)", "ratio"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name, model in models().items():
        params = [p for p in model.to(device).parameters()]
        layout = _Layout(params)
        full, sampled = [], []
        for _ in range(args.rounds + 1):  # the first round warms up and is dropped
            full.append(per_call(partial(norms, params), args.calls, sync))
            sampled.append(per_call(layout.take, args.calls, sync))
        a, b = statistics.median(full[1:]), statistics.median(sampled[1:])
        table.add_row(name, str(len(params)), f"{sum(p.numel() for p in params):,}",
                      f"{a:,.1f}", f"{b:,.1f}", f"{a / b:,.1f}x")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
