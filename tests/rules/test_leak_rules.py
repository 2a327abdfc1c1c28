"""target-leak on real tabular data (scikit-learn's breast cancer set, offline), clean and with
a column made from the label."""

import numpy as np
import pytest
import torch

from builders import mlp, setup, static
from helpers import assert_fires, assert_silent

LEAK = "target-leak"


def _cancer(extra=None, val_rows: int = 0):
    """Breast cancer (569 rows, 30 features, 2 classes), standardized; `extra(x, y)` returns
    columns to append; the last `val_rows` rows form the validation set."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    if extra is not None:
        x = np.c_[x, extra(x, y, rng)]
    x = torch.tensor(x, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(y)
    cut = len(y) - val_rows
    val = (x[cut:], y[cut:]) if val_rows else None
    return setup(lambda: mlp(x.shape[1], 2), x[:cut], y[:cut], val=val)


@pytest.mark.fires(LEAK)
def test_a_column_derived_from_the_label_is_named_with_its_accuracy_alone():
    # "approval date is set" for "approved": the label, plus a little noise, as column 30
    s = _cancer(lambda x, y, rng: (y == 1) + 0.01 * rng.standard_normal(len(y)))
    f = assert_fires(static(s), LEAK, where="inputs[:, 30]", severity="warning")
    assert f.evidence["features"] == [30] and f.evidence["alone_accuracy"] == [1.0]
    assert f.message.startswith("input feature 30 alone predicts the label: 100.0% of 114")
    assert "majority class gets 55.3%" in f.message and "column 30" in f.fix


@pytest.mark.fires(LEAK)
def test_a_linear_model_without_error_on_enough_validation_rows_is_a_leak():
    # Two columns, each short of a leak alone, whose sum is the label: only the linear test sees it
    def split(x, y, rng):
        a = rng.standard_normal(len(y))
        return np.c_[a, 3.0 * y - a]

    s = _cancer(split, val_rows=269)
    f = assert_fires(static(s), LEAK, severity="warning")
    assert f.evidence["linear_accuracy"] >= 0.995 and f.evidence["val_rows"] == 269
    assert set(f.evidence["features"][:2]) == {30, 31}
    assert max(f.evidence["alone_accuracy"][:2]) < 0.99  # neither column leaks alone
    assert "logistic regression on the inputs gets 99.6% of 269 validation rows" in f.message


@pytest.mark.silent(LEAK)
def test_the_clean_dataset_is_silent():
    # Measured: its best single feature reaches ~92%, a logistic regression ~96% on validation
    assert_silent(static(_cancer()), LEAK)
    assert_silent(static(_cancer(val_rows=269)), LEAK)


@pytest.mark.silent(LEAK)
def test_a_column_that_only_partly_follows_the_label_is_silent():
    # A real, strong feature (80% agreement with the label) is not a leak
    def noisy(x, y, rng):
        return np.where(rng.random(len(y)) < 0.8, y, 1 - y) + 0.01 * rng.standard_normal(len(y))

    assert_silent(static(_cancer(noisy)), LEAK)
