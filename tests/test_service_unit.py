"""etc/nac.service: ``systemd-analyze verify`` accepts it, it has the
hardening it promises, and its ExecStart command line, run without systemd
but as systemd would (the user nobody, CAP_NET_BIND_SERVICE as the only,
ambient, capability, no new privileges), serves PT-TLS on a port below 1024
with its worker process."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial import unittest

from nac.certs import issue_certificate
from tests.nacserver import REPO, TWISTD, repo_env, service_user_wrapper
from tests.test_pt_tls_workers import children, running, wait_for
from tests.test_service_user import GROUP, USER, ids, need_root_and_nobody, privileged_port

UNIT = REPO / "etc" / "nac.service"
CAP_NET_BIND_SERVICE = 1 << 10


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def capabilities(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        return {key: int(value, 16) for key, _, value in (line.partition(":") for line in f)
                if key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}


class UnitFileTests(unittest.TestCase):
    def test_systemd_analyze_verify(self):
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise unittest.SkipTest("systemd-analyze is not installed")
        twistd = shutil.which("twistd") or str(Path(sys.executable).parent / "twistd")
        work = Path(tempfile.mkdtemp(prefix="nac-unit-"))
        self.addCleanup(shutil.rmtree, work, ignore_errors=True)
        # where this machine has twistd: verify checks that the command exists
        (work / "nac.service").write_text(UNIT.read_text().replace("/usr/local/bin/twistd", twistd))
        done = subprocess.run([analyze, "verify", "--man=no", str(work / "nac.service")], capture_output=True,
                              text=True, timeout=120)
        ours = [line for line in (done.stdout + done.stderr).splitlines() if "nac.service" in line]
        self.assertEqual((done.returncode, ours), (0, []), done.stdout + done.stderr)

    def test_hardening(self):
        unit = directives(UNIT.read_text())
        expected = {
            "Type": "simple", "User": "nac", "Group": "nac", "Restart": "on-failure",
            "AmbientCapabilities": "CAP_NET_BIND_SERVICE", "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
            "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
            "StateDirectory": "nac", "LogsDirectory": "nac",
            "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        }
        for key, value in expected.items():
            self.assertEqual(unit.get(key), [value], key)
        (command,) = unit["ExecStart"]
        argv = shlex.split(command)
        self.assertEqual(argv[:3], ["/usr/local/bin/twistd", "-n", "--pidfile="])
        self.assertEqual(argv[argv.index("nac"):argv.index("nac") + 3], ["nac", "--config", "/etc/nac/nac.conf"])
        # the log file is in the directory systemd makes for the user
        self.assertTrue(argv[argv.index("--logfile") + 1].startswith("/var/log/" + unit["LogsDirectory"][0] + "/"))


class ExecStartTests(unittest.TestCase):
    def test_exec_start_as_the_unit_runs_it(self):
        need_root_and_nobody()
        if shutil.which("setpriv") is None:
            raise unittest.SkipTest("setpriv (util-linux) is not installed")
        work = Path(tempfile.mkdtemp(prefix="nac-unit-run-"))
        work.chmod(0o711)
        self.addCleanup(shutil.rmtree, work, ignore_errors=True)
        user = need_root_and_nobody()
        # what systemd makes: StateDirectory= and LogsDirectory= owned by the user
        for name, mode in (("state", 0o700), ("log", 0o750)):
            (work / name).mkdir(mode=mode)
            os.chown(work / name, user.uid, user.gid)
        port = privileged_port()
        conf = work / "nac.conf"
        # the README's /etc/nac/nac.conf, with the test's state directory for /var/lib/nac
        conf.write_text(f"[nac]\nstate_dir = {work / 'state'}\n[pt-tls]\nport = {port}\nworkers = 2\n")
        conf.chmod(0o644)
        unit = directives(UNIT.read_text())
        replace = {"/etc/nac/nac.conf": str(conf), "/var/log/nac/nac.log": str(work / "log" / "nac.log")}
        argv = [replace.get(arg, arg) for arg in shlex.split(unit["ExecStart"][0])]
        self.assertEqual(argv[0], "/usr/local/bin/twistd")
        caps = "+" + unit["AmbientCapabilities"][0].lower().removeprefix("cap_")
        as_unit = ["setpriv", f"--reuid={USER}", f"--regid={GROUP}", "--init-groups", f"--inh-caps={caps}",
                   f"--ambient-caps={caps}", f"--bounding-set=-all,{caps}", "--no-new-privs"]
        proc = subprocess.Popen(service_user_wrapper(work) + as_unit + TWISTD + argv[1:], cwd=work / "state",
                                env=repo_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        log = work / "log" / "nac.log"

        def log_text() -> str:
            return log.read_text(errors="replace") if log.exists() else ""

        def stop():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.stdout.close()

        self.addCleanup(stop)
        try:
            wait_for(lambda: proc.poll() is not None or "all 1 PT-TLS worker processes are accepting" in log_text(),
                     90, "nac to start")
        except AssertionError:
            raise AssertionError(log_text()[-3000:])
        if proc.poll() is not None:
            self.fail(proc.stdout.read().decode(errors="replace") + log_text())
        # unshare, sh and setpriv exec each other: twistd has the pid started
        (worker,) = children(proc.pid)
        for pid in (proc.pid, worker):
            self.assertEqual(ids(pid)["Uid"], [user.uid] * 4)
            found = capabilities(pid)
            self.assertEqual((found["CapEff"], found["CapAmb"], found["CapBnd"]),
                             (CAP_NET_BIND_SERVICE,) * 3, pid)
        self.assertIn(f"PT-TLS listening on ::[{port}] with 2 processes", log_text())
        cert, key = issue_certificate(work / "state" / "ca.pem", work / "state" / "ca.key", "dana",
                                      work / "dana.pem", work / "dana.key")
        done = subprocess.run([sys.executable, "-m", "nac.client.cli", f"[::1]:{port}", "--cacert",
                               str(work / "state" / "ca.pem"), "--cert", str(cert), "--key", str(key),
                               "--collectors", "os"], env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr + log_text()[-3000:])
        self.assertIn("client authenticated by TLS certificate as 'dana'", log_text())
        for path in (work / "state").iterdir():
            self.assertEqual(path.stat().st_uid, user.uid, path)
        proc.send_signal(signal.SIGTERM)
        # twistd ends with the signal that stopped it, which systemd counts as a clean stop
        self.assertIn(proc.wait(30), (0, -signal.SIGTERM), log_text()[-3000:])
        self.assertFalse(running(worker))
        self.assertIn("Server Shut Down.", log_text())
