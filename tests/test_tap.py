"""``twistd nac``: options, configuration overrides and the service tree."""

from __future__ import annotations

import os
import subprocess

from twisted.application.service import IService, MultiService
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from nac import tap
from nac.db.engine import head_revision
from nac.interfaces import IPolicyStore, IPostureTransport, ITnccsCore
from tests.nacserver import TWISTD, free_port, repo_env


class OptionsTests(unittest.TestCase):
    def options(self, *argv, conf: str | None = None):
        state = self.mktemp()
        args = ["--state-dir", state]
        if conf is not None:
            path = self.mktemp()
            with open(path, "w") as f:
                f.write(conf)
            args += ["--config", path]
        opts = tap.Options()
        opts.parseOptions(args + list(argv))
        return opts

    def test_defaults_enable_pt_tls_only(self):
        opts = self.options()
        self.assertEqual(opts.nac_config.transports, ["pt-tls"])

    def test_command_line_overrides_file(self):
        opts = self.options("--recommendation-policy", "any",
                            conf="[nac]\nrecommendation_policy = all\n")
        self.assertEqual(opts.nac_config.get("nac", "recommendation_policy"), "any")

    def test_bad_value_names_file_section_and_key(self):
        with self.assertRaises(tap.StartupError) as cm:
            self.options(conf="[pt-tls]\nport = 99999\n")
        self.assertIn("[pt-tls] port", str(cm.exception))

    def test_unknown_key_is_refused(self):
        with self.assertRaises(tap.StartupError) as cm:
            self.options(conf="[nac]\nimsv = os\n")
        self.assertIn("imsv", str(cm.exception))

    def test_unknown_imv_is_refused_at_start(self):
        opts = self.options("--imvs", "no.such.module:Imv")
        with self.assertRaises(tap.StartupError) as cm:
            tap.makeService(opts)
        self.assertIn("no.such.module:Imv", str(cm.exception))


class ServiceTreeTests(unittest.TestCase):
    def test_one_core_and_the_enabled_transports(self):
        state = self.mktemp()
        port = free_port()
        opts = tap.Options()
        opts.parseOptions(["--state-dir", state, "--config", self._conf(port)])
        top = tap.makeService(opts)
        self.assertIsInstance(top, MultiService)
        names = [s.name for s in top]
        from nac.processes import process_count
        # the worker processes' supervisor starts last, once the transports have their sockets;
        # the summaries of repeated log lines stop last
        self.assertEqual(names, ["log-repeats", "policy-store", "tnccs", "reevaluation", "pt-tls"]
                         + (["workers"] if process_count("auto") > 1 else []))
        core = top.getServiceNamed("tnccs").core
        verifyObject(ITnccsCore, core)
        store = top.getServiceNamed("policy-store")
        verifyObject(IPolicyStore, store)
        self.assertIs(core.store, store)
        # the embedded database was created and migrated on start
        self.assertEqual(store.db.check_schema(), head_revision())
        store.db.engine.dispose()
        pt = top.getServiceNamed("pt-tls")
        verifyObject(IService, pt)
        verifyObject(IPostureTransport, pt)
        self.assertIs(pt.core, core)

    def test_one_set_of_workers_serves_both_transports(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"[nac]\ntransports = pt-tls,radius\n"
                    f"[pt-tls]\nlisten = 127.0.0.1\nport = {free_port()}\nworkers = 2\n"
                    f"[radius]\nlisten = 127.0.0.1\nport = 1812\nsecret = s\nworkers = 3\n"
                    f"max_conversations = 10\n")
        opts = tap.Options()
        opts.parseOptions(["--state-dir", self.mktemp(), "--config", path])
        top = tap.makeService(opts)
        self.addCleanup(top.getServiceNamed("policy-store").db.engine.dispose)
        self.assertEqual([s.name for s in top], ["log-repeats", "policy-store", "tnccs", "reevaluation", "pt-tls",
                                                 "radius", "workers"])
        workers = top.getServiceNamed("workers")
        # three processes: PT-TLS in the first two, RADIUS in all three
        self.assertEqual((workers.processes, top.getServiceNamed("pt-tls").processes,
                          top.getServiceNamed("radius").server.processes), (3, 2, 3))
        # Connection IDs and PT-TLS session ids step over every process
        self.assertEqual(top.getServiceNamed("tnccs").core.connection_ids, (1, 3))
        self.assertEqual(next(top.getServiceNamed("pt-tls").factory.session_ids), 1)
        self.assertEqual(next(top.getServiceNamed("pt-tls").factory.session_ids), 4)
        radius = top.getServiceNamed("radius").server
        self.assertEqual((radius.process, radius.processes, radius.max_conversations), (0, 3, 4))

    def test_twistd_is_offered_nacs_log_observer_for_its_log_file(self):
        from twisted.application.service import Application
        from twisted.logger import ILogObserver
        from twisted.scripts.twistd import ServerOptions

        from nac.log import ClassicFileObserver

        log_path = self.mktemp()
        server = ServerOptions()
        server.parseOptions(["--logfile", log_path, "nac", "--state-dir", self.mktemp(),
                             "--config", self._conf(free_port())])
        top = tap.makeService(server.subOptions)
        self.addCleanup(top.getServiceNamed("policy-store").db.engine.dispose)
        application = Application("nac")
        top.setServiceParent(application)
        observer = application.getComponent(ILogObserver)
        self.assertIsInstance(observer, ClassicFileObserver)
        # a new-style observer: twistd hands it events as they are, without
        # converting each to a legacy event first
        self.assertTrue(ILogObserver.providedBy(observer))
        self.addCleanup(observer._out.close)
        self.assertEqual(observer._out.path, os.path.abspath(log_path))
        # one named by --logger wins, as twistd has it
        server = ServerOptions()
        server.parseOptions(["--logger", "twisted.logger.jsonFileLogObserver", "nac", "--state-dir",
                             self.mktemp(), "--config", self._conf(free_port())])
        top = tap.makeService(server.subOptions)
        self.addCleanup(top.getServiceNamed("policy-store").db.engine.dispose)
        application = Application("nac")
        top.setServiceParent(application)
        self.assertIsNone(application.getComponent(ILogObserver))

    def _conf(self, port):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"[pt-tls]\nlisten = 127.0.0.1\nport = {port}\n")
        return path


class TwistdTests(unittest.TestCase):
    def test_help_documents_every_option(self):
        out = subprocess.run(TWISTD + ["nac", "--help"], env=repo_env(), capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        for opt in ("--config", "--transports", "--db", "--state-dir", "--imvs",
                    "--recommendation-policy", "--log-level", "--log-format", "--check", "--version"):
            self.assertIn(opt, out.stdout)
        # the sample it points to is a command's output, not a file of the source tree
        self.assertIn("nac-admin config sample", " ".join(out.stdout.split()))
        self.assertNotIn("etc/nac.conf", out.stdout)

    def test_bad_config_stops_start_up_with_a_clear_message(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[radius]\nport = 1812\n[nac]\ntransports = radius\n")
        out = subprocess.run(TWISTD + ["-n", "--pidfile=", "nac", "--config", path],
                             env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("secret", out.stdout + out.stderr)
