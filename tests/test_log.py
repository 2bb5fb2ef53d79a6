"""nac.log: the level threshold and the twistd log file observer."""

from __future__ import annotations

import io
import signal
import sys

from twisted.logger import LogLevel, formatEvent, textFileLogObserver
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile
from twisted.scripts.twistd import ServerOptions
from twisted.trial import unittest

from twisted.logger import Logger as TwistedLogger
from twisted.logger import LogPublisher

from nac import log as nac_log
from nac.log import ClassicFileObserver, Logger, twistd_log_observer

WHEN = 1795437296.25  # 2026-11-23T...


def events():
    try:
        1 / 0
    except ZeroDivisionError:
        failure = Failure()
    base = {"log_time": WHEN, "log_namespace": "nac.pt-tls", "log_level": LogLevel.info}
    return [
        {**base, "log_format": "accepting PT-TLS stream from {peer}", "peer": "127.0.0.1[4000]"},
        {**base, "log_format": "two\nlines {n!r} {n:>4}", "n": 7},
        {**base, "log_format": "attribute {p.real} and {d[k]}", "p": 3, "d": {"k": "v"}},
        {**base, "log_format": "call {f()}", "f": lambda: "made"},
        {**base, "log_format": "missing {nothing}"},
        {**base, "log_format": "positional {}"},
        {**base, "log_format": ""},
        {**base, "log_format": b"bytes {x}", "x": 1},
        {**base, "log_format": "from {system}", "log_system": "legacy", "system": "x"},
        {**base, "log_format": "odd system", "log_system": 42},
        {"log_format": "no level, namespace or time"},
        {**base, "log_format": "with failure {why}", "why": "boom", "log_failure": failure},
        {**base, "log_level": LogLevel.error, "log_format": "unicode ü 日本"},
        {**base, "log_time": WHEN + 3600.5, "log_format": "an hour later"},
        {"message": ("legacy",), "log_time": WHEN},
    ]


class LoggerTests(unittest.TestCase):
    def events(self, logger_type, level_name="info"):
        seen = []
        logger = logger_type(namespace="nac.test", source=self, observer=seen.append)
        self.addCleanup(nac_log.set_level, "info")
        nac_log.set_level(level_name)
        logger.debug("debug {n}", n=1)
        logger.info("accepting PT-TLS stream from {peer}", peer="127.0.0.1[4000]")
        logger.error("failed {n}", n=2)
        return logger, seen

    def test_events_are_twisteds(self):
        ours, made = self.events(Logger, "debug")
        theirs, reference = self.events(TwistedLogger, "debug")
        self.assertEqual(len(made), 3)
        for event, expected in zip(made, reference):
            self.assertLess(abs(event.pop("log_time") - expected.pop("log_time")), 5)
            self.assertIs(event.pop("log_logger"), ours)
            self.assertIs(expected.pop("log_logger"), theirs)
            self.assertEqual(event, expected)

    def test_events_below_the_threshold_are_not_made(self):
        _logger, made = self.events(Logger, "info")
        self.assertEqual([e["log_format"] for e in made], ["accepting PT-TLS stream from {peer}", "failed {n}"])
        _logger, made = self.events(Logger, "error")
        self.assertEqual([e["log_format"] for e in made], ["failed {n}"])

    def test_a_value_that_is_no_level_is_reported_as_twisted_does(self):
        seen = []
        Logger(namespace="nac.test", observer=seen.append).emit("loud", "text")
        self.assertEqual(len(seen), 1)
        self.assertIn("invalid log level", seen[0]["log_format"])
        self.flushLoggedErrors()

    def test_traces_are_kept(self):
        publisher = LogPublisher()
        logger = Logger(namespace="nac.test", observer=publisher)
        trace = []
        logger.info("traced", log_trace=trace)
        self.assertEqual(trace[0], (logger, publisher))


class ClassicFileObserverTests(unittest.TestCase):
    def test_lines_are_twistds_byte_for_byte(self):
        for out_type in (io.StringIO, io.BytesIO):
            ours, theirs = out_type(), out_type()
            observer, reference = ClassicFileObserver(ours), textFileLogObserver(theirs)
            for event in events():
                observer(dict(event))
                reference(dict(event))
            self.assertEqual(ours.getvalue(), theirs.getvalue())
            self.assertIn("accepting PT-TLS stream from 127.0.0.1[4000]",
                          ours.getvalue() if out_type is io.StringIO else ours.getvalue().decode())

    def test_the_time_stamp_follows_the_clock(self):
        out = io.StringIO()
        observer = ClassicFileObserver(out)
        for when in (WHEN, WHEN + 0.5, WHEN + 1, WHEN + 86400):
            observer({"log_time": when, "log_format": "tick"})
        reference = io.StringIO()
        for when in (WHEN, WHEN + 0.5, WHEN + 1, WHEN + 86400):
            textFileLogObserver(reference)({"log_time": when, "log_format": "tick"})
        self.assertEqual(out.getvalue(), reference.getvalue())
        self.assertEqual(len(set(out.getvalue().splitlines())), 3)

    def test_text_is_what_format_event_makes(self):
        event = {"log_format": "IMV {imv_id} \"{label}\"", "imv_id": 1, "label": "OS"}
        line = ClassicFileObserver(io.StringIO()).format(dict(event))
        self.assertTrue(line.endswith(f" {formatEvent(event)}\n"), line)


class TwistdLogObserverTests(unittest.TestCase):
    def options(self, *argv):
        options = ServerOptions()
        options.parseOptions([*argv, "nac"])
        return options

    def test_the_file_twistd_would_write(self):
        path = self.mktemp()
        previous = signal.getsignal(signal.SIGUSR1)
        self.addCleanup(signal.signal, signal.SIGUSR1, previous)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        observer = twistd_log_observer(self.options("--logfile", path))
        self.assertIsInstance(observer, ClassicFileObserver)
        self.assertIsInstance(observer._out, LogFile)
        self.addCleanup(observer._out.close)
        observer({"log_time": WHEN, "log_format": "hello {who}", "who": "operator"})
        with open(path) as f:
            self.assertTrue(f.read().endswith(" [-#-] hello operator\n"))
        # SIGUSR1 rotates it, as twistd arranges
        self.assertNotEqual(signal.getsignal(signal.SIGUSR1), signal.SIG_DFL)

    def test_standard_output_in_the_foreground(self):
        for argv in (("-n",), ("-n", "--logfile", "-")):
            observer = twistd_log_observer(self.options(*argv))
            self.assertIs(observer._out, sys.stdout)

    def test_twistd_chooses_when_asked_for_something_else(self):
        self.assertIsNone(twistd_log_observer(self.options("--syslog")))
        self.assertIsNone(twistd_log_observer(self.options("--logger", "twisted.logger.jsonFileLogObserver")))
        self.assertIsNone(twistd_log_observer(self.options("--logfile", "-")))  # a daemon: twistd refuses
        self.assertIsNone(twistd_log_observer(None))
        self.assertIsNone(twistd_log_observer({"unrelated": 1}))
