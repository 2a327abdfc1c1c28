"""The fault suite in its quick form: every broken case caught, no alarm on a healthy one."""

import importlib.util
import sys
from pathlib import Path

SUITE = Path(__file__).parents[1] / "benchmarks" / "faults.py"


def _suite():
    spec = importlib.util.spec_from_file_location("fault_suite", SUITE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def test_fault_suite_quick_has_full_recall_and_no_false_alarms():
    suite = _suite()
    results = suite.run_suite(quick=True)
    failures = [
        f"{r.case}: expected {r.expected}, fired {r.fired}, alarms {r.alarms} {r.crashed}"
        for r in results
        if not r.ok
    ]
    assert not failures, "\n".join(failures)
    assert any(r.healthy for r in results) and any(not r.healthy for r in results)
