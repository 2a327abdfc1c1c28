"""Dict-batch parity: does `trainwise check` find the same things when the same data come as
dicts `{"x": input, "labels": target}` instead of `(x, y)` pairs?

For every fault case (faults/<family>/<case>.py, see faults.py) whose items are (x, y) pairs,
the case is loaded (seeded as faults.py seeds it) and checked as written; then it is loaded
again with the same seed and its train and val datasets are wrapped so that each item is
`{"x": x, "labels": y}` (a DataLoader is rebuilt over the wrapped dataset with the same
batch_size, shuffle and drop_last, and a collate that works on dicts), every other Setup field
kept, and checked again with the same seed and options. The sets of fired rule slugs (error,
warning and info; a stage that crashed counts as `crashed:<stage>`) are compared.

Speed is not judged: the protocol runs with slow-step's limit lifted, as tests/helpers.py
`speed_unjudged()` does (the step is still measured). The dict form adds a little per-item
work (the wrapper, collating a dict), and how fast or how loaded the machine is must decide
neither a finding nor which experiments --quick skips; otherwise a slow-step that fires on one
run and not the other would be noise, not a difference between the two forms.

Cases whose items are not (x, y) pairs are skipped with the reason: dict items already (the
BERT and two-input cases), a Lightning training step (it unpacks `x, y = batch` itself), a
setup that names its own keys or split, tuple inputs.

    python benchmarks/dict_batches.py              # the full protocol on every case
    python benchmarks/dict_batches.py --quick      # the quick protocol (as faults.py --quick)
    python benchmarks/dict_batches.py --static     # the static stage only
    python benchmarks/dict_batches.py -k protocol  # only cases whose path contains "protocol"
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler, default_collate

sys.path.insert(0, str(Path(__file__).parent))
from faults import FAULTS, case_paths  # noqa: E402

import trainwise as tw  # noqa: E402
from trainwise.loader import load_setup  # noqa: E402
from trainwise.spec import Setup  # noqa: E402
from trainwise.stages.protocol import default_stages  # noqa: E402
from trainwise.stages.speed import SpeedStage  # noqa: E402
from trainwise.stages.static import StaticStage  # noqa: E402
from trainwise.steps import TrainingStep  # noqa: E402

INPUT_KEY, TARGET_KEY = "x", "labels"


# -- the dict twin --------------------------------------------------------------------------


class DictItems(Dataset):
    """A map-style dataset whose items are `{"x": x, "labels": y}` for the base's `(x, y)`."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict:
        x, y = self.base[index]
        return {INPUT_KEY: x, TARGET_KEY: y}


class IterableDictItems(IterableDataset):
    """The same for an iterable dataset."""

    def __init__(self, base: IterableDataset):
        self.base = base

    def __iter__(self):
        for x, y in self.base:
            yield {INPUT_KEY: x, TARGET_KEY: y}


def dict_collate(collate: Callable[[list], Any]) -> Callable[[list], Any]:
    """A collate over dict items doing what `collate` did over the (x, y) pairs."""
    if collate is default_collate:
        return default_collate  # it collates dicts key by key

    def collate_dicts(items: list[dict]) -> dict:
        x, y = collate([(item[INPUT_KEY], item[TARGET_KEY]) for item in items])
        return {INPUT_KEY: x, TARGET_KEY: y}

    return collate_dicts


def as_dicts(source: Dataset | DataLoader | None) -> Dataset | DataLoader | None:
    if source is None:
        return None
    if not isinstance(source, DataLoader):
        wrap = IterableDictItems if isinstance(source, IterableDataset) else DictItems
        return wrap(source)
    dataset = source.dataset
    wrap = IterableDictItems if isinstance(dataset, IterableDataset) else DictItems
    return DataLoader(
        wrap(dataset),
        batch_size=source.batch_size,
        shuffle=isinstance(source.sampler, RandomSampler),
        drop_last=source.drop_last,
        collate_fn=dict_collate(source.collate_fn),
    )


def dict_twin(setup: Setup) -> Setup:
    """The same setup, its train and val yielding dicts; every other init field kept."""
    return dataclasses.replace(setup, train=as_dicts(setup.train), val=as_dicts(setup.val))


def _first_item(source: Dataset | DataLoader) -> Any:
    dataset = source.dataset if isinstance(source, DataLoader) else source
    if isinstance(dataset, IterableDataset):
        return next(iter(dataset))
    return dataset[0]


def skip_reason(setup: Setup) -> str:
    """Why the case cannot be handed over as {"x", "labels"} dicts; "" when it can."""
    for where, source in (("train", setup.train), ("val", setup.val)):
        if source is None:
            continue
        if isinstance(source, DataLoader) and source.batch_size is None:
            return f"{where} DataLoader has a custom batch_sampler"
        item = _first_item(source)
        if isinstance(item, dict):
            return f"{where} items are dicts already ({', '.join(map(str, item))})"
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            return f"{where} items are not (x, y) pairs ({type(item).__name__})"
        if isinstance(item[0], (tuple, list, dict)):
            return f"{where} items have tuple/dict inputs"
    if setup.split is not None or setup.inputs is not None or setup.target is not None:
        return "names its own batch keys / split"
    if isinstance(setup.loss, TrainingStep):
        return f"the training step {setup.loss.name} unpacks (x, y) batches itself"
    if setup.loss is None:
        return "the model computes its own loss"
    return ""


# -- running --------------------------------------------------------------------------------


def speed_unjudged(quick: bool) -> list:
    """The protocol with slow-step's limit lifted, as tests/helpers.py speed_unjudged()."""
    return [
        SpeedStage(slow_step_seconds=math.inf) if stage.name == "speed" else stage
        for stage in default_stages(quick=quick)
    ]


@dataclasses.dataclass
class Form:
    fired: set[str]
    seconds: float
    crashed: str = ""  # the whole check failed (a SetupError, ...)


@dataclasses.dataclass
class Parity:
    case: str
    skipped: str = ""
    pairs: Form | None = None
    dicts: Form | None = None

    @property
    def same(self) -> bool:
        return (
            bool(self.pairs and self.dicts)
            and self.pairs.fired == self.dicts.fired
            and (self.pairs.crashed == self.dicts.crashed)
        )


def load(path: Path) -> Setup:
    # faults.run_case seeds before loading: cases build their data and models when loaded.
    torch.manual_seed(0)
    return load_setup(str(path))


def run_form(setup_of: Callable[[], Setup], quick: bool, static: bool) -> Form:
    t0 = time.perf_counter()
    try:
        setup = setup_of()
        torch.manual_seed(0)  # as faults.run_case: the stages are made after its seeding
        stages = [StaticStage()] if static else speed_unjudged(quick)
        report = tw.check(setup, quick=quick, record=False, stages=stages)
    except Exception as exc:
        return Form(set(), time.perf_counter() - t0, f"{type(exc).__name__}: {exc}")
    fired = {f.rule for f in report.findings}
    fired |= {f"crashed:{s.name}" for s in report.stages if s.status == "crashed"}
    return Form(fired, time.perf_counter() - t0)


def run_case(path: Path, quick: bool, static: bool) -> Parity:
    name = str(path.relative_to(FAULTS).with_suffix(""))
    try:
        reason = skip_reason(load(path))
    except Exception as exc:
        return Parity(name, skipped=f"could not load: {type(exc).__name__}: {exc}")
    if reason:
        return Parity(name, skipped=reason)
    pairs = run_form(lambda: load(path), quick, static)
    dicts = run_form(lambda: dict_twin(load(path)), quick, static)
    return Parity(name, pairs=pairs, dicts=dicts)


# -- the table ------------------------------------------------------------------------------


def _shown(form: Form) -> str:
    if form.crashed:
        return f"[magenta]crashed: {escape(form.crashed)}"
    return ", ".join(sorted(form.fired)) or "-"


def difference(r: Parity) -> str:
    assert r.pairs is not None and r.dicts is not None
    if r.same:
        return "[green]yes"
    parts = [f"-{s}" for s in sorted(r.pairs.fired - r.dicts.fired)]
    parts += [f"+{s}" for s in sorted(r.dicts.fired - r.pairs.fired)]
    if r.pairs.crashed != r.dicts.crashed:
        parts.append("check crashed on " + ("pairs" if r.pairs.crashed else "dicts"))
    return "[bold red]" + escape(" ".join(parts)) + " (on dicts)"


def print_results(results: list[Parity], console: Console) -> None:
    table = Table()
    for col in ("case", "fired on pairs", "fired on dicts", "same?"):
        table.add_column(col)
    for r in results:
        if r.skipped:
            table.add_row(r.case, f"[dim]skipped: {escape(r.skipped)}", "", "")
            continue
        table.add_row(r.case, _shown(r.pairs), _shown(r.dicts), difference(r))
    console.print(table)
    compared = [r for r in results if not r.skipped]
    same = sum(r.same for r in compared)
    pairs_s = sum(r.pairs.seconds for r in compared)
    dicts_s = sum(r.dicts.seconds for r in compared)
    console.print(
        f"{same} of {len(compared)} cases: the same findings "
        f"({len(results) - len(compared)} skipped); time on pairs {pairs_s:.1f}s, "
        f"on dicts {dicts_s:.1f}s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick protocol")
    parser.add_argument("--static", action="store_true", help="the static stage only")
    parser.add_argument("-k", dest="only", default="", help="cases whose path contains this")
    args = parser.parse_args()
    console, progress = Console(width=200), Console(stderr=True)
    results = []
    for path in case_paths(args.only):
        results.append(run_case(path, args.quick, args.static))
        progress.print(f"[dim]{results[-1].case}: {'skipped' if results[-1].skipped else 'done'}")
    print_results(results, console)
    return 0 if all(r.same for r in results if not r.skipped) else 1


if __name__ == "__main__":
    sys.exit(main())
