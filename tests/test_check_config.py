"""Checking a configuration without starting nac (``twistd nac --check``,
``nac-admin check-config``), and nac's version (``--version``)."""

from __future__ import annotations

import configparser
import json
import socket
import subprocess
import sys
from pathlib import Path

from twisted.trial import unittest

import nac
from nac.certs import ensure_demo_pki
from tests.nacserver import REPO, TWISTD, free_port, repo_env


def run(argv, cwd, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=repo_env(), capture_output=True, text=True, timeout=timeout)


class CheckTests(unittest.TestCase):
    def setUp(self):
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.state = self.dir / "state"
        self.conf = self.dir / "nac.conf"

    def write(self, text: str = "", *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.conf.write_text(f"[nac]\nstate_dir = {self.state}\n{text}"
                             f"[pt-tls]\nlisten = 127.0.0.1\nport = {self.port}\n")

    def twistd_check(self, *args) -> subprocess.CompletedProcess:
        return run(TWISTD + ["nac", "--config", str(self.conf), *args, "--check"], self.dir)

    def admin_check(self, *args) -> subprocess.CompletedProcess:
        return run([sys.executable, "-m", "nac.admin", "check-config", "--config", str(self.conf), *args],
                   self.dir)

    def assertOk(self, done: subprocess.CompletedProcess) -> None:
        self.assertEqual((done.returncode, done.stderr), (0, ""), done.stdout)
        self.assertEqual(done.stdout, f"configuration OK: {self.conf}\n")

    def assertError(self, done: subprocess.CompletedProcess, section: str, key: str, *, prefix: str = "",
                    source: str | None = None) -> str:
        self.assertNotEqual(done.returncode, 0, done.stdout)
        self.assertEqual(done.stdout, "")
        (line,) = done.stderr.splitlines()
        self.assertTrue(line.startswith(f"{prefix}{source or self.conf}: [{section}] {key}: "), line)
        self.assertNotIn("Traceback", done.stderr)
        return line

    # -- a good configuration ------------------------------------------------------------

    def test_first_start_passes_and_nothing_is_written(self):
        self.write("transports = pt-tls, radius, ikev2\nimvs = os, scanner, swima\n"
                   "[radius]\nsecret = s3cret\n")
        for done in (self.twistd_check(), self.admin_check()):
            self.assertOk(done)
        # the state directory, demo certificates, database and key are the first start's to make
        self.assertFalse(self.state.exists())

    def test_no_port_is_bound(self):
        # the check passes while another program holds the port, which start-up could not bind
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            self.write(port=other.getsockname()[1])
            self.assertOk(self.twistd_check())
            self.assertOk(self.admin_check())
            start = run(TWISTD + ["-n", "--pidfile=", "nac", "--config", str(self.conf)], self.dir)
            self.assertIn("[pt-tls] port: cannot listen", start.stderr)

    def test_existing_state_is_read_not_changed(self):
        self.write()
        init = run([sys.executable, "-m", "nac.admin", "--config", str(self.conf), "init"], self.dir)
        self.assertEqual(init.returncode, 0, init.stderr)
        pki = ensure_demo_pki(self.state)
        before = {p.name: p.stat().st_mtime_ns for p in self.state.iterdir()}
        self.assertOk(self.twistd_check())
        self.assertOk(self.admin_check())
        done = run([sys.executable, "-m", "nac.admin", "--json", "check-config", "--config", str(self.conf)],
                   self.dir)
        self.assertEqual(json.loads(done.stdout), {"ok": True, "config": str(self.conf)})
        self.assertEqual({p.name: p.stat().st_mtime_ns for p in self.state.iterdir()}, before)
        self.assertTrue(pki.server_cert.exists())

    def test_worker_processes_are_not_started(self):
        self.conf.write_text(f"[nac]\nstate_dir = {self.state}\ntransports = pt-tls, radius\n"
                             f"[pt-tls]\nlisten = 127.0.0.1\nport = {free_port()}\nworkers = 3\n"
                             f"[radius]\nsecret = s\nworkers = 2\n")
        done = self.twistd_check()
        self.assertOk(done)

    # -- errors: one line, exit status 1 ---------------------------------------------------

    def test_bad_value(self):
        self.write("log_level = loud\n")
        self.assertError(self.twistd_check(), "nac", "log_level")
        self.assertError(self.admin_check(), "nac", "log_level", prefix="nac-admin: error: ")

    def test_unknown_imv(self):
        self.write("imvs = nosuch\n")
        self.assertError(self.twistd_check(), "nac", "imvs")
        self.assertError(self.admin_check(), "nac", "imvs", prefix="nac-admin: error: ")

    def test_key_of_another_certificate(self):
        pki = ensure_demo_pki(self.dir / "pki")
        other = ensure_demo_pki(self.dir / "other")
        self.write()
        with self.conf.open("a") as f:
            f.write(f"cert = {pki.server_cert}\nkey = {other.server_key}\n")
        self.assertError(self.twistd_check(), "pt-tls", "key")
        self.assertError(self.admin_check(), "pt-tls", "key", prefix="nac-admin: error: ")

    def test_missing_ca(self):
        self.write()
        with self.conf.open("a") as f:
            f.write(f"ca = {self.dir / 'ca.pem'}\n")
        self.assertError(self.twistd_check(), "pt-tls", "ca")

    def test_database_of_a_newer_nac(self):
        import sqlalchemy as sa

        self.write()
        self.state.mkdir()
        engine = sa.create_engine(f"sqlite:///{self.state / 'nac.db'}")
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
            connection.exec_driver_sql("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
        engine.dispose()
        self.assertError(self.twistd_check(), "nac", "db")
        self.assertError(self.admin_check(), "nac", "db", prefix="nac-admin: error: ")

    def test_server_database_without_schema(self):
        # a shared database is nac-admin init's to set up, not start-up's: the check says so
        self.write(f"db = sqlite:///file:{self.dir / 'shared.db'}?mode=rwc&uri=true\n")
        line = self.assertError(self.twistd_check(), "nac", "db")
        self.assertIn("nac-admin init", line)

    def test_state_directory_that_cannot_be_made(self):
        blocker = self.dir / "file"
        blocker.write_text("")
        self.conf.write_text(f"[nac]\nstate_dir = {blocker / 'state'}\n"
                             f"[pt-tls]\nlisten = 127.0.0.1\nport = {free_port()}\n")
        self.assertError(self.twistd_check(), "nac", "state_dir")

    def test_db_option_of_nac_admin_is_checked(self):
        self.write()
        self.assertError(self.admin_check("--db", "postgresql+nosuchdriver://nac@localhost/nac"), "nac", "db",
                         prefix="nac-admin: error: ", source="command line")


class VersionTests(unittest.TestCase):
    def test_twistd_nac_version(self):
        done = run(TWISTD + ["nac", "--version"], REPO)
        self.assertEqual((done.returncode, done.stdout, done.stderr), (0, f"nac {nac.__version__}\n", ""))

    def test_nac_admin_version(self):
        done = run([sys.executable, "-m", "nac.admin", "--version"], REPO)
        self.assertEqual((done.returncode, done.stdout, done.stderr), (0, f"nac {nac.__version__}\n", ""))

    def test_one_source_of_the_version(self):
        setup = configparser.ConfigParser()
        setup.read(REPO / "setup.cfg")
        self.assertEqual(setup["metadata"]["version"], "attr: nac.__version__")
        self.assertRegex(nac.__version__, r"^\d+\.\d+\.\d+")
