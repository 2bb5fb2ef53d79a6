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


class JsonLineObserverTests(unittest.TestCase):
    def lines(self, evs) -> list[dict]:
        import json

        out = io.StringIO()
        observer = nac_log.JsonLineObserver(out)
        for event in evs:
            observer(event)
        text = out.getvalue()
        self.assertTrue(text.isascii())
        return [json.loads(line) for line in text.splitlines()]

    def test_one_object_a_line_with_the_text_the_text_log_shows(self):
        evs = events()
        records = self.lines(evs)
        texts = [ClassicFileObserver(io.StringIO()).format(e) for e in evs]
        # the same events have text in both formats
        self.assertEqual(len(records), len([t for t in texts if t]))
        first = records[0]
        self.assertEqual(first, {"time": "2026-11-23T12:34:56.250Z", "level": "info",
                                 "namespace": "nac.pt-tls", "system": "nac.pt-tls#info",
                                 "message": "accepting PT-TLS stream from 127.0.0.1[4000]",
                                 "peer": "127.0.0.1[4000]"})
        by_message = {r["message"].split("\n")[0]: r for r in records}
        self.assertEqual(by_message["two"]["message"], "two\nlines 7    7")
        self.assertEqual(by_message["call made"]["message"], "call made")
        self.assertNotIn("f", by_message["call made"])  # not JSON: left out
        self.assertNotIn("d", by_message["attribute 3 and v"])
        self.assertEqual(by_message["unicode ü 日本"]["level"], "error")
        failed = by_message["with failure boom"]
        self.assertIn("ZeroDivisionError", failed["message"])
        self.assertEqual(failed["why"], "boom")
        self.assertEqual(by_message["from x"]["system"], "legacy")
        self.assertNotIn("system", {k for k in by_message["from x"] if k != "system"})
        self.assertEqual(by_message["an hour later"]["time"], "2026-11-23T13:34:56.750Z")

    def test_fields_named_like_secrets_are_left_out(self):
        (record,) = self.lines([{"log_time": WHEN, "log_level": LogLevel.warn, "log_namespace": "nac.test",
                                 "log_format": "login of {identity} failed", "identity": "erin",
                                 "password": "hunter2", "radius_secret": "s3cret", "psk": "k",
                                 "connection_id": 7, "ratio": float("nan"), "ok": True, "none": None}])
        self.assertEqual(record["identity"], "erin")
        self.assertEqual((record["connection_id"], record["ratio"], record["ok"], record["none"]),
                         (7, "nan", True, None))
        for key in ("password", "radius_secret", "psk"):
            self.assertNotIn(key, record)

    def test_event_fields_do_not_replace_the_records_own(self):
        (record,) = self.lines([{"log_time": WHEN, "log_level": LogLevel.info, "log_namespace": "nac.test",
                                 "log_format": "{text}", "text": "hi", "message": "other", "level": "x",
                                 "time": "then"}])
        self.assertEqual((record["message"], record["level"], record["time"][:4]), ("hi", "info", "2026"))

    def test_events_below_the_threshold_are_left_out(self):
        # Twisted's own loggers know nothing of nac's threshold
        self.addCleanup(nac_log.set_level, "info")
        nac_log.set_level("warn")
        base = {"log_time": WHEN, "log_namespace": "twisted", "log_format": "{x}", "x": "seen"}
        evs = [{**base, "log_level": LogLevel.info}, {**base, "log_level": LogLevel.warn}]
        self.assertEqual([r["level"] for r in self.lines(evs)], ["warn"])
        out = io.StringIO()
        text = ClassicFileObserver(out)
        for event in evs:
            text(event)
        self.assertEqual(out.getvalue().count("seen"), 1)

    def test_twistd_gets_the_format_asked_for(self):
        options = ServerOptions()
        options.parseOptions(["-n", "nac"])
        self.assertIsInstance(twistd_log_observer(options, "json"), nac_log.JsonLineObserver)
        self.assertIsInstance(twistd_log_observer(options), ClassicFileObserver)


class TwistdLogOptionTests(unittest.TestCase):
    """The real ``twistd -n nac`` with --log-format and --log-level."""

    PASSWORD = "erin's pass\u00e9word"

    def server(self, sections, *args):
        from tests.nacserver import NacServer

        server = NacServer(sections, args=args)
        self.addCleanup(server.stop)
        server.admin("init")
        server.admin("user", "add", "erin", "--password", self.PASSWORD)
        return server

    def wait(self, predicate, what, timeout=60.0):
        import time

        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def test_json_lines_from_both_processes_without_secrets(self):
        import json
        import re

        server = self.server({"pt-tls": {"workers": "2"}}, "--log-format", "json", "--log-level", "debug")
        server.start()
        self.wait(lambda: '"worker": 1' in server.log_text() and "accepting on" in server.log_text(),
                  "the worker to accept")
        for secret in (self.PASSWORD, "not the password"):
            for _ in range(2):  # the kernel hands connections to either process
                server.client("--client", "erin", "--secret", secret)
        server.stop()
        text = server.log_text()
        records = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
        self.assertGreater(len(records), 20)
        for record in records:
            self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn(record["level"], ("debug", "info", "warn", "error", "critical"))
            self.assertTrue(record["namespace"] and record["system"] and "message" in record)
        # the worker's own lines, relayed by the main process
        relayed = [r for r in records if r["system"].endswith(" worker 1")]
        self.assertTrue(any("accepting on" in r["message"] for r in relayed))
        self.assertTrue(all(r["worker"] == 1 and isinstance(r["worker_pid"], int) for r in relayed))
        self.assertTrue(any(r["level"] == "debug" for r in records))
        self.assertTrue(any(r.get("identity") == "erin" and isinstance(r.get("cid"), int) for r in records),
                        "no structured Connection ID line")
        self.assertTrue(any("authentication of 'erin'" in r["message"] and r["level"] == "warn"
                            for r in records))
        for secret in (self.PASSWORD, "not the password", json.dumps(self.PASSWORD)[1:-1],
                       "pass\\u00e9word"):
            self.assertNotIn(secret, text)
        self.assertFalse(re.search(r"password\"\s*:", text))

    def test_log_level_on_the_command_line_wins(self):
        server = self.server({"nac": {"log_level": "debug"}}, "--log-level", "warn")
        server.start()
        server.client("--client", "erin", "--secret", self.PASSWORD)
        server.stop()
        text = server.log_text()
        self.assertIn("#warn] no IMVs are configured", text)
        self.assertNotIn("#info]", text)
        self.assertNotIn("#debug]", text)
        self.assertNotIn("starting up", text)  # twistd's own info line


class EscapingTests(unittest.TestCase):
    """Whatever a field holds, a line is one line and holds no control
    character: each field's value is escaped where the line is made, in the
    text log, the JSON log and the lines worker processes send.  The
    expected escapes are written out by hand."""

    IDENTITY = "carol\n2026-12-07T00:00:00+0000 [nac#info] forged\x1b[31m\x00\x85\u2028\u202e\udcff\t"
    ESCAPED = "carol\\x0a2026-12-07T00:00:00+0000 [nac#info] forged\\x1b[31m\\x00\\x85\\u2028\\u202e\\xff\\x09"

    def event(self, fmt="SASL PLAIN authentication of '{identity}' failed", **fields):
        return {"log_time": WHEN, "log_level": LogLevel.warn, "log_namespace": "nac.pt-tls", "log_format": fmt,
                "identity": self.IDENTITY, **fields}

    def text_line(self, event) -> str:
        out = io.BytesIO()
        ClassicFileObserver(out)(event)
        line = out.getvalue().decode("utf-8")  # lone surrogates could not even be written raw
        self.assertEqual(line.count("\n"), 1, line)
        return line

    def test_text_lines(self):
        line = self.text_line(self.event())
        self.assertTrue(line.endswith(f"[nac.pt-tls#warn] SASL PLAIN authentication of '{self.ESCAPED}' failed\n"),
                        line)
        # conversions, format specifications, attributes and calls are escaped all the same
        line = self.text_line(self.event("{identity!r:.5} {obj.name} {call()} {n:>3}",
                                         obj=type("O", (), {"name": "a\nb"})(), call=lambda: "c\x1bd", n=7))
        self.assertTrue(line.endswith("] 'caro a\\x0ab c\\x1bd   7\n"), line)

    def test_the_formats_own_line_breaks_stay_continuation_lines(self):
        out = io.StringIO()
        ClassicFileObserver(out)(self.event("reason:\n{identity}"))
        self.assertTrue(out.getvalue().endswith(f"] reason:\n\t{self.ESCAPED}\n"), out.getvalue())

    def test_a_failure_with_network_text_in_its_message(self):
        try:
            raise ValueError("bad identity " + self.IDENTITY)
        except ValueError:
            failure = Failure()
        out = io.StringIO()
        ClassicFileObserver(out)({**self.event("failed for {identity}"), "log_failure": failure})
        first, *rest = out.getvalue().splitlines()
        self.assertTrue(first.endswith(f"] failed for {self.ESCAPED}"), first)
        # the traceback's lines, the exception's own line breaks included, are continuation lines
        self.assertEqual(rest[0], "\tTraceback (most recent call last):")
        self.assertTrue(all(line.startswith("\t") for line in rest), rest)
        self.assertIn("\t2026-12-07T00:00:00+0000 [nac#info] forged\\x1b[31m\\x00\\x85\\u2028\\u202e\\xff\\x09",
                      rest)

    def test_legacy_and_unformattable_events(self):
        line = self.text_line({"log_time": WHEN, "log_format": "{missing} {identity}", "identity": self.IDENTITY})
        self.assertNotIn("\x1b", line)
        self.assertIn("Unable to format event", line)

    def test_json_message_and_fields(self):
        import json

        out = io.StringIO()
        nac_log.JsonLineObserver(out)(self.event(peer="192.0.2.1\r\n"))
        self.assertEqual(out.getvalue().count("\n"), 1)
        record = json.loads(out.getvalue())
        self.assertEqual(record["message"], f"SASL PLAIN authentication of '{self.ESCAPED}' failed")
        self.assertEqual((record["identity"], record["peer"]), (self.ESCAPED, "192.0.2.1\\x0d\\x0a"))

    def test_worker_lines_arrive_escaped(self):
        from nac.processes import LogRelay, event_line

        relayed = []
        relay = LogRelay(1, 4242, relayed.append)
        relay.feed(event_line(self.event()).encode() + b"\n")
        (event,) = relayed
        self.assertTrue(self.text_line(event).endswith(
            f"[nac.pt-tls#warn worker 1] SASL PLAIN authentication of '{self.ESCAPED}' failed\n"))

    def test_printable(self):
        from nac.escape import printable, printable_lines

        self.assertEqual(printable("CORP\\carol é 日本"), "CORP\\carol é 日本")
        self.assertEqual(printable("\x7f\x9f\u200e\u2066\ud800"), "\\x7f\\x9f\\u200e\\u2066\\ud800")
        self.assertEqual(printable(b"a\xffb".decode("utf-8", "surrogateescape")), "a\\xffb")
        self.assertEqual(printable_lines("line 1\nline\x1b 2\r\n"), "line 1\nline\\x1b 2\\x0d\n")
