"""`tw.sweep`: a study of fit runs over a search space, with Optuna's samplers, pruners and
storages. The storage is opened (and the study created or joined) before any training, so a
storage that cannot be reached fails at once; then 1 worker runs in this process, or W spawned
processes share the study through the storage; `on_update` gets the trials as the storage
holds them about once a second (the CLI's live table)."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from trainwise.errors import SetupError
from trainwise.sweep.plan import SweepPlan
from trainwise.sweep.result import SweepResult, TrialRow, trial_rows, unread_params
from trainwise.sweep.space import Param, build_space
from trainwise.sweep.storage import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, open_storage, resolve
from trainwise.sweep.worker import quiet_optuna, run_worker, worker_main
from trainwise.train.recipe import Recipe

POLL_S = 1.0  # how often the live view reads the storage


def sweep(
    setup: str | Callable[..., Any],
    space: Mapping[str, Any] | Iterable[str | Param] | None = None,
    trials: int = 20,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    recipe: Recipe | None = None,
    timeout: float | None = None,
    workers: int = 1,
    storage: str | None = None,
    study: str | None = None,
    sampler: str = "tpe",
    pruner: str = "asha",
    seed: int = 0,
    sample: float | int | None = None,
    runs_dir: str | Path | None = None,
    record: bool = True,
    preset: str = "cheap",
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
    grace_period: int = GRACE_PERIOD_S,
    on_update: Callable[[list[TrialRow]], None] | None = None,
) -> SweepResult:
    """Search `space` with `trials` fit runs of `setup` and return every trial and the best.

    setup:    a setup file "FILE.py[:FUNCTION]" (its SPACE dict is read too), or a function
              `setup(hp) -> tw.Setup` (for workers > 1, one defined at a module's top level)
    space:    {name: "log:LO:HI" | "float:LO:HI" | "int:LO:HI" | "choice:A,B" | [choices]},
              or ["name=FORM", ...]; Recipe fields (lr, schedule, ...) go to the recipe
    trials:   the study's finished trials to reach (a resumed or joined study counts its own)
    storage:  None (a SQLite file in the runs folder), an Optuna URL, or "journal:PATH"
    study:    its name (default: the setup's name and the time); an existing one is joined
    sampler:  tpe | random | grid;  pruner: asha | hyperband | median | none
    preset:   the watch preset of each trial's fit ("cheap": the sweep's overhead stays low)
    """
    if not isinstance(workers, int) or workers < 1:
        raise SetupError(f"sweep: workers={workers!r}; expected a positive int")
    runs_root = Path(runs_dir) if runs_dir is not None else None
    from trainwise.runs.layout import runs_root as root_of

    spec = resolve(storage, root_of(runs_root), heartbeat_interval, grace_period)
    quiet_optuna()
    connected = open_storage(spec, heartbeat=False)  # an unreachable storage fails first
    target, setup_fn, declared = _setup_source(setup)  # imports the setup file
    params, mapping = _space_parts(space)
    searched = build_space(params, {**(declared or {}), **mapping})
    name = study or default_study_name(target, setup_fn)
    plan = SweepPlan(
        target=target, setup_fn=setup_fn, space=searched, study=name, storage=spec,
        trials=trials, epochs=epochs, steps=steps, recipe=recipe or Recipe(), seed=seed,
        sample=sample, timeout=timeout, sampler=sampler, pruner=pruner,
        runs_dir=str(runs_root) if runs_root is not None else None, record=record,
        preset=preset,
    )  # fmt: skip
    if workers > 1 and setup_fn is not None:
        _check_picklable(setup_fn)
    reader = _create_study(plan, connected)  # before any training
    from trainwise.sweep.record import sweep_record

    with sweep_record(plan, workers) as finish:
        _run(plan, workers, reader, on_update)
        rows = trial_rows(reader)
        result = SweepResult(name, spec.shown, rows, unread_params(rows))
        finish(result)
    return result


def _setup_source(setup: Any) -> tuple[str | None, Callable[..., Any] | None, Any]:
    """(target, setup_fn, the file's SPACE)."""
    if isinstance(setup, (str, os.PathLike)):
        from trainwise.loader import SetupFile

        file = SetupFile.open(str(setup))
        declared = file.space
        if declared is not None and not isinstance(declared, Mapping):
            raise SetupError(f"{file.path}: SPACE is a {type(declared).__name__}; expected a "
                             "dict {name: 'log:LO:HI' | 'int:LO:HI' | ... | [choices]}")  # fmt: skip
        return str(setup), None, declared
    if callable(setup):
        return None, setup, None
    raise SetupError(f"sweep: setup={setup!r}; expected a setup file path or a function")


def _space_parts(space: Any) -> tuple[list[Any], dict[str, Any]]:
    if space is None:
        return [], {}
    if isinstance(space, Mapping):
        return [], dict(space)
    if isinstance(space, str):
        return [space], {}
    return list(space), {}


def default_study_name(target: str | None, setup_fn: Any) -> str:
    if target is not None:
        from trainwise.loader import split_target

        base = split_target(target)[0].stem
    else:
        base = getattr(setup_fn, "__name__", "sweep")
    return f"{base}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _check_picklable(fn: Any) -> None:
    try:
        pickle.dumps(fn)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same to the user
        raise SetupError(
            f"sweep: workers > 1 start new processes, which import the setup function by name; "
            f"{getattr(fn, '__qualname__', fn)!r} cannot be ({exc}). Define it at a module's "
            "top level, or give the setup file's path"
        ) from None


def _create_study(plan: SweepPlan, storage: Any) -> Any:
    """Create the study (or join an existing one) in `storage` and return it for reading."""
    import optuna

    try:
        study = optuna.create_study(study_name=plan.study, storage=storage,
                                    direction="minimize", load_if_exists=True)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - a storage that refuses the study
        raise SetupError(f"--storage {plan.storage.shown}: cannot create study {plan.study!r}: "
                         f"{exc}") from None  # fmt: skip
    space = {name: p.describe() for name, p in plan.space.items()}
    known = study.user_attrs.get("space")
    if known is not None and known != space:
        raise SetupError(
            f"study {plan.study!r} in {plan.storage.shown} searches {known}; this sweep asks for "
            f"{space}. Give another --study NAME for another space"
        )
    study.set_user_attr("space", space)
    return study


def _run(plan: SweepPlan, workers: int, reader: Any,
         on_update: Callable[[list[TrialRow]], None] | None) -> None:  # fmt: skip
    """1 worker: in this process, with the live view on a thread; W: spawned processes, the
    live view here, and their errors raised here (a SetupError as itself)."""
    if workers == 1:
        with _Live(reader, on_update):
            run_worker(plan, 0)
        return
    context = multiprocessing.get_context("spawn")  # fork would copy torch's threads and locks
    errors = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = [context.Process(target=worker_main, args=(plan, i, threads, errors), daemon=False)
             for i in range(workers)]  # fmt: skip
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            _update(reader, on_update)
            time.sleep(POLL_S)
    finally:
        for p in procs:
            if p.is_alive():  # interrupted: the workers go with us
                p.terminate()
            p.join()
    _update(reader, on_update)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    for kind, _worker, message in failures:
        if kind == "setup":
            raise SetupError(message)
    if failures:
        raise RuntimeError(f"sweep worker {failures[0][1]} failed: {failures[0][2]}")
    crashed = [p.exitcode for p in procs if p.exitcode]
    if crashed:
        raise RuntimeError(f"sweep: {len(crashed)} worker process(es) died (exit {crashed})")


def _update(reader: Any, on_update: Callable[[list[TrialRow]], None] | None) -> None:
    if on_update is None:
        return
    try:
        rows = trial_rows(reader)
    except Exception:  # noqa: BLE001 - a busy storage skips one refresh of the view
        return
    on_update(rows)


class _Live:
    """A thread calling on_update every POLL_S while the in-process worker trains."""

    def __init__(self, reader: Any, on_update: Callable[[list[TrialRow]], None] | None) -> None:
        self.reader, self.on_update = reader, on_update
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _Live:
        if self.on_update is not None:
            self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.stop.wait(POLL_S):
            _update(self.reader, self.on_update)

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        _update(self.reader, self.on_update)
