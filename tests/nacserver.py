"""Running the real nac server (``twistd -n nac``) as a subprocess for
end-to-end tests."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from twisted.trial import unittest

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


def netns_unavailable() -> str | None:
    """Why this test process cannot make network namespaces, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    return None


def private_postgres_schema(base_url: str, prefix: str):
    """A new schema in the PostgreSQL database at ``base_url``: (the URL of a
    connection whose search_path is that schema, a function that drops it)."""
    import sqlalchemy as sa

    from nac.db.engine import make_engine

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base_url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')

    def drop():
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()

    url = sa.make_url(base_url)
    options = " ".join(filter(None, [url.query.get("options"), f"-csearch_path={schema}"]))
    return url.update_query_dict({"options": options}).render_as_string(hide_password=False), drop


def make_netns(prefix: str) -> str:
    """A new network namespace with its loopback up, deleted when the test
    process exits; SkipTest when it cannot be made."""
    why = netns_unavailable()
    if why:
        raise unittest.SkipTest(why)
    netns = f"{prefix}-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", netns], capture_output=True, text=True)
    if made.returncode != 0:
        raise unittest.SkipTest(f"cannot create a network namespace: {made.stderr.strip()}")
    atexit.register(subprocess.run, ["ip", "netns", "del", netns], capture_output=True)
    subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
    return netns


def listen_in_netns(testcase, netns: str, port: int) -> None:
    """A TCP server socket on every address of namespace ``netns``, until
    ``testcase`` ends."""
    listener = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c",
         "import socket, sys\n"
         "s = socket.socket()\n"
         f"s.bind(('0.0.0.0', {port}))\n"
         "s.listen()\n"
         "print('ready', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def stop():
        listener.stdin.close()
        listener.wait(10)
        listener.stdout.close()

    testcase.addCleanup(stop)
    testcase.assertEqual(listener.stdout.readline().strip(), "ready")


def service_user_wrapper(workdir: Path, user: str = "nobody", *, setpriv: str | None = None) -> list[str]:
    """An argv prefix under which ``user`` can run this Python and import
    this nac: a private mount namespace (``unshare -m``) in which each
    directory on the way that ``user`` may not pass (pyenv's Python lives in
    /root, mode 0700) is covered by a tmpfs holding just the entries needed,
    bound from the real ones.  Nothing changes outside the namespace.  With
    ``setpriv`` ("user:group") the command then runs as that user and group.
    SkipTest where this process cannot do it (not root, no unshare)."""
    import pwd
    import site

    if os.geteuid() != 0:
        raise unittest.SkipTest("switching to the service user needs root")
    for tool in ("unshare", "mount", "setpriv"):
        if shutil.which(tool) is None:
            raise unittest.SkipTest(f"{tool} (util-linux) is not installed")
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise unittest.SkipTest(f"there is no user {user!r} here")
    needed = [Path(sys.executable).resolve(), Path(sys.prefix), REPO, *map(Path, site.getsitepackages())]
    covers: dict[Path, set[str]] = {}
    for path in needed:
        if not path.exists():  # a venv lists site directories it never made
            continue
        path = path.resolve()
        for depth in range(1, len(path.parts)):
            directory = Path(*path.parts[:depth])
            if not directory.stat().st_mode & 0o001:  # others may not pass
                covers.setdefault(directory, set()).add(path.parts[depth])
                break
    lines = ["set -e"]
    for n, (directory, entries) in enumerate(sorted(covers.items())):
        for m, entry in enumerate(sorted(entries)):
            keep = Path(workdir) / f".keep-{n}-{m}"
            keep.mkdir(parents=True, exist_ok=True)
            lines.append(f"mount --bind '{directory / entry}' '{keep}'")
        lines.append(f"mount -t tmpfs -o mode=755 nac-test '{directory}'")
        for m, entry in enumerate(sorted(entries)):
            lines.append(f"mkdir -p '{directory / entry}'")
            lines.append(f"mount --bind '{Path(workdir) / f'.keep-{n}-{m}'}' '{directory / entry}'")
    lines.append('exec "$@"')
    prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c", "\n".join(lines), "sh"]
    if setpriv:
        name, _, group = setpriv.partition(":")
        prefix += ["setpriv", f"--reuid={name}", f"--regid={group or name}", "--init-groups"]
    return prefix


class NacServer:
    """``twistd -n nac`` with a temporary state directory and configuration.

    ``sections`` maps section names to {key: value}; ``[nac] state_dir`` and
    the PT-TLS listener on 127.0.0.1 with a free port are filled in.  With
    ``netns`` the server (and :meth:`client`) run in that network
    namespace; with ``ready`` the server has started once its log holds
    that text, else once the PT-TLS port listens.  ``twistd_args`` go
    before ``nac`` (``--uid``, ``--gid``); ``wrapper`` is an argv prefix
    the server runs under (:func:`service_user_wrapper`); ``env`` holds
    environment variables for it (PYTHONPATH replaces the repository's).
    """

    def __init__(self, sections: dict | None = None, *, args=(), workdir: str | None = None,
                 netns: str | None = None, ready: str | None = None, twistd_args=(), wrapper=(),
                 env: dict | None = None):
        self.netns = netns
        self.env = dict(env or {})
        self.twistd_args = list(twistd_args)
        self.wrapper = list(wrapper)
        self.ready = ready
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="nac-e2e-"))
        self.state_dir = self.dir / "state"
        self.port = free_port()
        # one process unless a test asks for PT-TLS or RADIUS workers: fewer
        # processes on a 2-core machine, and log lines written where they happen
        conf = {"nac": {"state_dir": str(self.state_dir)},
                "pt-tls": {"listen": "127.0.0.1", "port": str(self.port), "workers": "1"},
                # accounting on a free port, never the machine's 1813
                "radius": {"workers": "1", "acct_port": str(free_port(socket.SOCK_DGRAM))}}
        for section, values in (sections or {}).items():
            conf.setdefault(section, {}).update({k: str(v) for k, v in values.items()})
            for key in [k for k, v in values.items() if v is None]:
                del conf[section][key]  # None: the built-in default
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

    def in_netns(self, argv: list[str]) -> list[str]:
        """``argv`` run in the server's network namespace, if it has one."""
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)

    def start(self, timeout: float = 20.0) -> "NacServer":
        return self.spawn().wait_started(timeout)

    def spawn(self) -> "NacServer":
        """Start the server process without waiting for it (then :meth:`wait_started`)."""
        self.proc = subprocess.Popen(
            self.in_netns(self.wrapper + TWISTD + ["-n", "--pidfile=", "--logfile", str(self.log)]
                          + self.twistd_args + ["nac", "--config", str(self.config)] + self.args),
            cwd=self.dir, env=repo_env(**self.env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return self

    def wait_started(self, timeout: float = 20.0) -> "NacServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
                raise RuntimeError(f"nac exited with {self.proc.returncode}:\n{out}\n{self.log_text()}")
            if self._started():
                return self
            time.sleep(0.05)
        self.stop()
        waited = repr(self.ready) if self.ready else f"listening on {self.port}"
        raise RuntimeError(f"nac did not start ({waited}) within {timeout}s:\n{self.log_text()}")

    def _started(self) -> bool:
        if self.ready:
            return self.ready in self.log_text()
        if self.netns:
            return self.listening(self.port)
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def wait_listening(self, port: int, timeout: float = 20.0) -> None:
        """Wait until the server listens on TCP ``port`` too (another
        transport's listener); RuntimeError with its log if it exits first
        (another process took the port) or does not within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
                raise RuntimeError(f"nac exited with {self.proc.returncode}:\n{out}\n{self.log_text()}")
            if self.listening(port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"nac does not listen on {port} after {timeout}s:\n{self.log_text()}")

    def listening(self, port: int) -> bool:
        """Whether a TCP socket listens on ``port`` in the server's namespace
        (/proc/PID/net shows the namespace of PID)."""
        for table in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{self.proc.pid}/net/{table}") as f:
                    lines = f.read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
        return False

    def admin(self, *args: str) -> str:
        """Run ``nac-admin --config <this server's config> ARGS``; its stdout."""
        done = subprocess.run([sys.executable, "-m", "nac.admin", "--config", str(self.config), *args],
                              env=repo_env(), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"nac-admin {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done.stdout

    def client(self, *args: str, timeout: float = 60, host: str = "127.0.0.1") -> subprocess.CompletedProcess:
        """Run the real ``nac-pt-tls-client`` against this server (at ``host``)."""
        target = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        return subprocess.run(self.in_netns([sys.executable, "-m", "nac.client.cli", target,
                                             "--cacert", str(self.ca), *args]),
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
