"""A throwaway PostgreSQL server from Debian's binaries (the `postgresql` package; `make test`
installs it): initdb into a fresh folder, pg_ctl start on a free local port, trust auth for one
user, pg_ctl stop at the end. PostgreSQL refuses to run as root, so under root the server runs
as the package's `postgres` user (in a folder that user owns)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

USER = "trainwise"


def find_binaries() -> Path | None:
    """The folder with initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    folder: Path
    port: int
    bin: Path
    run_as: str | None

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    @classmethod
    def start(cls, folder: Path | None = None) -> PostgresServer:
        binaries = find_binaries()
        if binaries is None:
            raise FileNotFoundError("no PostgreSQL binaries (apt-get install postgresql)")
        run_as = "postgres" if os.geteuid() == 0 else None
        # Under root the folder must be reachable by the postgres user: a fresh one in /tmp.
        folder = Path(tempfile.mkdtemp(prefix="trainwise-pg-")) if run_as or folder is None \
            else folder
        data = folder / "data"
        if run_as:
            user = pwd.getpwnam(run_as)
            os.chown(folder, user.pw_uid, user.pw_gid)
        server = cls(folder, free_port(), binaries, run_as)
        server._run("initdb", "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8",
                    "--no-sync")
        server._run("pg_ctl", "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60",
                    "-o", f"-p {server.port} -k {folder} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off -c max_connections=50", "start")
        return server

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w",
                      "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd="/", timeout=120)
        if done.returncode != 0:
            log = self.folder / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr[-2000:]} "
                               f"{tail}")
