"""The command-line programs when the reader of their output has gone
(``nac-admin … | head``): no BrokenPipeError traceback, the exit status of
the work itself."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial import unittest

from tests.nacserver import repo_env
from tests.vectors import records


def run_into_closed_pipe(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` with its standard output a pipe nobody reads any more
    (the read end closed before it starts, as `head` does once it has its
    lines): its exit status and what it wrote to stderr."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(argv, stdout=write, stderr=subprocess.PIPE, env=repo_env(), text=True, timeout=120)
    finally:
        os.close(write)
    return done.returncode, done.stderr


class ClosedPipeTests(unittest.TestCase):
    def test_nac_admin(self):
        with tempfile.TemporaryDirectory(prefix="nac-console-") as tmp:
            conf = Path(tmp) / "nac.conf"
            conf.write_text(f"[nac]\nstate_dir = {tmp}/state\n")
            for argv in (["config", "sample"], ["--json", "config", "sample"], ["init"], ["user", "list"]):
                code, err = run_into_closed_pipe([sys.executable, "-m", "nac.admin", "--config", str(conf), *argv])
                self.assertEqual((code, err), (0, ""), argv)

    def test_nac_decode(self):
        batch = next(r["hex"] for r in records("strongswan-pt-tls/carol-sasl-open-ports-denied.jsonl")
                     if r["layer"] == "pb-tnc")
        for json_flag in ([], ["--json"]):
            code, err = run_into_closed_pipe([sys.executable, "-m", "nac.decode", *json_flag, "--hex", batch])
            self.assertEqual((code, err), (0, ""))
