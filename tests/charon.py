"""strongSwan's ``charon-systemd`` as a test peer, driven with ``swanctl``.

Each daemon runs in its own mount namespace with a private ``/run`` (charon
writes its pid file there and refuses to start beside another), optionally
inside a network namespace.  A charon that exits (a plugin that failed to
load, such as ``openssl`` when Debian's ``libstrongswan-standard-plugins`` is
missing, or a bad ``strongswan.conf``) is reported as such, with its exit
status, output and log, rather than as the ``swanctl`` failure that follows
(``swanctl`` only says "exit status 111").
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

CHARON = "/usr/sbin/charon-systemd"
SWANCTL = "/usr/sbin/swanctl"


class CharonExited(RuntimeError):
    """charon-systemd is not running any more."""


class CharonDaemon:
    """charon-systemd started with the ``strongswan.conf`` and
    ``swanctl.conf`` in ``directory`` (the latter loaded), in network
    namespace ``namespace`` when one is given.  Its vici socket is
    ``directory/charon.vici``, its standard output and error go to
    ``directory/charon.out``, and its ``strongswan.conf`` may log to
    ``directory/charon.log`` (:meth:`log`).  ``charon``, ``swanctl`` and
    ``piddir`` (where charon writes its pid file) name another strongSwan
    than Debian's."""

    def __init__(self, directory: Path, *, namespace: str | None = None, env: dict | None = None,
                 start_timeout: float = 20, charon: str = CHARON, swanctl: str = SWANCTL,
                 piddir: str = "/run") -> None:
        import os

        self.directory = directory
        self.env = dict(env if env is not None else os.environ,
                        STRONGSWAN_CONF=str(directory / "strongswan.conf"))
        self.vici = directory / "charon.vici"
        self.swanctl_program = swanctl
        command = ["unshare", "-m", "sh", "-c", f"mount -t tmpfs tmpfs {piddir} && exec {charon}"]
        if namespace is not None:
            command = ["ip", "netns", "exec", namespace, *command]
        with open(directory / "charon.out", "wb") as out:
            self.process = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + start_timeout
        while not self.vici.exists():
            self.check_running()
            if time.monotonic() > deadline:
                raise CharonExited(f"charon-systemd made no vici socket within {start_timeout:g} s"
                                   f"{self.evidence()}")
            time.sleep(0.1)
        self.swanctl("--load-all", "--file", str(directory / "swanctl.conf"))

    def exit_status(self, wait: float = 0) -> int | None:
        """charon's exit status, or None while it runs (waiting up to ``wait`` s for it to end)."""
        try:
            return self.process.wait(wait) if wait else self.process.poll()
        except subprocess.TimeoutExpired:
            return None

    def check_running(self, wait: float = 0) -> None:
        """CharonExited, saying why, when charon has exited."""
        status = self.exit_status(wait)
        if status is not None:
            raise CharonExited(f"charon-systemd exited with status {status}{self.evidence()}")

    def evidence(self, lines: int = 25) -> str:
        """The end of charon's output and log, for a failure message."""
        parts = []
        for name in ("charon.out", "charon.log"):
            path = self.directory / name
            text = path.read_text(errors="replace").strip() if path.exists() else ""
            if text:
                parts.append(f"\n--- {name} (end) ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "".join(parts)

    def swanctl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """``swanctl ARGS`` against this daemon.  A failure is CharonExited
        when charon is gone (or goes within a second: a dying daemon may
        still accept the connection), else CalledProcessError with
        ``check``."""
        done = subprocess.run([self.swanctl_program, *args, "--uri", f"unix://{self.vici}"], env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            self.check_running(wait=1)
            if check:
                raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
        return done

    def log(self) -> str:
        path = self.directory / "charon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_charon(directory: Path, strongswan_conf: str, swanctl_conf: str, *,
                 namespace: str | None = None, **programs) -> CharonDaemon:
    """A :class:`CharonDaemon` with these two configuration files written
    into ``directory``; ``programs``: its ``charon``, ``swanctl``, ``piddir``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "strongswan.conf").write_text(strongswan_conf)
    (directory / "swanctl.conf").write_text(swanctl_conf)
    return CharonDaemon(directory, namespace=namespace, **programs)
