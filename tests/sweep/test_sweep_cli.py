"""`trainwise sweep` as a user runs it: the --json contract and the sheet through real
subprocesses; unusable input (exit 2) through the same click command in this process."""

import csv
import io
import json
import socket
import subprocess
import sys

from click.testing import CliRunner
from sweepkit import BLOBS

from trainwise.cli import main


def trainwise(*args, cwd):
    return subprocess.run([sys.executable, "-m", "trainwise", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)  # fmt: skip


def test_json_contract_and_the_sheet(tmp_path):
    done = trainwise("sweep", BLOBS, "--param", "width=int:4:16", "--param", "lr=log:1e-2:1e-1",
                     "--trials", "2", "--steps", "24", "--study", "exp1", "--json", "out.json",
                     "--runs-dir", "runs", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "out.json").read_text())
    assert set(result) == {"study", "storage", "best", "trials"}
    assert result["study"] == "exp1"
    assert result["storage"] == f"sqlite:///{(tmp_path / 'runs' / 'sweeps.db').resolve()}"
    assert set(result["best"]) == {"params", "value", "record"}
    assert len(result["trials"]) == 2
    for t in result["trials"]:
        assert {"number", "state", "params", "value", "steps", "record"} <= set(t)
        assert set(t["params"]) == {"width", "lr"} and t["state"] in ("complete", "pruned")
        assert (tmp_path / t["record"] / "run.json").is_file()
    best = min((t for t in result["trials"] if t["state"] == "complete"),
               key=lambda t: t["value"])  # fmt: skip
    assert result["best"] == {k: best[k] for k in ("params", "value", "record")}
    assert "best: trial" in done.stdout and "trainwise runs --sweep exp1" in done.stdout

    # The sheet, in this process (it imports no torch, only Optuna and the runs folder).
    root = str(tmp_path / "runs")
    sheet = invoke("runs", "--root", root, "--sweep", "exp1", "--csv")
    assert sheet.exit_code == 0, sheet.output
    rows = list(csv.DictReader(io.StringIO(sheet.output)))
    assert [int(r["trial"]) for r in rows] == [0, 1]
    assert {r["state"] for r in rows} <= {"complete", "pruned"} and "width" in rows[0]
    markdown = invoke("runs", "--root", root, "--sweep", "exp1", "--markdown")
    assert markdown.output.startswith("| trial | state | value |")
    assert invoke("runs", "--root", root, "--sweep", "exp2").exit_code == 2  # no such study


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_a_malformed_param_exits_2_naming_the_forms():
    out = invoke("sweep", BLOBS, "--param", "lr=exp:1:2", "--steps", "5")
    assert out.exit_code == 2
    assert "log:LO:HI | float:LO:HI | int:LO:HI | choice:A,B,..." in " ".join(out.output.split())


def test_an_unreachable_storage_exits_2_with_the_url(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://me@127.0.0.1:{port}/db"
    out = invoke("sweep", BLOBS, "--steps", "5", "--storage", url, "--runs-dir", str(tmp_path))
    assert out.exit_code == 2 and url in out.output.replace("\n", ""), out.output
    assert not list(tmp_path.iterdir())  # no run record: nothing trained


def test_no_length_exits_2():
    assert invoke("sweep", BLOBS).exit_code == 2
