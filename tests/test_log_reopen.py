"""The log file and logrotate: rename it, send SIGUSR1, and nac writes a new
file of that name without losing a line (nac.log.ReopeningLogFile); the
real server and its worker processes take the signal as meant."""

from __future__ import annotations

import os
import re
import signal
import shutil
import subprocess
import threading
import time
from pathlib import Path

from twisted.trial import unittest

from nac.certs import issue_certificate
from nac.log import ReopeningLogFile
from tests.nacserver import NacServer
from tests.test_pt_tls_workers import children, running, wait_for

PASSWORD = "erin's password"


class ReopeningLogFileTests(unittest.TestCase):
    def log_file(self) -> tuple[ReopeningLogFile, Path]:
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        log_file = ReopeningLogFile.fromFullPath(str(path))
        self.addCleanup(log_file.close)
        return log_file, path

    def test_a_moved_file_is_opened_again_at_its_name(self):
        log_file, path = self.log_file()
        log_file.write(b"before\n")
        path.rename(f"{path}.1")
        log_file.write(b"after the rename\n")  # still the renamed file, as logrotate expects
        path.write_bytes(b"")  # logrotate's create
        self.assertEqual(log_file.reopen_or_rotate(), "reopened")
        log_file.write(b"new\n")
        self.assertEqual(Path(f"{path}.1").read_bytes(), b"before\nafter the rename\n")
        self.assertEqual(path.read_bytes(), b"new\n")
        # nocreate: nac creates it
        path.rename(f"{path}.2")
        self.assertEqual(log_file.reopen_or_rotate(), "reopened")
        log_file.write(b"newer\n")
        self.assertEqual(path.read_bytes(), b"newer\n")

    def test_a_file_in_place_is_rotated_as_twistd_does(self):
        log_file, path = self.log_file()
        log_file.write(b"one\n")
        self.assertEqual(log_file.reopen_or_rotate(), "rotated")
        log_file.write(b"two\n")
        self.assertEqual((Path(f"{path}.1").read_bytes(), path.read_bytes()), (b"one\n", b"two\n"))

    def test_no_size_rotation_behind_logrotate(self):
        log_file, path = self.log_file()
        for _ in range(1200):
            log_file.write(b"x" * 1000 + b"\n")
        self.assertEqual(sorted(p.name for p in path.parent.iterdir()), [path.name])

    def test_a_path_that_cannot_be_opened_keeps_the_old_file(self):
        log_file, path = self.log_file()
        path.rename(f"{path}.1")
        path.mkdir()
        with self.assertRaises(OSError):
            log_file.reopen_or_rotate()
        log_file.write(b"still here\n")
        self.assertEqual(Path(f"{path}.1").read_bytes(), b"still here\n")

    def test_threads_writing_meanwhile_lose_no_line(self):
        log_file, path = self.log_file()
        stop = threading.Event()
        written = []

        def writer(n: int) -> None:
            i = 0
            while not stop.is_set():
                log_file.write(f"thread {n} line {i}\n".encode())
                written.append((n, i))
                i += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for k in range(1, 6):
            time.sleep(0.02)
            path.rename(f"{path}.{k}")
            self.assertEqual(log_file.reopen_or_rotate(), "reopened")
        stop.set()
        for thread in threads:
            thread.join()
        lines = []
        for p in path.parent.iterdir():
            lines += p.read_text().splitlines()
        self.assertEqual(len(lines), len(written))
        self.assertEqual(set(lines), {f"thread {n} line {i}" for n, i in written})
        self.assertTrue(all(Path(f"{path}.{k}").stat().st_size for k in range(1, 6)))


class ServerLogRotationTests(unittest.TestCase):
    def test_logrotate_as_the_snippet_does_it(self):
        """Rename nac.log while clients are served, create a new one, send
        SIGUSR1 to the main process: the new lines are in the new file, every
        assessment's line is in one of the two, and the worker (which ignores
        the signal) lives on."""
        server = NacServer({"pt-tls": {"workers": 2}}, ready="all 1 PT-TLS worker processes are accepting")
        server.admin("init")
        server.admin("user", "add", "erin", "--password", PASSWORD)
        server.start(timeout=60)
        self.addCleanup(server.stop)
        (worker,) = children(server.proc.pid)
        rotated = Path(f"{server.log}.1")
        done = []

        def clients() -> None:
            for _ in range(12):
                result = server.client("--client", "erin", "--secret", PASSWORD, "--collectors", "")
                done.append(result.returncode)

        thread = threading.Thread(target=clients)
        thread.start()
        wait_for(lambda: len(done) >= 4, 120, "the first assessments")
        server.log.rename(rotated)
        server.log.touch()  # logrotate's create
        os.kill(worker, signal.SIGUSR1)  # systemctl kill reaches every process of the unit
        os.kill(server.proc.pid, signal.SIGUSR1)
        thread.join(300)
        self.assertEqual(done, [0] * 12)
        wait_for(lambda: "log file" in server.log_text(), 20, "the reopening")
        new = server.log_text()
        old = rotated.read_text()
        self.assertIn(f"[nac#info] log file {server.log} opened again (SIGUSR1)", new)
        self.assertNotIn("opened again", old)
        # every session's "accepting" line, main process or worker, is in one file or the other
        pattern = r"\] accepting PT-TLS stream from 127\.0\.0\.1\[\d+\]"
        self.assertEqual(len(re.findall(pattern, old)) + len(re.findall(pattern, new)), 12, old + new)
        self.assertGreater(len(re.findall(pattern, old)), 0)
        self.assertGreater(len(re.findall(pattern, new)), 0)
        self.assertTrue(running(worker))
        self.assertEqual(children(server.proc.pid), [worker])
        self.assertNotIn("Traceback", old + new)

    def test_logrotate_snippet_runs(self):
        """logrotate itself, with etc/nac.logrotate pointed at the test's log
        and its postrotate at the test's server."""
        if shutil.which("logrotate") is None:
            raise unittest.SkipTest("logrotate is not installed")
        server = NacServer()
        server.start()
        self.addCleanup(server.stop)
        snippet = (Path(__file__).resolve().parents[1] / "etc" / "nac.logrotate").read_text()
        # the test's log file and server instead of the unit's
        snippet = snippet.replace("/var/log/nac/nac.log", str(server.log))
        snippet = re.sub(r"(?m)^(\s*)systemctl kill .*$", rf"\1kill -USR1 {server.proc.pid}", snippet)
        snippet = re.sub(r"(?m)^\s*(su|create) .*$", "", snippet)
        conf = server.dir / "logrotate.conf"
        conf.write_text(snippet)
        state = server.dir / "logrotate.state"
        before = server.log_text()
        result = subprocess.run(["logrotate", "--force", "--state", str(state), str(conf)], capture_output=True,
                                text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        wait_for(lambda: "opened again" in server.log_text(), 20, "the reopening")
        rotated = sorted(p.name for p in server.dir.iterdir() if p.name.startswith("nac.log."))
        self.assertEqual(rotated, ["nac.log.1"])
        self.assertEqual(Path(f"{server.log}.1").read_text()[:len(before)], before)
        cert, key = issue_certificate(server.state_dir / "ca.pem", server.state_dir / "ca.key", "dana",
                                      server.dir / "dana.pem", server.dir / "dana.key")
        self.assertEqual(server.client("--cert", str(cert), "--key", str(key), "--collectors", "").returncode, 0)
        self.assertIn("accepting PT-TLS stream from 127.0.0.1", server.log_text())
        self.assertNotIn("accepting PT-TLS stream", Path(f"{server.log}.1").read_text())
