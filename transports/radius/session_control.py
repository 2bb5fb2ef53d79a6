"""CoA and Disconnect an operator asks for (RFC 5176), sent by the running
server: :class:`RadiusSessionControl` is the RADIUS service's
:class:`~nac.interfaces.IRunningSessionControl`, which the HTTP API and the
web console reach through that interface.

Unlike :func:`transports.radius.dynamic.change_session` (``nac-admin coa``,
blocking, in its own process), nothing here blocks: the database through
the policy store's pool, the request through a reactor-side
:class:`~transports.radius.dynamic.CoaSender` (counted in ``/metrics``),
the outcome recorded by :meth:`~transports.radius.dynamic.CoaDispatcher.send`
as for a decision change.  A CoA-Request goes out whatever the NAS's ``coa``
setting says: an operator asked.
"""

from __future__ import annotations

import dataclasses

from twisted.internet import defer
from zope.interface import implementer

from nac.db.accounting import coa_targets
from nac.db.store import NotFound
from nac.interfaces import IRunningSessionControl
from transports.radius.clients import RadiusClientTable
from transports.radius.coa import CoaBusy, CoaClient, CoaOutcome
from transports.radius.dynamic import CoaDispatcher, CoaSender, coa_request_for
from transports.radius.enforcement import RadiusEnforcement
from transports.radius.packet import Code

__all__ = ["ACCESS_VALUES", "RadiusSessionControl", "make_session_control", "outcome_report"]

#: what an operator may ask for: 'denied' ends the session (a Disconnect-Request)
ACCESS_VALUES = ("allowed", "isolate", "denied")


def outcome_report(info, outcome: CoaOutcome) -> tuple[bool, dict, str]:
    """(acknowledged, the outcome as JSON values, one line) of a request
    for accounting session ``info``."""
    text = outcome.describe()
    data = {"id": info.id, "nas": info.nas, "action": outcome.action, "acked": outcome.acked,
            "nak": outcome.nak, "error_cause": outcome.error_cause, "attempts": outcome.attempts, "result": text}
    return outcome.acked, data, f"{outcome.action} for accounting session {info.id} ({info.nas}): {text}"


@implementer(IRunningSessionControl)
class RadiusSessionControl:
    """An operator's CoA / Disconnect for one accounting session (see the module)."""

    def __init__(self, dispatcher: CoaDispatcher):
        self.dispatcher = dispatcher

    @property
    def sender(self) -> CoaSender:
        return self.dispatcher.sender

    def change_session(self, session_id: int, access: str | None):
        return defer.ensureDeferred(self._change(session_id, access))

    async def _change(self, session_id: int, access: str | None) -> tuple[bool, dict, str]:
        if access is not None and access not in ACCESS_VALUES:
            raise ValueError(f"access must be one of {', '.join(ACCESS_VALUES)}")
        dispatcher = self.dispatcher
        found = await dispatcher.store.read(coa_targets, row_id=session_id)
        if not found:
            raise NotFound(f"no accounting session {session_id}")
        info = found[0]
        client = dispatcher.clients.find(info.nas_address)
        if client is None:
            raise LookupError(f"accounting session {session_id}: its NAS {info.nas_address} is no RADIUS client "
                              "of the configuration")
        if access is None:
            kind, attributes = Code.DISCONNECT_REQUEST, []
        else:
            kind, attributes = coa_request_for(info, dataclasses.replace(client, coa="coa"), access,
                                               dispatcher.enforcement)
        try:
            sent = dispatcher.send(info, client, kind, attributes)
        except CoaBusy as exc:
            raise ValueError(str(exc)) from None
        outcome = await sent
        return outcome_report(info, outcome)


def make_session_control(cfg, store, clients: RadiusClientTable, dispatcher: CoaDispatcher | None = None,
                         reactor=None) -> RadiusSessionControl:
    """The session control of the main process: with the decision changes'
    ``dispatcher`` when there is one (one UDP port, one Identifier space
    towards each NAS), else one of its own that listens to no decisions."""
    if dispatcher is None:
        if reactor is None:
            from twisted.internet import reactor
        sec = cfg.section("radius")
        sender = CoaSender(CoaClient(timeout=sec["coa_timeout"], attempts=sec["coa_attempts"]), reactor,
                           sec["listen"])
        dispatcher = CoaDispatcher(store, clients, RadiusEnforcement.from_config(sec), sender)
    return RadiusSessionControl(dispatcher)
