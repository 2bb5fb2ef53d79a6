"""Transports are plugins: the built-in ones are found through their
``nac.transports`` entry points like any other, and a transport installed
from another distribution is enabled by name, its configuration section
checked and documented, without changing nac."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from nac import config as nac_config
from nac import plugins
from nac.interfaces import ITransportPlugin
from tests.nacserver import REPO, TWISTD, free_port, repo_env

ECHO_PLUGIN = '''
"""A third party's transport for nac's tests: a TCP service that greets with
the names of the TNCS core's IMVs."""

from twisted.application import internet
from twisted.internet import protocol
from zope.interface import implementer

from nac.config import Option, declare_section, port, text
from nac.interfaces import ITransportPlugin


class Greeting(protocol.Protocol):
    def connectionMade(self):
        names = ",".join(imv.name for imv in self.factory.core.imvs) or "none"
        self.transport.write(f"{self.factory.greeting} IMVs={names}\\n".encode())
        self.transport.loseConnection()


@implementer(ITransportPlugin)
class EchoPlugin:
    name = "echo"
    label = "Echo"
    description = "a test transport"
    listen_protocol = "TCP"

    def declare_options(self):
        declare_section("echo", help="A test transport.", options=[
            Option("port", port, 7999, "TCP port on 127.0.0.1."),
            Option("greeting", text, "hello", "What it says first."),
        ])

    def check(self, cfg):
        if cfg.get("echo", "greeting") == "forbidden":
            return [f"{cfg.origin('echo', 'greeting')}: [echo] greeting: not that word"]
        return []

    def processes(self, cfg):
        return 1

    def make_service(self, cfg, core, store, workers):
        factory = protocol.ServerFactory.forProtocol(Greeting)
        factory.core, factory.greeting = core, cfg.get("echo", "greeting")
        service = internet.TCPServer(cfg.get("echo", "port"), factory, interface="127.0.0.1")
        service.setName("echo")
        return service

    def make_worker_service(self, cfg, core, store, share):
        raise NotImplementedError


transport = EchoPlugin()
'''


def install_echo(directory: Path) -> Path:
    """The echo transport as an installed distribution would leave it on
    the path: its package and its .dist-info with the entry point."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "nac_echo_transport.py").write_text(ECHO_PLUGIN)
    info = directory / "nac_echo_transport-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nac-echo-transport\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[nac.transports]\necho = nac_echo_transport:transport\n")
    return directory


class BuiltInTransportTests(unittest.TestCase):
    def test_the_built_in_transports_are_plugins(self):
        found = plugins.transport_plugins()
        self.assertLessEqual({"pt-tls", "radius", "ikev2"}, set(found))
        for name, plugin in found.items():
            verifyObject(ITransportPlugin, plugin)
            self.assertEqual(plugin.name, name)
            self.assertIn(name, nac_config.SCHEMA)  # each declared its section
        self.assertEqual({found[n].listen_protocol for n in ("radius", "ikev2")}, {"UDP"})

    def test_an_unknown_transport_is_a_one_line_error(self):
        with self.assertRaises(nac_config.ConfigError) as cm:
            nac_config.load(None, {("nac", "transports"): "pt-tls, carrier-pigeon"})
        self.assertIn("[nac] transports: 'pt-tls, carrier-pigeon' has item 'carrier-pigeon', which is not an "
                      "installed transport (installed: ", str(cm.exception))


class ThirdPartyTransportTests(unittest.TestCase):
    def setUp(self):
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.path = install_echo(self.dir / "site")
        self.env = repo_env()
        self.env["PYTHONPATH"] = f"{self.path}{os.pathsep}{self.env['PYTHONPATH']}"

    def test_enabled_by_name_and_served_by_twistd_nac(self):
        echo_port, pt_tls_port = free_port(), free_port()
        conf = self.dir / "nac.conf"
        conf.write_text(f"[nac]\nstate_dir = {self.dir / 'state'}\ntransports = pt-tls, echo\nimvs = scanner\n"
                        f"[pt-tls]\nlisten = 127.0.0.1\nport = {pt_tls_port}\nworkers = 1\n"
                        f"[echo]\nport = {echo_port}\ngreeting = bonjour\n")
        log = self.dir / "nac.log"
        server = subprocess.Popen(TWISTD + ["-n", "--pidfile=", "--logfile", str(log), "nac", "--config", str(conf)],
                                  cwd=self.dir, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (server.terminate(), server.wait(10), server.stdout.close()))
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", echo_port), timeout=2) as conn:
                    greeting = conn.makefile().readline()
                break
            except OSError:
                self.assertIsNone(server.poll(), log.read_text() if log.exists() else "")
                self.assertLess(time.monotonic(), deadline, "the echo transport never listened")
                time.sleep(0.2)
        # the same TNCS core as every transport
        self.assertEqual(greeting, "bonjour IMVs=scanner\n")

    def run_nac(self, *args: str, conf: str) -> subprocess.CompletedProcess:
        path = self.dir / "check.conf"
        path.write_text(f"[nac]\nstate_dir = {self.dir / 'state'}\n" + conf)
        return subprocess.run(TWISTD + ["-n", "--pidfile=", "nac", "--config", str(path), *args], cwd=self.dir,
                              env=self.env, capture_output=True, text=True, timeout=60)

    def test_its_section_is_checked_like_nacs_own(self):
        done = self.run_nac(conf="transports = echo\n[echo]\nport = 99999\n")
        self.assertNotEqual(done.returncode, 0)
        self.assertEqual(len(done.stderr.splitlines()), 1, done.stderr)
        self.assertIn("[echo] port: '99999' is not a port number", done.stderr)
        done = self.run_nac(conf="transports = echo\n[echo]\ngreeting = forbidden\n")
        self.assertIn("[echo] greeting: not that word", done.stderr)
        self.assertNotIn("Traceback", done.stderr)
        done = self.run_nac("--check", conf=f"transports = echo\n[echo]\nport = {free_port()}\n")
        self.assertEqual((done.returncode, done.stdout.strip()[:17]), (0, "configuration OK:"), done.stderr)

    def test_its_section_is_in_the_sample_configuration(self):
        done = subprocess.run([sys.executable, "-m", "nac.admin", "config", "sample"], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn(textwrap.dedent("""\
            [echo]
            # A test transport.

            # TCP port on 127.0.0.1.
            # port = 7999"""), done.stdout)
