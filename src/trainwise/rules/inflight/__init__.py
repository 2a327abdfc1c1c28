"""In-flight rules: detectors that read the watch's signal history and yield Findings.

One module per family; each detector is registered with `@rule(...)` beside its code (see
base.py for what a detector is and sees). Adding a detector on an existing signal is adding a
class to a family module, and its tests.

The families are imported in this order on purpose: it is the order in which the findings of
one judging round are reported (non-finite values before the symptoms they cause).
"""

import importlib

from trainwise.rules.inflight.base import Detector, Phase, View, Watched
from trainwise.rules.registry import in_flight_rules

FAMILIES = ("nonfinite", "weights", "gradients", "activations", "updates", "loss", "loop")
for _family in FAMILIES:  # importing a family registers its rules
    importlib.import_module(f"{__name__}.{_family}")


def detectors() -> list[Detector]:
    """Fresh detectors (some keep state) for one watched run, one per rule judged in flight."""
    return [
        (rule.check if rule.category == "in-flight" else rule.in_flight)(rule)
        for rule in in_flight_rules()
    ]


__all__ = ["Detector", "Phase", "View", "Watched", "detectors"]
