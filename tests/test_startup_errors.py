"""Start-up errors of the real ``twistd -n nac``: one line on stderr naming
the file, the section and the key; exit status non-zero; no traceback and
no usage text."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.trial import unittest

from nac.certs import ensure_demo_pki
from tests.nacserver import TWISTD, free_port, repo_env

NOBODY = "nobody"


def unprivileged_unavailable() -> str | None:
    """Why this test process cannot run nac as user nobody, or None."""
    if os.geteuid() != 0:
        return "running nac as user nobody needs root"
    for tool in ("unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    return None


def _closed_ancestor(path: Path) -> tuple[Path, Path] | None:
    """The topmost directory above ``path`` others may not enter, and its
    child on the way to ``path``; None when every one is open."""
    parts = path.resolve().parts
    for i in range(2, len(parts)):
        if not os.stat(Path(*parts[:i])).st_mode & 0o001:
            return Path(*parts[:i]), Path(*parts[:i + 1])
    return None


def as_nobody(argv: list[str], *, drop: str = "setpriv") -> list[str]:
    """``argv`` run as user nobody.

    This Python may live where nobody cannot enter (``/root/.pyenv``): then
    ``argv`` runs in a mount namespace of its own in which that directory is
    replaced by an open one holding only the way to the interpreter, which
    changes nothing for the rest of the machine.  ``drop``: ``setpriv``
    switches to nobody before ``argv``; ``none`` leaves ``argv`` root (it
    switches itself, like twistd --uid)."""
    switch = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY if _has_group(NOBODY) else 'nogroup'}",
              "--clear-groups"] if drop == "setpriv" else []
    # a virtual environment's interpreter and standard library are its base's
    closed = _closed_ancestor(Path(sys.prefix)) or _closed_ancestor(Path(sys.base_prefix))
    if closed is None:
        return switch + argv
    top, child = closed
    hold = tempfile.mkdtemp(prefix="nac-hold-")
    script = (f'set -e; mount --bind "{child}" "{hold}"; mount -t tmpfs -o mode=0755 nac-test "{top}"; '
              f'mkdir -p "{child}"; mount --bind "{hold}" "{child}"; exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *switch, *argv]


def _has_group(name: str) -> bool:
    import grp
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


class StartupErrorTests(unittest.TestCase):
    """Each case runs ``twistd -n nac`` with a configuration that cannot start."""

    def setUp(self):
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.state = self.dir / "state"
        self.conf = self.dir / "nac.conf"

    def write(self, text: str, *, state: Path | None = None) -> Path:
        state = state or self.state
        self.conf.write_text(f"[nac]\nstate_dir = {state}\n" + text)
        return self.conf

    def nac(self, *args: str, argv_wrap=None, twistd_args=(), timeout: float = 60) -> subprocess.CompletedProcess:
        argv = TWISTD + ["-n", "--pidfile=", *twistd_args, "nac", "--config", str(self.conf), *args]
        if argv_wrap is not None:
            argv = argv_wrap(argv)
        return subprocess.run(argv, cwd=self.dir, env=repo_env(), capture_output=True, text=True,
                              timeout=timeout)

    def assertOneLine(self, done: subprocess.CompletedProcess, section: str, key: str,
                      *parts: str, source: str | None = None) -> str:
        """The run ended with one line naming ``source`` (the file), the
        section and the key; that line."""
        output = f"exit status {done.returncode}\nstderr:\n{done.stderr}\nstdout:\n{done.stdout[-3000:]}"
        self.assertNotEqual(done.returncode, 0, output)
        lines = done.stderr.splitlines()
        self.assertEqual(len(lines), 1, output)
        line = lines[0]
        self.assertTrue(line.strip(), output)
        self.assertIn(source or str(self.conf), line)
        self.assertIn(f"[{section}] {key}:", line)
        for part in parts:
            self.assertIn(part, line)
        for text in (done.stderr, done.stdout):
            self.assertNotIn("Traceback", text)
            self.assertNotIn("Usage:", text)
        return line

    def pt_tls(self, **keys) -> str:
        keys = {"listen": "127.0.0.1", "port": free_port(), "workers": 1, **keys}
        return "[pt-tls]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())

    # -- configuration values --------------------------------------------------------------

    def test_bad_value(self):
        self.write(self.pt_tls(port=99999))
        self.assertOneLine(self.nac(), "pt-tls", "port", "'99999' is not a port number")

    def test_bad_value_on_the_command_line(self):
        self.write(self.pt_tls())
        self.assertOneLine(self.nac("--transports", "pt-tls,radiuss"), "nac", "transports",
                           "radiuss", source="command line")

    def test_several_problems_in_one_line(self):
        self.write(self.pt_tls(port=0, idle_timeout="soon"))
        line = self.assertOneLine(self.nac(), "pt-tls", "port")
        self.assertIn("[pt-tls] idle_timeout:", line)

    def test_unknown_imv(self):
        self.write("imvs = os, nosuch\n" + self.pt_tls())
        self.assertOneLine(self.nac(), "nac", "imvs", "unknown IMV 'nosuch'")

    def test_bad_database_url(self):
        self.write("db = postgresql+nosuchdriver://nac@localhost/nac\n" + self.pt_tls())
        self.assertOneLine(self.nac(), "nac", "db", "nosuchdriver")

    def test_database_of_a_newer_nac(self):
        import sqlalchemy as sa

        self.write(self.pt_tls())
        self.state.mkdir()
        engine = sa.create_engine(f"sqlite:///{self.state / 'nac.db'}")
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
            connection.exec_driver_sql("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
        engine.dispose()
        self.assertOneLine(self.nac(), "nac", "db", "9999_from_the_future")

    def test_secret_key_file_others_may_read(self):
        key = self.dir / "secret.key"
        key.write_text(base64.b64encode(bytes(range(32))).decode() + "\n")
        key.chmod(0o640)
        self.write(f"secret_key_file = {key}\n" + self.pt_tls())
        self.assertOneLine(self.nac(), "nac", "secret_key_file", "(mode 0640)", f"chmod 600 {key}")

    # -- certificates ----------------------------------------------------------------------

    def pki(self):
        return ensure_demo_pki(self.dir / "pki")

    def test_missing_certificate(self):
        pki = self.pki()
        self.write(self.pt_tls(cert=self.dir / "missing.pem", key=pki.server_key))
        self.assertOneLine(self.nac(), "pt-tls", "cert", "missing.pem", "No such file or directory")

    def test_unreadable_key(self):
        pki = self.pki()
        self.write(self.pt_tls(cert=pki.server_cert, key=self.dir / "pki"))
        self.assertOneLine(self.nac(), "pt-tls", "key", "cannot read")

    def test_certificate_that_is_not_pem(self):
        pki = self.pki()
        (self.dir / "cert.der").write_bytes(b"0\x82\x01\x00 not a PEM file")
        self.write(self.pt_tls(cert=self.dir / "cert.der", key=pki.server_key))
        self.assertOneLine(self.nac(), "pt-tls", "cert", "cert.der", "no PEM certificate")

    def test_key_of_another_certificate(self):
        pki = self.pki()
        other = ensure_demo_pki(self.dir / "other")
        self.write(self.pt_tls(cert=pki.server_cert, key=other.server_key))
        self.assertOneLine(self.nac(), "pt-tls", "key", "is not the private key of the certificate")

    def test_missing_ca(self):
        self.write(self.pt_tls(ca=self.dir / "no-ca.pem"))
        self.assertOneLine(self.nac(), "pt-tls", "ca", "no-ca.pem", "No such file or directory")

    def test_missing_eap_certificate(self):
        pki = self.pki()
        self.write("transports = pt-tls, radius\n" + self.pt_tls()
                   + f"[radius]\nlisten = 127.0.0.1\nport = {free_port(socket.SOCK_DGRAM)}\nsecret = s3cret\n"
                   + f"[eap]\ncert = {pki.server_cert}\nkey = {self.dir / 'missing.key'}\n")
        line = self.assertOneLine(self.nac(), "eap", "key", "missing.key")
        self.assertNotIn("s3cret", line)

    def test_missing_ikev2_certificate(self):
        pki = self.pki()
        self.write("transports = pt-tls, ikev2\n" + self.pt_tls()
                   + f"[ikev2]\nlisten = 127.0.0.1\nport = {free_port(socket.SOCK_DGRAM)}\n"
                   + f"nat_port = {free_port(socket.SOCK_DGRAM)}\ncert = {self.dir / 'missing.pem'}\n"
                   + f"key = {pki.server_key}\n")
        self.assertOneLine(self.nac(), "ikev2", "cert", "missing.pem")

    # -- listening -------------------------------------------------------------------------

    def hold(self, kind=socket.SOCK_STREAM) -> int:
        """A port of 127.0.0.1 some other program listens on, until the test ends."""
        sock = socket.socket(socket.AF_INET, kind)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            sock.listen()
        return sock.getsockname()[1]

    def test_pt_tls_port_in_use(self):
        port = self.hold()
        self.write(self.pt_tls(port=port))
        self.assertOneLine(self.nac(), "pt-tls", "port", f"TCP port {port}", "already in use")

    def test_pt_tls_port_in_use_with_worker_processes(self):
        port = self.hold()
        self.write(self.pt_tls(port=port, workers=2))
        self.assertOneLine(self.nac(), "pt-tls", "port", f"TCP port {port}", "already in use")

    def test_listen_address_not_of_this_host(self):
        # TEST-NET-1 (RFC 5737): never an address of this host, and nothing is sent to it
        self.write(self.pt_tls(listen="192.0.2.1"))
        self.assertOneLine(self.nac(), "pt-tls", "listen", "192.0.2.1 is not an address of this host")

    def radius(self, port: int, workers: int = 1) -> str:
        return (f"transports = pt-tls, radius\n{self.pt_tls()}"
                f"[radius]\nlisten = 127.0.0.1\nport = {port}\nsecret = s3cret\nworkers = {workers}\n")

    def test_radius_port_in_use(self):
        port = self.hold(socket.SOCK_DGRAM)
        self.write(self.radius(port))
        self.assertOneLine(self.nac(), "radius", "port", f"UDP port {port}", "already in use")

    def test_radius_port_in_use_with_worker_processes(self):
        port = self.hold(socket.SOCK_DGRAM)
        self.write(self.radius(port, workers=2))
        done = self.nac()
        self.assertOneLine(done, "radius", "port", f"UDP port {port}", "already in use")
        self.assertNotIn("worker 1", done.stdout)  # none was started

    def ikev2(self, port: int, nat_port: int) -> str:
        return (f"transports = pt-tls, ikev2\n{self.pt_tls()}"
                f"[ikev2]\nlisten = 127.0.0.1\nport = {port}\nnat_port = {nat_port}\n")

    def test_ikev2_port_in_use(self):
        port = self.hold(socket.SOCK_DGRAM)
        self.write(self.ikev2(port, free_port(socket.SOCK_DGRAM)))
        self.assertOneLine(self.nac(), "ikev2", "port", f"UDP port {port}", "already in use")

    def test_ikev2_nat_port_in_use(self):
        port = self.hold(socket.SOCK_DGRAM)
        self.write(self.ikev2(free_port(socket.SOCK_DGRAM), port))
        self.assertOneLine(self.nac(), "ikev2", "nat_port", f"UDP port {port}", "already in use")

    # -- as a user without privileges ------------------------------------------------------

    def nobody_dir(self) -> None:
        """A work directory user nobody can use (the test root is root's only)."""
        why = unprivileged_unavailable()
        if why:
            raise unittest.SkipTest(why)
        import pwd

        self.dir = Path(tempfile.mkdtemp(prefix="nac-nobody-"))
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.dir.chmod(0o755)
        self.state = self.dir / "state"
        self.state.mkdir(mode=0o700)
        nobody = pwd.getpwnam(NOBODY)
        os.chown(self.state, nobody.pw_uid, nobody.pw_gid)
        self.conf = self.dir / "nac.conf"
        probe = subprocess.run(as_nobody([sys.executable, "-c", "import twisted, sqlalchemy, nac"]),
                               cwd=self.dir, env=repo_env(), capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            raise unittest.SkipTest(f"this Python cannot run as user nobody: {probe.stderr.strip()[-300:]}")

    def test_port_below_1024_as_another_user(self):
        self.nobody_dir()
        self.write(self.pt_tls(port=271))
        line = self.assertOneLine(self.nac(argv_wrap=as_nobody), "pt-tls", "port", "TCP port 271",
                                  "permission denied")
        for advice in ("a port above 1024", "--uid", "CAP_NET_BIND_SERVICE"):
            self.assertIn(advice, line)

    def test_radius_port_below_1024_as_another_user(self):
        self.nobody_dir()
        self.write(self.radius(812))
        self.assertOneLine(self.nac(argv_wrap=as_nobody), "radius", "port", "UDP port 812",
                           "CAP_NET_BIND_SERVICE")

    def test_ikev2_port_500_as_another_user(self):
        self.nobody_dir()
        self.write(self.ikev2(500, free_port(socket.SOCK_DGRAM)))
        self.assertOneLine(self.nac(argv_wrap=as_nobody), "ikev2", "port", "UDP port 500",
                           "CAP_NET_BIND_SERVICE")

    def test_worker_process_that_cannot_start_stops_nac(self):
        # An IMV that loads in the main process but not in a worker process
        # (what a worker alone may lack: a file, a licence, a device)
        plugins = self.dir / "plugins"
        plugins.mkdir()
        (plugins / "worker_shy_imv.py").write_text(
            "import sys\n"
            "from imvs.scanner import ScannerImv\n"
            "class Imv(ScannerImv):\n"
            "    def __init__(self, options):\n"
            "        main = getattr(sys.modules['__main__'], '__spec__', None)\n"
            "        if main is not None and main.name == 'nac.processes':\n"
            "            raise RuntimeError('no licence in worker processes')\n"
            "        super().__init__(options)\n")
        self.write("imvs = worker_shy_imv:Imv\n" + self.pt_tls(workers=2))
        log = self.dir / "nac.log"
        started = time.monotonic()
        env = repo_env()
        env["PYTHONPATH"] = f"{plugins}{os.pathsep}{env['PYTHONPATH']}"
        argv = TWISTD + ["-n", "--pidfile=", "--logfile", str(log), "nac", "--config", str(self.conf)]
        done = subprocess.run(argv, cwd=self.dir, env=env, capture_output=True, text=True, timeout=60)
        line = self.assertOneLine(done, "nac", "imvs", "no licence in worker processes", "in PT-TLS worker process 1")
        self.assertLess(time.monotonic() - started, 50)
        text = log.read_text()
        # not started again and again
        self.assertEqual(text.count("PT-TLS worker 1 cannot start"), 1, text[-3000:])
        self.assertNotIn("trying again", text)
        self.assertIn(line, text)


    def test_an_imv_that_is_not_one(self):
        plugins = self.dir / "plugins"
        plugins.mkdir()
        (plugins / "not_an_imv.py").write_text(
            "class Imv:\n    name = 'half'\n    subscriptions = ((0, 1),)\n    OPTIONS = []\n"
            "    def __init__(self, options):\n        pass\n")
        self.write("imvs = not_an_imv:Imv\n" + self.pt_tls())
        env = repo_env()
        env["PYTHONPATH"] = f"{plugins}{os.pathsep}{env['PYTHONPATH']}"
        done = subprocess.run(TWISTD + ["-n", "--pidfile=", "nac", "--config", str(self.conf)], cwd=self.dir,
                              env=env, capture_output=True, text=True, timeout=60)
        self.assertOneLine(done, "nac", "imvs", "'not_an_imv:Imv' does not provide nac.interfaces.IImv",
                           "it lacks notify_connection_change, receive_message")


class WorkerConfigErrorLaterTests(unittest.TestCase):
    """Once nac runs, a worker that cannot start with a changed file is
    retried (tests/test_pt_tls_workers.py), not the end of nac."""

    def test_supervisor_stops_nac_only_at_start(self):
        from nac import processes as w
        from tests.test_pt_tls_workers import FakeReactor
        from transports.pt_tls import service as pt_service

        reactor = FakeReactor()
        sock = pt_service.listening_socket("127.0.0.1", 0)
        self.addCleanup(sock.close)
        sup = w.WorkerSupervisor("nac.conf", {}, 3, reactor=reactor, publish=lambda event: None)
        sup.share("pt-tls", 3, lambda worker: {"listen": sock.fileno()}, {"family": int(sock.family)}, label="PT-TLS")
        stopped = []
        sup.on_config_error = stopped.append
        sup.startService()
        first, second = reactor.spawned[0][0], reactor.spawned[1][0]
        # worker 2 starts and serves; worker 1 cannot start while nac starts
        second.proto.outReceived(b'{"nac_control": "ready"}\n')
        first.proto.outReceived(b'{"nac_control": "config_error", "line": "nac.conf: [nac] db: no"}\n')
        first.end(exit_code=w.EXIT_CONFIG_ERROR)
        self.assertEqual(stopped, ["nac.conf: [nac] db: no"])
        self.assertNotIn(1, sup._restarts)
        # worker 2, which was ready once, dies later and its successor fails the same way: retried
        second.end(exit_code=1)
        reactor.advance(1)
        successor = reactor.spawned[-1][0]
        self.assertEqual(successor.proto.worker, 2)
        successor.proto.outReceived(b'{"nac_control": "config_error", "line": "nac.conf: [nac] db: no"}\n')
        successor.end(exit_code=w.EXIT_CONFIG_ERROR)
        self.assertEqual(len(stopped), 1)
        self.assertIn(2, sup._restarts)
        sup.stopService()

