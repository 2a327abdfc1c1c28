"""Run records: every check, watch and LR range test leaves a folder you can come back to.

    import trainwise as tw

    with tw.runs.start("watch", name="resnet-lr3e-3", config={"lr": 3e-3}, optimizer=opt) as run:
        for step, (x, y) in enumerate(loader):
            ...
            run.log_metrics(step, {"train/loss": loss.item(), "lr": sched.get_last_lr()[0]})
            run.log_layers(step, "grad_norm", {"fc1.weight": 0.12, "fc2.weight": 0.03})
        run.log_findings(findings)

`trainwise runs` lists the records; see record.py for the folder's layout.
"""

from trainwise.runs.describe import describe_optimizer, describe_setup
from trainwise.runs.layout import RUNS_DIR_ENV, runs_root
from trainwise.runs.record import Run, recording, start
from trainwise.runs.store import RunRecord, find_run, list_runs

__all__ = [
    "RUNS_DIR_ENV",
    "Run",
    "RunRecord",
    "describe_optimizer",
    "describe_setup",
    "find_run",
    "list_runs",
    "recording",
    "runs_root",
    "start",
]
