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


def test_a_setup_object_in_the_file_is_taken_as_it_is(tmp_path):
    """`setup = tw.Setup(...)` at the top of the file, as a first script is written: used as
    it is; a sweep's values for it get the function form asked for; other objects are named."""
    path = tmp_path / "obj.py"
    path.write_text(
        "import torch\nfrom torch import nn\nfrom torch.utils.data import TensorDataset\n"
        "import trainwise as tw\nx = torch.randn(40, 3)\n"
        "setup = tw.Setup(model=lambda: nn.Linear(3, 2), train=TensorDataset(x, x[:, 0].long()"
        " % 2), loss=nn.CrossEntropyLoss())\nwidth = 3\n"
    )
    setup = load_setup(str(path))
    assert setup.name == "obj" and setup.build_model().out_features == 2
    with pytest.raises(SetupError, match=r"`setup` is a Setup object.*def setup\(hp\)"):
        load_setup(str(path), {"width": 3})
    with pytest.raises(SetupError, match=r"`width` is of type int; expected `def width\(\)"):
        load_setup(f"{path}:width")
    with pytest.raises(SetupError, match=r"no function `other\(\)`.*Setups in the file: setup\."):
        load_setup(f"{path}:other")
