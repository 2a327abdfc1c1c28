"""The public API resolves lazily, yet every name is the real object, whatever was imported first."""

import subprocess
import sys

import trainwise as tw


def test_importing_trainwise_does_not_import_torch():
    code = "import sys, trainwise; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_functions_named_like_their_module_stay_functions():
    # Importing the submodules first used to bind the module over the function.
    code = (
        "import trainwise.check, trainwise.watch, trainwise.lr_find\n"
        "import trainwise as tw, types\n"
        "assert callable(tw.check) and not isinstance(tw.check, types.ModuleType)\n"
        "assert callable(tw.watch) and not isinstance(tw.watch, types.ModuleType)\n"
        "assert callable(tw.lr_find) and not isinstance(tw.lr_find, types.ModuleType)\n"
        "assert isinstance(tw.runs, types.ModuleType)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_exported_name_resolves():
    for name in tw.__all__:
        assert getattr(tw, name) is not None
    assert set(tw.__all__) <= set(dir(tw))
    from trainwise.check import check

    assert tw.check is check


def test_all_matches_the_exports():
    assert set(tw.__all__) == set(tw._EXPORTS) | {"__version__"}
