"""The static stage: every static rule over the model traced on one batch and sampled data."""

from __future__ import annotations

import logging

from trainwise.data import summarize_sample
from trainwise.errors import SetupError
from trainwise.rules import static_rules
from trainwise.stages.base import CheckRun, StageOutcome

log = logging.getLogger("trainwise")


class StaticStage:
    name = "static"
    title = "Static checks: model, loss, optimizer, data"

    def run(self, run: CheckRun) -> StageOutcome:
        ctx = run.context
        ctx.check_loss_accepts_output()  # unusable input surfaces here, before any rule
        outcome = StageOutcome()
        rules = static_rules()
        for rule in rules:
            try:
                outcome.findings.extend(rule.from_hit(hit) for hit in rule.check(ctx))
            except SetupError:
                raise
            except Exception as exc:  # a bug in trainwise must not hide the other rules
                note = f"rule {rule.slug} could not run: {type(exc).__name__}: {exc}"
                log.warning("trainwise: %s", note)
                outcome.notes.append(note)
        run.static_findings = outcome.findings  # what the experiments' blocking reasons read
        outcome.summary = (
            f"{len(rules)} rules on {len(ctx.train_sample)} train samples"
            + (f", {len(ctx.val_sample)} val samples" if ctx.val_sample is not None else "")
            + f"; task {ctx.task}"
            + (f", {ctx.num_classes} classes" if ctx.num_classes else "")
        )
        outcome.metrics = {
            "rules": len(rules),
            "train_sampled": len(ctx.train_sample),
            "task": ctx.task,
            "num_classes": ctx.num_classes,
            "parameters": sum(p.numel() for p in ctx.model.parameters()),
            "data": summarize_sample(ctx.train_sample, ctx.task),  # the report's data section
        }
        return outcome
