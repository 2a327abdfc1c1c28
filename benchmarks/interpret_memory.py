"""Benchmark: the interpretation pass's peak memory is flat in the data set's size (issue 16,
item 2).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/interpret_memory.py   # 10k, 100k, 1M

Each size runs in a fresh process (peak RSS is a process's high-water mark): a synthetic
classification set (32 features, 10 classes) that holds no samples (each batch is generated
from its indices, so the data take no memory), a linear model, batches of 1024. Measured: the
process's peak RSS after the imports and a warm-up pass on 1,000 samples, then after
`tw.interpret` on N samples, and the difference; side by side, the same pass keeping every
prediction as fastai's ClassificationInterpretation does (probabilities, targets and losses
of every sample concatenated), whose memory grows with N.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SIZES = (10_000, 100_000, 1_000_000)
FEATURES, CLASSES, BATCH = 32, 10, 1024


def child(n: int, keep_all: bool) -> dict:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset, default_collate

    import trainwise as tw

    class Synthetic(Dataset):
        """n samples made from their indices on demand: x = noise(index) + a class offset."""

        def __init__(self, n: int) -> None:
            self.n = n

        def __len__(self) -> int:
            return self.n

        def _rows(self, indices: torch.Tensor):
            g = torch.Generator().manual_seed(int(indices[0]))
            y = indices % CLASSES
            x = torch.randn(len(indices), FEATURES, generator=g)
            x[torch.arange(len(indices)), y] += 2.0
            return x, y

        def __getitem__(self, i: int):
            x, y = self._rows(torch.tensor([i]))
            return x[0], y[0]

        def __getitems__(self, indices: list[int]):
            return self._rows(torch.tensor(indices))  # one batch (x (B, F), y (B,))

    def collate(batch):
        return batch if isinstance(batch, tuple) else default_collate(batch)

    torch.manual_seed(0)
    model = nn.Linear(FEATURES, CLASSES)
    loss = nn.CrossEntropyLoss()

    def loader(size: int) -> DataLoader:
        return DataLoader(Synthetic(size), batch_size=BATCH, collate_fn=collate)

    def keep_everything(size: int) -> int:
        """fastai's way: every probability, target and loss concatenated."""
        probs, targets, losses = [], [], []
        with torch.no_grad():
            for x, y in loader(size):
                out = model(x)
                probs.append(out.softmax(1))
                targets.append(y)
                losses.append(nn.functional.cross_entropy(out, y, reduction="none"))
        return len(torch.cat(probs)) + len(torch.cat(targets)) + len(torch.cat(losses))

    run = (
        keep_everything
        if keep_all
        else lambda size: tw.interpret(model, loader(size), loss).samples
    )
    run(1000)  # warm-up: every import and first-call allocation
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    samples = run(n)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"n": n, "samples": samples, "keep_all": keep_all, "peak_mb": after / 1024,
            "before_mb": before / 1024, "growth_mb": (after - before) / 1024, "seconds": seconds}  # fmt: skip


def main() -> None:
    if len(sys.argv) == 3:  # the child process
        print(json.dumps(child(int(sys.argv[1]), sys.argv[2] == "keep")))
        return
    rows = []
    for keep in ("stream", "keep"):
        for n in SIZES:
            done = subprocess.run([sys.executable, __file__, str(n), keep], capture_output=True,
                                  text=True, check=True)  # fmt: skip
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            how = "keep every prediction" if row["keep_all"] else "tw.interpret (streaming)"
            print(f"{how:26} n={n:>9,}  peak RSS {row['peak_mb']:7.1f} MB, growth over the "
                  f"warm-up {row['growth_mb']:6.1f} MB, {row['seconds']:.1f} s", flush=True)  # fmt: skip
    Path("/tmp/interpret_memory.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
