"""nac.auth_throttle: failed logins per source and per user name (sans-IO,
the time passed in), the bounded password checks of one process, and both
together on a Clock.  Expected delays and counts are written out here, not
computed with the code under test."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from nac import config as nac_config
from nac.auth_throttle import (
    CheckDropped,
    FailureThrottle,
    LoginOutcome,
    Logins,
    LoginSource,
    PasswordChecks,
    address_source,
    logins_for,
)

A = LoginSource("192.0.2.1")
B = LoginSource("192.0.2.2")
C = LoginSource("192.0.2.3")


def throttle(**kw) -> FailureThrottle:
    options = dict(failure_delay=1.0, max_failure_delay=4.0, max_failures_per_source=5,
                   max_failures_per_user=8, lockout=300.0, failure_window=900.0)
    options.update(kw)
    return FailureThrottle(**options)


class CapturedLog:
    """Every log event while a test runs."""

    def __init__(self, testcase):
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        testcase.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def lines(self, namespace: str = "nac") -> list[str]:
        """The text of the events of ``namespace`` (and below it)."""
        return [formatEvent(e) for e in self.events
                if f"{e.get('log_namespace', '')}.".startswith(f"{namespace}.")]


class AddressSourceTests(unittest.TestCase):
    def test_ipv4_is_itself_ipv6_its_64(self):
        self.assertEqual(address_source("192.0.2.7"), "192.0.2.7")
        self.assertEqual(address_source("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64")
        self.assertEqual(address_source("2001:db8:1:2::ffff"), "2001:db8:1:2::/64")
        self.assertEqual(address_source("::ffff:192.0.2.7"), "192.0.2.7")
        self.assertEqual(address_source("not an address"), "not an address")


class FailureThrottleTests(unittest.TestCase):
    def test_delay_doubles_from_failure_delay_up_to_the_maximum(self):
        t = throttle()
        expected = [1.0, 2.0, 4.0, 4.0]  # failure_delay 1, max 4
        now = 1000.0
        for n, wait in enumerate(expected, start=1):
            t.failed(A, f"user{n}", now)
            self.assertEqual(t.admit(A, "anyone", now).delay, wait, n)
            # the wait runs from the last failure
            self.assertEqual(t.admit(A, "anyone", now + 0.5).delay, wait - 0.5, n)
            self.assertEqual(t.admit(A, "anyone", now + wait).delay, 0.0, n)
            now += 10
        # another source owes nothing
        self.assertEqual(t.admit(B, "anyone", now).delay, 0.0)

    def test_source_locked_out_after_its_failures_then_free_again(self):
        t = throttle(max_failures_per_source=5, lockout=300.0)
        started = []
        for n in range(5):
            started += t.failed(A, f"guess{n}", 100.0 + n)
        self.assertEqual([(s.kind, s.name, s.failures) for s in started], [("source", "192.0.2.1", 5)])
        self.assertEqual(t.admit(A, "carol", 105.0).refused, "source")
        self.assertEqual(t.admit(A, "carol", 403.9).refused, "source")
        # failures of checks that were already running add no second lock-out
        self.assertEqual(t.failed(A, "guess9", 200.0), [])
        self.assertIsNone(t.admit(B, "carol", 105.0).refused)
        # 300 s after the lock-out began (at 104) it is over, and the count starts again
        fresh = t.admit(A, "carol", 404.0)
        self.assertEqual((fresh.refused, fresh.delay), (None, 0.0))
        self.assertEqual(t.failed(A, "x", 404.0), [])

    def test_user_locked_out_only_for_the_sources_that_failed_for_it(self):
        t = throttle(max_failures_per_source=5, max_failures_per_user=8)
        guessers = [LoginSource(f"198.51.100.{n}") for n in range(1, 9)]
        started = []
        for n, source in enumerate(guessers):
            started += t.failed(source, "carol", 10.0 + n)
        self.assertEqual([(s.kind, s.name, s.failures, s.sources) for s in started],
                         [("user", "carol", 8, 8)])
        for source in guessers:
            self.assertEqual(t.admit(source, "carol", 20.0).refused, "user")
            # ... for carol only
            self.assertIsNone(t.admit(source, "dave", 20.0).refused)
        # the real user, from an address that did not fail, still logs in
        self.assertIsNone(t.admit(A, "carol", 20.0).refused)
        # a new address that fails meanwhile gets that one guess
        t.failed(B, "carol", 21.0)
        self.assertEqual(t.admit(B, "carol", 22.0).refused, "user")
        self.assertIsNone(t.admit(C, "carol", 22.0).refused)
        # once the lock-out (300 s from 17) is over, they may try again
        self.assertIsNone(t.admit(guessers[0], "carol", 317.0).refused)

    def test_success_clears_the_user_lock_for_that_source_not_the_source_count(self):
        t = throttle(max_failures_per_source=5, max_failures_per_user=2)
        t.failed(A, "carol", 1.0)
        t.failed(A, "carol", 2.0)
        self.assertEqual(t.admit(A, "carol", 10.0).refused, "user")
        t.succeeded(A, "carol", 10.0)
        self.assertIsNone(t.admit(A, "carol", 11.0).refused)
        # a valid account buys no more guesses at others: the source's failures stay
        for n in range(3):
            t.succeeded(A, "mallory", 12.0 + n)
        t.failed(A, "dave", 20.0)
        t.failed(A, "erin", 21.0)
        t.failed(A, "frank", 22.0)
        self.assertEqual(t.admit(A, "anyone", 23.0).refused, "source")

    def test_failures_are_forgotten_after_the_window(self):
        t = throttle(max_failures_per_source=3, failure_window=900.0)
        t.failed(A, "x", 0.0)
        t.failed(A, "y", 100.0)
        # 900 s after the last failure: forgotten, so two more do not lock
        t.failed(A, "z", 1000.0)
        t.failed(A, "w", 1001.0)
        self.assertIsNone(t.admit(A, "v", 1002.0).refused)
        self.assertEqual(t.admit(A, "v", 1002.0).delay, 1.0)  # 2 failures: 2 s from 1001

    def test_a_relay_is_never_delayed_or_locked_as_a_whole(self):
        t = throttle(max_failures_per_source=2, max_failures_per_user=3)
        nas = LoginSource("NAS sw1", individual=False)
        events = []
        for n in range(10):
            events += t.failed(nas, f"user{n}", float(n))
        self.assertEqual(events, [])
        admission = t.admit(nas, "carol", 11.0)
        self.assertEqual((admission.refused, admission.delay), (None, 0.0))
        # it still counts for a user name guessed through it
        for n in range(3):
            t.failed(nas, "carol", 20.0 + n)
        self.assertEqual(t.admit(nas, "carol", 30.0).refused, "user")

    def test_memory_is_bounded(self):
        t = throttle(max_tracked=100)
        for n in range(1000):
            t.failed(LoginSource(f"10.0.{n // 250}.{n % 250}"), f"user{n}", 1.0)
        self.assertLessEqual(len(t._sources), 100)
        self.assertLessEqual(len(t._users), 100)


class ControlledCheck:
    """A password check whose answers the test gives, one per call."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.waiting: list[defer.Deferred] = []

    def __call__(self, name, password):
        self.calls.append((name, password))
        d = defer.Deferred()
        self.waiting.append(d)
        return d

    def answer(self, ok: bool = False) -> None:
        self.waiting.pop(0).callback(ok)


class PasswordChecksTests(unittest.TestCase):
    def test_concurrency_and_the_bounds(self):
        check = ControlledCheck()
        checks = PasswordChecks(check, max_pending=5, max_pending_per_source=3, concurrency=2)
        tickets = [checks.reserve("a") for _ in range(3)]
        self.assertIsNone(checks.reserve("a"))  # per source
        tickets += [checks.reserve("b"), checks.reserve("c")]
        self.assertIsNone(checks.reserve("d"))  # in all, and nobody has two more waiting than d
        results = [checks.start(t, f"u{n}", "pw") for n, t in enumerate(tickets)]
        self.assertEqual(len(check.calls), 2)
        check.answer(True)
        self.assertEqual(self.successResultOf(results[0]), True)
        self.assertEqual(len(check.calls), 3)
        self.assertEqual((checks.pending, checks.running), (4, 2))

    def test_sources_take_turns(self):
        check = ControlledCheck()
        checks = PasswordChecks(check, max_pending=50, max_pending_per_source=20, concurrency=1)
        for n in range(10):
            checks.start(checks.reserve("flood"), f"f{n}", "x")
        checks.start(checks.reserve("real"), "carol", "pw")
        # f0 runs; the flood had its turn, so carol's comes next, then the flood's again
        check.answer()
        check.answer()
        self.assertEqual([name for name, _ in check.calls], ["f0", "carol", "f1"])

    def test_a_released_check_never_runs(self):
        check = ControlledCheck()
        checks = PasswordChecks(check, max_pending=10, max_pending_per_source=10, concurrency=1)
        first = checks.reserve("a")
        checks.start(first, "u0", "x")
        gone = checks.reserve("a")
        checks.start(gone, "u1", "x")
        checks.release(gone)
        self.assertEqual((checks.pending, checks.dropped), (1, 1))
        check.answer()
        self.assertEqual([name for name, _ in check.calls], ["u0"])
        # a running check's place is freed when it returns, not before
        running = checks.reserve("a")
        checks.start(running, "u2", "x")
        checks.release(running)
        self.assertEqual(checks.pending, 1)
        check.answer()
        self.assertEqual(checks.pending, 0)

    def test_a_full_queue_makes_room_for_a_source_with_fewer(self):
        check = ControlledCheck()
        checks = PasswordChecks(check, max_pending=4, max_pending_per_source=4, concurrency=1)
        flood = [checks.start(checks.reserve("flood"), f"f{n}", "x") for n in range(4)]
        # f0 runs; f1..f3 wait; the real source holds none: the oldest waiting goes
        ticket = checks.reserve("real")
        self.assertIsNotNone(ticket)
        self.failureResultOf(flood[1], CheckDropped)
        self.assertNoResult(flood[2])
        checks.start(ticket, "carol", "pw")
        check.answer()
        self.assertEqual([name for name, _ in check.calls], ["f0", "carol"])


class LoginsTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.check = ControlledCheck()
        self.logins = Logins(self.check, throttle=throttle(max_failures_per_source=3),
                             checks=PasswordChecks(self.check, max_pending=8, max_pending_per_source=4),
                             clock=self.clock)

    def fail_once(self, source=A, user="carol"):
        d = self.logins.check_password(source, user, "wrong")
        while not d.called:
            self.clock.advance(0.25)
            if self.check.waiting:
                self.check.answer(False)
        self.assertEqual(self.successResultOf(d), LoginOutcome.REJECTED)

    def test_the_next_check_waits_for_the_delay(self):
        self.fail_once()
        d = self.logins.check_password(A, "carol", "second")
        self.assertEqual(len(self.check.calls), 1)  # not yet: 1 s after the failure
        self.clock.advance(0.9)
        self.assertEqual(len(self.check.calls), 1)
        self.clock.advance(0.1)
        self.assertEqual(self.check.calls[-1], ("carol", "second"))
        self.check.answer(True)
        self.assertEqual(self.successResultOf(d), LoginOutcome.ACCEPTED)

    def test_an_attempt_cancelled_while_it_waits_is_never_checked(self):
        self.fail_once()
        d = self.logins.check_password(A, "carol", "second")
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.clock.advance(10)
        self.assertEqual(len(self.check.calls), 1)
        self.assertEqual(self.logins.checks.pending, 0)

    def test_lock_out_refuses_unchecked_and_logs_once(self):
        log = CapturedLog(self)
        for _ in range(3):
            self.fail_once(A, "carol")
        for n in range(20):
            d = self.logins.check_password(A, f"guess{n}", "x")
            self.assertEqual(self.successResultOf(d), LoginOutcome.LOCKED_OUT)
        self.assertEqual(len(self.check.calls), 3)
        lines = [line for line in log.lines() if "locking out" in line]
        self.assertEqual(lines, ["locking out 192.0.2.1 for 300 s: 3 failed logins"])
        # another address is served as before
        d = self.logins.check_password(B, "carol", "pw")
        self.check.answer(True)
        self.assertEqual(self.successResultOf(d), LoginOutcome.ACCEPTED)

    def test_no_room_is_busy_at_once(self):
        results = [self.logins.check_password(A, "carol", "pw") for _ in range(6)]
        self.assertEqual([self.successResultOf(d) for d in results[4:]], [LoginOutcome.BUSY] * 2)
        self.assertEqual(len(self.check.calls), 2)

    def test_user_names_from_the_network_are_escaped_in_the_lock_out_line(self):
        log = CapturedLog(self)
        logins = Logins(self.check, throttle=throttle(max_failures_per_user=2, max_failures_per_source=99),
                        clock=self.clock)
        for source in (A, B):
            d = logins.check_password(source, "evil\nforged line", "x")
            self.check.answer(False)
            self.successResultOf(d)
        [line] = [line for line in log.lines() if "user name" in line]
        self.assertIn("'evil\\x0aforged line'", line)

    def test_logins_for_is_shared_per_store_and_takes_the_auth_section(self):
        class Store:
            def check_password(self, name, password):
                return defer.succeed(True)

        cfg = nac_config.load(None, {("auth", "max_password_checks"): "7", ("auth", "lockout"): "1m"})
        store = Store()
        logins = logins_for(cfg, store)
        self.assertIs(logins_for(cfg, store), logins)
        self.assertEqual((logins.checks.max_pending, logins.throttle.lockout), (7, 60.0))
        self.assertIsNot(logins_for(cfg, Store()), logins)

    def test_a_user_known_at_a_source_skips_the_queue_and_the_wait(self):
        d = self.logins.check_password(A, "carol", "pw")
        self.check.answer(True)
        self.assertEqual(self.successResultOf(d), LoginOutcome.ACCEPTED)
        # the queue fills up (4 from B, one running, at most 4 per source) and A owes a wait
        flood = [self.logins.check_password(B, f"guess{n}", "x") for n in range(4)]
        self.logins.throttle.failed(A, "mallory", self.clock.seconds())
        self.assertEqual(self.logins.admit(A, "carol").delay, 1.0)
        d = self.logins.check_password(A, "carol", "pw")
        self.assertEqual(self.check.calls[-1], ("carol", "pw"))  # at once, beside B's running check
        self.check.waiting.pop().callback(True)
        self.assertEqual(self.successResultOf(d), LoginOutcome.ACCEPTED)
        # another user name from A is not known: it waits its turn
        other = self.logins.check_password(A, "dave", "pw")
        self.assertNoResult(other)
        self.assertNotIn(("dave", "pw"), self.check.calls)
        for d in flood + [other]:
            d.cancel()
            self.failureResultOf(d, defer.CancelledError)

    def test_a_wrong_password_ends_being_known(self):
        d = self.logins.check_password(A, "carol", "pw")
        self.check.answer(True)
        self.successResultOf(d)
        self.assertTrue(self.logins.known(A, "carol"))
        d = self.logins.check_password(A, "carol", "wrong")
        self.check.answer(False)
        self.assertEqual(self.successResultOf(d), LoginOutcome.REJECTED)
        self.assertFalse(self.logins.known(A, "carol"))
        # and it is forgotten after known_for
        d = self.logins.check_password(A, "carol", "pw")
        self.clock.advance(1.0)
        self.check.answer(True)
        self.successResultOf(d)
        self.clock.advance(self.logins.known_for)
        self.assertFalse(self.logins.known(A, "carol"))


class ChecksAtOnceTests(unittest.TestCase):
    def test_no_more_than_the_process_share_of_the_cpus(self):
        import os

        from nac.auth_throttle import checks_at_once

        cpus = len(os.sched_getaffinity(0))
        one = nac_config.load(None, {("pt-tls", "workers"): "1"})
        self.assertEqual(checks_at_once(one, 2), max(1, min(2, cpus)))
        many = nac_config.load(None, {("pt-tls", "workers"): "256"})
        self.assertEqual(checks_at_once(many, 2), 1)
        both = nac_config.load(None, {("nac", "transports"): "pt-tls,radius", ("pt-tls", "workers"): "1",
                                      ("radius", "secret"): "s3cret", ("radius", "workers"): str(max(1, cpus))})
        self.assertEqual(checks_at_once(both, 8), 1)
