import sys
from pathlib import Path

import pytest

# pgserver, sweepkit, and the setup files' neighbours (slow_setup imports blobs_setup)
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _quick_html_report(monkeypatch):
    """A fit record's HTML report draws a dozen matplotlib figures (seconds per trial); the
    sweep tests read the records' other files. The sweep's own report is drawn for real."""
    import trainwise.report.html as html

    monkeypatch.setattr(
        html, "write_html_report", lambda path: (path / "report.html").write_text("<html>")
    )


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of Debian's binaries on a free local port, for the session."""
    from pgserver import PostgresServer, find_binaries

    if find_binaries() is None:
        pytest.skip("PostgreSQL binaries not installed (apt-get install postgresql; `make "
                    "test` installs them)")
    server = PostgresServer.start()
    yield server
    server.stop()
