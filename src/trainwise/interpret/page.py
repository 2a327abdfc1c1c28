"""The interpretation report's plain data: every number and every sample array the page draws,
gathered here so that report/interpret_html.py only draws. Samples are read again from the
dataset by index (the pass kept indices, not inputs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainwise.data import to_device
from trainwise.errors import SetupError
from trainwise.interpret.activations import weight_layers

SHOWN_LOSSES = 16  # samples drawn in the top-loss grid
SHOWN_ATTRIBUTIONS = 8
SHOWN_UNITS = 4  # units of the chosen layer whose max-activating inputs are drawn
PER_UNIT = 6


def build_page(interp: Any, layer: str | None = None, attribution: str = "saliency") -> dict:
    """{"summary", "form", "top", "attributions", "confusion", ..., "notes"}: plain data."""
    d = interp.to_dict()
    page: dict[str, Any] = {**d, "form": interp.form, "notes": list(d["notes"])}
    page["top"] = [_drawn(interp, row) for row in d["top_losses"][:SHOWN_LOSSES]]
    page["attributions"] = _attributions(interp, attribution, page["notes"])
    page["attribution_method"] = attribution
    page["weights"] = interp.weight_distributions()
    page["activations"] = interp.activation_distributions()
    page["max_activating"] = _max_activating(interp, layer, page["notes"])
    return page


def _array(value: Any) -> np.ndarray | None:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy()
    return None


def _drawn(interp: Any, row: dict) -> dict:
    """A top-loss row with its input (and, for segmentation, its truth and predicted maps)."""
    x, y = interp.sample(row["index"])
    drawn = {**row, "input": _array(x) if isinstance(x, torch.Tensor) else None}
    if interp.task == "segmentation" and isinstance(x, torch.Tensor):
        setup, model = interp.subject.setup, interp.subject.model
        with torch.no_grad():
            was = model.training
            model.eval()
            out = setup.predict(model, to_device(x.unsqueeze(0), setup.torch_device))
            model.train(was)
        drawn["truth"] = _array(torch.as_tensor(y))
        drawn["prediction"] = out[0].argmax(dim=0).cpu().numpy()
    return drawn


def _attributions(interp: Any, method: str, notes: list[str]) -> list[dict]:
    if interp.form not in ("image", "signal", "sequence", "table"):
        return []
    try:
        found = interp.attributions(SHOWN_ATTRIBUTIONS, method)
    except SetupError as exc:
        notes.append(f"attributions: {exc}")
        return []
    return [{"index": a.index, "target": a.target, "values": a.values,
             "input": _array(interp.sample(a.index)[0])} for a in found]  # fmt: skip


def default_layer(interp: Any) -> str | None:
    """The last weight layer before the output layer (the last hidden representation)."""
    names = list(weight_layers(interp.subject.model))
    return names[-2] if len(names) >= 2 else (names[-1] if names else None)


def _max_activating(interp: Any, layer: str | None, notes: list[str]) -> dict | None:
    layer = layer or default_layer(interp)
    if layer is None:
        return None
    try:
        found = interp.max_activating(layer, k=PER_UNIT)
    except SetupError as exc:
        if layer is not None and "no layer named" in str(exc):
            raise
        notes.append(f"max-activating inputs: {exc}")
        return None
    strongest = sorted(found, key=lambda u: -found[u][0].value if found[u] else 0)[:SHOWN_UNITS]
    units = {}
    for unit in sorted(strongest):
        units[unit] = [{"index": a.index, "value": a.value,
                        "input": _array(interp.sample(a.index)[0])} for a in found[unit]]  # fmt: skip
    return {"layer": layer, "units": units}
