"""``[pt-tls] max_connections`` over several processes: the shares add up
to the total (no connection lost to rounding); and a start-up warning, one
line, when a process's share and the descriptors nac keeps open beside it
exceed the open-file limit (RLIMIT_NOFILE), against the real server run
under ``prlimit``."""

from __future__ import annotations

import shutil

from twisted.trial import unittest

from nac import config
from nac.processes import RESERVED_DESCRIPTORS, connection_share, descriptor_warning
from tests.nacserver import NacServer


class ConnectionShareTests(unittest.TestCase):
    def test_shares_add_up_to_the_total(self):
        for processes in range(1, 65):
            for total in list(range(processes, processes + 70)) + [995, 1000, 1001, 4096, 10_000]:
                shares = [connection_share(total, processes, i) for i in range(processes)]
                self.assertEqual(sum(shares), total, (total, processes))
                self.assertLessEqual(max(shares) - min(shares), 1)
        self.assertEqual([connection_share(1000, 8, i) for i in range(8)], [125] * 8)
        self.assertEqual([connection_share(1000, 6, i) for i in range(6)], [167] * 4 + [166] * 2)

    def test_every_process_admits_one_at_least(self):
        self.assertEqual([connection_share(2, 4, i) for i in range(4)], [1, 1, 1, 1])


class DescriptorWarningTests(unittest.TestCase):
    def cfg(self, **pt_tls):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[pt-tls]\n" + "".join(f"{k} = {v}\n" for k, v in pt_tls.items()))
        return config.load(path)

    def test_warns_when_a_process_share_does_not_fit(self):
        cfg = self.cfg(max_connections=1000)
        # one process holds all 1000, and 64 descriptors of its own
        self.assertEqual(RESERVED_DESCRIPTORS, 64)
        line = descriptor_warning(cfg, {"pt-tls": 1}, soft_limit=1063)
        self.assertIn("[pt-tls] max_connections = 1000: a nac process may need 1064 file descriptors, more than "
                      "its open-file limit (ulimit -n) of 1063", line)
        self.assertIn("LimitNOFILE=", line)
        self.assertNotIn("\n", line)
        self.assertIsNone(descriptor_warning(cfg, {"pt-tls": 1}, soft_limit=1064))
        # two processes: 500 each, and the main process's pipes to its worker (4)
        self.assertIsNone(descriptor_warning(cfg, {"pt-tls": 2}, soft_limit=568))
        self.assertIn("over 2 processes: a nac process may need 568 file descriptors",
                      descriptor_warning(cfg, {"pt-tls": 2}, soft_limit=567))
        # transports without connections of their own need none
        self.assertIsNone(descriptor_warning(cfg, {"radius": 1}, soft_limit=100))


class StartupWarningTests(unittest.TestCase):
    def run_server(self, max_connections: int) -> str:
        if shutil.which("prlimit") is None:
            raise unittest.SkipTest("prlimit (util-linux) is not installed")
        server = NacServer({"pt-tls": {"max_connections": max_connections}},
                           wrapper=["prlimit", "--nofile=512:4096", "--"])
        self.addCleanup(server.stop)
        server.start()
        server.stop()
        return server.log_text()

    def test_one_line_when_the_limit_is_too_low(self):
        text = self.run_server(1000)
        lines = [line for line in text.splitlines() if "file descriptors" in line]
        self.assertEqual(len(lines), 1, text)
        self.assertIn("[nac#warn]", lines[0])
        self.assertIn("[pt-tls] max_connections = 1000: a nac process may need 1064 file descriptors, more than "
                      "its open-file limit (ulimit -n) of 512", lines[0])
        self.assertIn("raise LimitNOFILE= in the systemd unit (etc/nac.service) or ulimit -n, or lower "
                      "max_connections", lines[0])

    def test_silent_when_it_fits(self):
        self.assertNotIn("file descriptors", self.run_server(400))
