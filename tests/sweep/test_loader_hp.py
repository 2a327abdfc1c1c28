"""Setup files with `def setup(hp)` and a SPACE dict."""

import pytest

from trainwise.errors import SetupError
from trainwise.loader import SetupFile, load_setup, takes_hp

BLOBS = "tests/sweep/blobs_setup.py"


def test_a_setup_taking_hp_gets_the_values(tmp_path):
    path = tmp_path / "s.py"
    path.write_text(
        "import torch\nfrom torch import nn\nfrom torch.utils.data import TensorDataset\n"
        "import trainwise as tw\nSPACE = {'width': 'int:2:4'}\n"
        "def setup(hp):\n    w = hp['width']\n    x = torch.randn(40, 3)\n"
        "    return tw.Setup(model=lambda: nn.Linear(3, w), train=TensorDataset(x, x[:, 0].long()"
        " % 2), loss=nn.CrossEntropyLoss())\n"
        "def plain():\n    return setup({'width': 2})\n"
    )
    file = SetupFile.open(str(path))
    assert file.space == {"width": "int:2:4"}
    assert file.build({"width": 3}).build_model().out_features == 3
    with pytest.raises(SetupError, match=r"setup\(\) raised KeyError"):
        load_setup(str(path))  # `trainwise check` on it: an empty hp, the KeyError named
    with pytest.raises(SetupError, match=r"plain\(\) takes no parameter.*def plain\(hp\)"):
        load_setup(f"{path}:plain", {"width": 3})
    assert load_setup(f"{path}:plain").name == "s:plain"


def test_takes_hp():
    assert takes_hp(lambda hp: hp) and takes_hp(lambda *a: a)
    assert not takes_hp(lambda: 1) and not takes_hp(lambda *, k=1: k)
