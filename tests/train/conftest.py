import pytest


@pytest.fixture(autouse=True)
def _quick_html_report(monkeypatch):
    """The HTML report of a run record draws a dozen matplotlib figures (seconds per run); the
    in-process fit tests read the record's other files, so they get a one-line stand-in. The
    CLI's subprocess writes the real one (test_fit_cli.py checks it)."""
    import trainwise.report.html as html

    monkeypatch.setattr(
        html, "write_html_report", lambda path: (path / "report.html").write_text("<html>")
    )
