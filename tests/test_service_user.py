"""``twistd --uid nobody --gid nogroup -n nac``: the ports bound as root, then
the main process and its worker processes run as the service user, and what
nac creates in its state directory (database, WAL files, demo PKI, secret
key) belongs to that user (nac.service_user)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import random
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial import unittest

from nac import config as nac_config
from nac import tap
from nac.certs import issue_certificate
from nac.service_user import ServiceUser
from tests.nacserver import REPO, NacServer, repo_env, service_user_wrapper
from tests.test_pt_tls_workers import children

USER, GROUP = "nobody", "nogroup"
PASSWORD = "erin's password"
SECRET = "service-user-s3cret"


def need_root_and_nobody() -> ServiceUser:
    if os.geteuid() != 0:
        raise unittest.SkipTest("switching to another user needs root")
    try:
        pwd.getpwnam(USER)
        grp.getgrnam(GROUP)
    except KeyError:
        raise unittest.SkipTest(f"there is no user {USER} or group {GROUP} here")
    user = ServiceUser.from_twistd({"uid": pwd.getpwnam(USER).pw_uid, "gid": grp.getgrnam(GROUP).gr_gid})
    assert user is not None
    return user


def traversable_workdir(testcase) -> Path:
    """A temporary directory the service user may pass through (the test
    root is root's, 0700)."""
    work = Path(tempfile.mkdtemp(prefix="nac-service-user-"))
    work.chmod(0o711)
    testcase.addCleanup(shutil.rmtree, work, ignore_errors=True)
    return work


def privileged_port(kind=socket.SOCK_STREAM) -> int:
    """A free port below 1024, which only root may bind."""
    for port in random.sample(range(600, 1024), 424):
        with socket.socket(socket.AF_INET6, kind) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            try:
                s.bind(("::", port))
            except OSError:
                continue
            return port
    raise unittest.SkipTest("no free port below 1024")


def ids(pid: int) -> dict[str, list[int]]:
    """Uid, Gid and Groups of process ``pid`` (/proc/PID/status)."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                found[key] = [int(v) for v in value.split()]
    return found


class ServiceUserTests(unittest.TestCase):
    def test_no_switch_without_root_or_uid(self):
        self.assertIsNone(ServiceUser.from_twistd(None))
        self.assertIsNone(ServiceUser.from_twistd({"uid": None, "gid": None}))
        self.assertIsNone(ServiceUser.from_twistd({"uid": 0, "gid": 0}))
        if os.geteuid() != 0:
            self.assertIsNone(ServiceUser.from_twistd({"uid": 65534, "gid": 65534}))

    def test_the_group_defaults_to_the_users_own(self):
        need_root_and_nobody()
        entry = pwd.getpwnam(USER)
        user = ServiceUser.from_twistd({"uid": entry.pw_uid, "gid": None})
        self.assertEqual((user.uid, user.gid, user.name), (entry.pw_uid, entry.pw_gid, USER))

    def test_acting_creates_the_users_files_and_gives_root_back(self):
        user = need_root_and_nobody()
        work = traversable_workdir(self)
        groups = os.getgroups()
        (state,) = user.create_directory(work / "state")
        with user.acting():
            self.assertEqual((os.geteuid(), os.getegid()), (user.uid, user.gid))
            (state / "made").write_text("x")
            # what the user may not touch stays out of reach
            with self.assertRaises(PermissionError):
                (work / "not-here").write_text("x")
        self.assertEqual((os.geteuid(), os.getegid(), os.getgroups()), (0, 0, groups))
        self.assertEqual(((state / "made").stat().st_uid, (state / "made").stat().st_gid), (user.uid, user.gid))

    def test_missing_state_directory_and_parents_are_made_for_the_user(self):
        user = need_root_and_nobody()
        work = traversable_workdir(self)
        cfg = nac_config.load(None, {("nac", "state_dir"): str(work / "a" / "b" / "state")})
        state = tap.prepare_state_dir(cfg, user)
        for directory in (work / "a", work / "a" / "b", state):
            st = directory.stat()
            self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (user.uid, user.gid, 0o700))
        self.assertEqual(work.stat().st_uid, 0)  # what existed is left alone

    def test_state_directory_of_another_user_is_one_line_naming_the_fix(self):
        user = need_root_and_nobody()
        work = traversable_workdir(self)
        (work / "state").mkdir(mode=0o700)
        cfg = nac_config.load(None, {("nac", "state_dir"): str(work / "state")})
        with self.assertRaises(nac_config.ConfigError) as cm:
            tap.prepare_state_dir(cfg, user)
        message = str(cm.exception)
        self.assertEqual(message, f"defaults: [nac] state_dir: {work / 'state'} is not writable by the service "
                                  f"user {USER} (it belongs to root); give it to that user: chown -R "
                                  f"{USER}:{GROUP} {work / 'state'}")
        self.assertEqual((work / "state").stat().st_uid, 0)  # never taken over

    def failed_start(self, sections: dict, *, wrapped: bool = True, env: dict | None = None) -> str:
        """Start the server as the service user, expecting it to refuse: its output."""
        need_root_and_nobody()
        work = traversable_workdir(self)
        server = NacServer(sections, workdir=str(work), wrapper=service_user_wrapper(work) if wrapped else (),
                           twistd_args=["--uid", USER, "--gid", GROUP], env=env)
        server.config.chmod(0o644)
        self.addCleanup(server.stop)
        with self.assertRaises(RuntimeError) as cm:
            server.start(timeout=60)
        self.assertIn("nac exited with 1", str(cm.exception))
        return str(cm.exception)

    def test_an_operator_file_the_user_cannot_read_fails_the_start(self):
        need_root_and_nobody()
        private = Path(tempfile.mkdtemp(prefix="nac-operator-"))  # root's, 0700, as /etc/nac/private
        self.addCleanup(shutil.rmtree, private, ignore_errors=True)
        from nac.certs import ensure_demo_pki
        pki = ensure_demo_pki(private / "pki")
        out = self.failed_start({"pt-tls": {"workers": 1, "cert": pki.server_cert, "key": pki.server_key}})
        # one line (here the last of twistd's traceback until it prints only that)
        self.assertRegex(out, rf"(?m)[ /]\S*nac\.conf: \[pt-tls\] cert: cannot read certificate "
                              rf"{re.escape(str(pki.server_cert))}: Permission denied \(nac runs as {USER}: "
                              rf"twistd --uid\)$")
        self.assertEqual(os.stat(pki.server_key).st_uid, 0)  # an operator's file is never taken over

    def test_a_nac_the_user_cannot_run_is_named(self):
        # pyenv's Python under /root is out of the service user's reach; a
        # virtual environment elsewhere is not, and then nac itself is put
        # where the user cannot read it: a copy in a directory of root's
        need_root_and_nobody()
        probe = subprocess.run(["setpriv", f"--reuid={USER}", f"--regid={GROUP}", "--init-groups",
                                sys.executable, "-c", "import sqlalchemy, twisted.internet"], capture_output=True,
                               cwd="/")
        if probe.returncode != 0:
            out = self.failed_start({}, wrapped=False)
            self.assertIn(f"{sys.executable}: the service user {USER} cannot run it (twistd --uid)", out)
            return
        private = Path(tempfile.mkdtemp(prefix="nac-private-"))  # root's, 0700
        self.addCleanup(shutil.rmtree, private, ignore_errors=True)
        for package in ("nac", "transports", "imvs", "twisted"):
            shutil.copytree(REPO / package, private / package,
                            ignore=shutil.ignore_patterns("__pycache__"))
        out = self.failed_start({}, wrapped=False, env={"PYTHONPATH": str(private)})
        self.assertIn(f"{private / 'nac'}: the service user {USER} cannot read it (twistd --uid): install nac "
                      "and its Python where that user can read them", out)


class ServiceUserServerTests(unittest.TestCase):
    """The real ``twistd -n --uid nobody --gid nogroup nac`` with two processes."""

    def server(self, sections: dict, ready: str) -> NacServer:
        user = need_root_and_nobody()
        work = traversable_workdir(self)
        self.wrapper = service_user_wrapper(work)
        self.as_user = service_user_wrapper(work, setpriv=f"{USER}:{GROUP}")
        server = NacServer(sections, workdir=str(work), ready=ready, wrapper=self.wrapper,
                           twistd_args=["--uid", USER, "--gid", GROUP])
        server.config.chmod(0o644)
        self.user = user
        server.start(timeout=90)
        self.addCleanup(server.stop)
        return server

    def admin(self, server: NacServer, *args: str) -> str:
        """nac-admin run as the service user, as an operator would (sudo -u)."""
        done = subprocess.run(self.as_user + [sys.executable, "-m", "nac.admin", "--config", str(server.config),
                                              *args], env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        return done.stdout

    def check_processes_and_files(self, server: NacServer, worker: int) -> None:
        for pid in (server.proc.pid, worker):
            found = ids(pid)
            self.assertEqual(found["Uid"], [self.user.uid] * 4, pid)
            self.assertEqual(found["Gid"], [self.user.gid] * 4, pid)
            self.assertNotIn(0, found["Groups"], pid)
        self.assertEqual(children(server.proc.pid), [worker], "the worker was started again")
        log = server.log_text()
        self.assertNotIn("cannot open", log)
        self.assertNotIn("failed to start", log)
        self.assertNotIn(" died ", log)
        self.assertNotIn("Traceback", log)
        self.assertIn(f"set uid/gid {self.user.uid}/{self.user.gid}", log)
        made = sorted(p.name for p in server.state_dir.iterdir())
        for name in ("nac.db", "nac.db-wal", "nac.db-shm", "secret.key", "ca.pem", "ca.key", "server.pem",
                     "server.key"):
            self.assertIn(name, made)
        for path in [server.state_dir, *server.state_dir.iterdir()]:
            st = path.stat()
            self.assertEqual((st.st_uid, st.st_gid), (self.user.uid, self.user.gid), path)
            if path.suffix == ".key":
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, path)
        self.assertEqual(stat.S_IMODE(server.state_dir.stat().st_mode), 0o700)

    def test_pt_tls_on_a_privileged_port_with_two_processes(self):
        port = privileged_port()
        server = self.server({"nac": {"imvs": "imvs.os:OsImv"},
                              "pt-tls": {"listen": None, "port": port, "workers": 2}},
                             ready="all 1 PT-TLS worker processes are accepting")
        server.port = port
        (worker,) = children(server.proc.pid)
        self.admin(server, "user", "add", "erin", "--password", PASSWORD)
        # a client certificate of the demo CA, and SASL for the load
        cert, key = issue_certificate(server.state_dir / "ca.pem", server.state_dir / "ca.key", "dana",
                                      server.dir / "dana.pem", server.dir / "dana.key")
        done = server.client("--cert", str(cert), "--key", str(key), "--collectors", "os", "--json")
        self.assertEqual(done.returncode, 0, done.stderr + server.log_text()[-3000:])
        self.assertIn(json.loads(done.stdout)["recommendation"], ("Access Allowed", "Quarantined"))
        self.assertIn("client authenticated by TLS certificate as 'dana'", server.log_text())
        load = subprocess.run(
            [sys.executable, str(REPO / "bench" / "pt_tls_load.py"), "--live", "--server", f"127.0.0.1:{port}",
             "--server-pid", str(server.proc.pid), "--cacert", str(server.ca), "--client", "erin",
             "--secret", PASSWORD, "--collectors", "os", "--concurrency", "8", "--count", "40",
             "--processes", "1", "--timeout", "60", "--json"],
            env=repo_env(), capture_output=True, text=True, timeout=300)
        self.assertEqual(load.returncode, 0, load.stdout + load.stderr + server.log_text()[-3000:])
        level = json.loads(load.stdout)["levels"][0]
        self.assertEqual((level["completed"], level["failed"]), (40, 0), level)
        # both processes served, and wrote their sessions to the database
        log = server.log_text()
        self.assertIn("[nac.pt-tls#info worker 1] accepting PT-TLS stream from 127.0.0.1", log)
        self.assertRegex(log, r"\[nac\.pt-tls#info\] accepting PT-TLS stream from 127\.0\.0\.1")
        sessions = json.loads(self.admin(server, "sessions", "list", "--limit", "1000", "--json"))
        self.assertEqual({s["connection_id"] % 2 for s in sessions}, {0, 1})
        self.check_processes_and_files(server, worker)

    def test_radius_with_two_processes(self):
        if shutil.which("eapol_test") is None:
            raise unittest.SkipTest("eapol_test is not installed (Debian package eapoltest)")
        port = privileged_port(socket.SOCK_DGRAM)
        server = self.server({"nac": {"transports": "radius"},
                              "pt-tls": {"listen": None},
                              "radius": {"listen": None, "port": port, "secret": SECRET, "workers": 2,
                                         "clients": "127.0.0.1/32"},
                              "eap": {"tnc": "none"}},
                             ready="all 1 RADIUS worker processes are accepting")
        (worker,) = children(server.proc.pid)
        self.admin(server, "user", "add", "carol", "--password", PASSWORD, "--eap")
        conf = server.dir / "eapol_test.conf"
        conf.write_text("network={\n  key_mgmt=WPA-EAP\n  eap=TTLS\n  identity=\"carol\"\n"
                        f"  password=\"{PASSWORD}\"\n  ca_cert=\"{server.ca}\"\n  phase2=\"autheap=MD5\"\n}}\n")

        def both_served() -> bool:
            log = server.log_text()
            return ("[nac.radius#info worker 1] sending RADIUS Access-Accept" in log
                    and "[nac.radius#info] sending RADIUS Access-Accept" in log)

        for _ in range(24):
            if both_served():
                break
            done = subprocess.run(["eapol_test", "-c", str(conf), "-a", "127.0.0.1", "-p", str(port),
                                   "-s", SECRET, "-r", "0", "-t", "20"], capture_output=True, text=True, timeout=60)
            out = done.stdout + done.stderr
            self.assertEqual(done.returncode, 0, out[-2000:] + server.log_text()[-3000:])
            self.assertIn("MPPE keys OK: 1  mismatch: 0", out)
        self.assertTrue(both_served(), server.log_text()[-3000:])
        self.assertTrue(re.search(r"RADIUS server listening on ::\[\d+\] with 2 processes", server.log_text()))
        self.check_processes_and_files(server, worker)
