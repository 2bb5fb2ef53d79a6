"""Running the real nac server (``twistd -n nac``) as a subprocess for
end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TWISTD = [sys.executable, "-c",
          "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def repo_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


class NacServer:
    """``twistd -n nac`` with a temporary state directory and configuration.

    ``sections`` maps section names to {key: value}; ``[nac] state_dir`` and
    the PT-TLS listener on 127.0.0.1 with a free port are filled in.
    """

    def __init__(self, sections: dict | None = None, *, args=(), workdir: str | None = None):
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="nac-e2e-"))
        self.state_dir = self.dir / "state"
        self.port = free_port()
        # one process unless a test asks for PT-TLS workers: fewer processes
        # on a 2-core machine, and log lines written where they happen
        conf = {"nac": {"state_dir": str(self.state_dir)},
                "pt-tls": {"listen": "127.0.0.1", "port": str(self.port), "workers": "1"}}
        for section, values in (sections or {}).items():
            conf.setdefault(section, {}).update({k: str(v) for k, v in values.items()})
        self.config = self.dir / "nac.conf"
        self.config.write_text("".join(
            f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items()) + "\n"
            for s, kv in conf.items()))
        self.log = self.dir / "nac.log"
        self.args = list(args)
        self.proc: subprocess.Popen | None = None

    @property
    def ca(self) -> Path:
        return self.state_dir / "ca.pem"

    def start(self, timeout: float = 20.0) -> "NacServer":
        self.proc = subprocess.Popen(
            TWISTD + ["-n", "--pidfile=", "--logfile", str(self.log), "nac",
                      "--config", str(self.config)] + self.args,
            cwd=self.dir, env=repo_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
                raise RuntimeError(f"nac exited with {self.proc.returncode}:\n{out}\n{self.log_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nac did not listen on {self.port} within {timeout}s:\n{self.log_text()}")

    def admin(self, *args: str) -> str:
        """Run ``nac-admin --config <this server's config> ARGS``; its stdout."""
        done = subprocess.run([sys.executable, "-m", "nac.admin", "--config", str(self.config), *args],
                              env=repo_env(), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"nac-admin {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done.stdout

    def client(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run the real ``nac-pt-tls-client`` against this server."""
        return subprocess.run([sys.executable, "-m", "nac.client.cli", f"127.0.0.1:{self.port}",
                               "--cacert", str(self.ca), *args],
                              env=repo_env(), capture_output=True, text=True, timeout=timeout)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
