"""The server the HTTP benches measure: ``twistd nac`` with ``transports =
pt-tls, http`` in a temporary directory (SQLite, demo certificates, no
request rate limit), the worktree's ``http`` transport installed for it as
a distribution would, ``devices`` devices written straight into its
database, each with one decided session when ``sessions`` is set.

``bench/http_api.py`` and ``bench/console.py`` use it."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.nacserver import NacServer, free_port, repo_env

#: the decisions the sessions get, in turn: (access, IF-IMV recommendation, evaluation)
DECISIONS = (("allowed", 0, 0), ("allowed", 0, 0), ("allowed", 0, 0), ("isolate", 2, 1), ("denied", 1, 1))


class HttpBenchServer:
    """The server, set up in a new temporary directory; ``with`` it started,
    then stopped and its directory removed."""

    def __init__(self, devices: int, *, sessions: bool = False):
        self.work = work = Path(tempfile.mkdtemp(prefix="nac-bench-http-"))
        site = work / "site" / "nac_http_transport-1.0.dist-info"
        site.mkdir(parents=True)
        (site / "METADATA").write_text("Metadata-Version: 2.1\nName: nac-http-transport\nVersion: 1.0\n")
        (site / "entry_points.txt").write_text("[nac.transports]\nhttp = transports.http.plugin:transport\n")
        self.env = repo_env()
        self.env["PYTHONPATH"] = f"{site.parent}{os.pathsep}{self.env['PYTHONPATH']}"
        self.port = free_port()
        (work / "nac").mkdir()
        self.server = NacServer({"nac": {"transports": "pt-tls, http"},
                                 "http": {"listen": "127.0.0.1", "port": self.port, "rate_limit": 0}},
                                workdir=str(work / "nac"), env={"PYTHONPATH": self.env["PYTHONPATH"]})
        self.admin("init")
        db = sqlite3.connect(self.server.state_dir / "nac.db")
        db.executemany("INSERT INTO devices (device_id, first_seen, last_seen, trusted, description) "
                       "VALUES (?, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 0, '')",
                       [(f"{n:032x}",) for n in range(devices)])
        if sessions:
            db.executemany(
                "INSERT INTO sessions (connection_id, identity, auth_method, device_id, transport, peer_address, "
                "peer_port, started, ended, recommendation, evaluation, access, reason) "
                "VALUES (?, ?, 'sasl-plain', ?, 'pt-tls', '192.0.2.1', 40000, datetime('now'), datetime('now'), "
                "?, ?, ?, ?)",
                [(n, f"user-{n}", n + 1, *DECISIONS[n % len(DECISIONS)][1:], DECISIONS[n % len(DECISIONS)][0],
                  "" if n % len(DECISIONS) < 3 else "Open server ports were detected")
                 for n in range(devices)])
        db.commit()
        db.close()

    def admin(self, *command: str) -> str:
        return subprocess.run([sys.executable, "-m", "nac.admin", "--config", str(self.server.config), *command],
                              env=self.env, capture_output=True, text=True, check=True).stdout

    def __enter__(self) -> "HttpBenchServer":
        self.server.start()
        self.server.wait_listening(self.port)
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
        shutil.rmtree(self.work, ignore_errors=True)
