"""The failed-login throttle (:mod:`nac.auth_throttle`) around the EAP
methods that check a password: EAP-MD5 and EAP-MSCHAPv2, inner (EAP-TTLS
phase 2) or outer, and the non-EAP MS-CHAP-V2 of EAP-TTLS.  EAP-TTLS/PAP
goes through :meth:`nac.auth_throttle.Logins.check_password` itself.

A login refused by the throttle fails the method like a wrong password
(EAP-Failure; Access-Reject on RADIUS, IKE_AUTH failing on IKEv2), without
its password being looked at.  Which source a conversation counts as is the
transport's business: :func:`direct_source` for a peer that talks to nac
itself (IKEv2), :func:`relayed_source` for one relayed by a RADIUS NAS.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import defer

from nac.auth_throttle import LoginSource, Logins, address_source
from nac.eap.method import EapMethod, MethodStep, as_deferred
from nac.eap.packet import EapPacket

__all__ = ["LoginGuard", "direct_source", "relayed_source"]

LOCKED_OUT = "refused without a check: locked out after failed logins"


def direct_source(peer) -> LoginSource:
    """The peer's own address (an IPv6 one as its /64)."""
    return LoginSource(address_source(str(peer.address)))


def relayed_source(peer) -> LoginSource:
    """A RADIUS endpoint: the NAS and the endpoint's Calling-Station-Id; the
    NAS alone, never throttled as a whole, when it names no station."""
    nas = peer.nas or str(peer.address)
    station = getattr(peer, "station", None)
    if station:
        return LoginSource(f"{nas}/{station}")
    return LoginSource(f"NAS {nas}", individual=False)


class LoginGuard:
    """One conversation's logins through ``logins`` from ``source``."""

    def __init__(self, logins: Logins, source: LoginSource):
        self.logins = logins
        self.source = source
        self._wait: defer.Deferred | None = None

    def then(self, user: str, fn: Callable, *args) -> "MethodStep | defer.Deferred":
        """``fn(*args)`` once ``user`` may log in from this source: at once,
        after the wait the throttle imposes, or never (a failure step)."""
        admission = self.logins.admit(self.source, user)
        if admission.refused is not None:
            return MethodStep.failure(LOCKED_OUT)
        if admission.delay <= 0:
            return fn(*args)
        wait = self._wait = self.logins.wait(admission.delay)

        def resume(_):
            self._wait = None
            # locked out meanwhile by the failures of the source's other attempts
            if self.logins.admit(self.source, user).refused is not None:
                return MethodStep.failure(LOCKED_OUT)
            return as_deferred(fn(*args))

        def stopped(failure):
            failure.trap(defer.CancelledError)
            return MethodStep.failure("the conversation ended while its login waited")

        return wait.addCallbacks(resume, stopped)

    def record(self, user: str, ok: bool) -> None:
        self.logins.record(self.source, user, ok)

    def respond(self, method: EapMethod, response: EapPacket, user: str) -> "MethodStep | defer.Deferred":
        """``method.respond(response)`` for the Response that carries the
        peer's credentials, with the throttle before and the method's verdict
        reported after."""

        def report(step):
            if method.verdict is not None:
                self.record(user, method.verdict)
            return step

        def run():
            step = method.respond(response)
            if isinstance(step, defer.Deferred):
                return step.addCallback(report)
            return report(step)

        return self.then(user, run)

    def abort(self) -> None:
        """The conversation ended: stop any wait."""
        wait, self._wait = self._wait, None
        if wait is not None:
            wait.cancel()
