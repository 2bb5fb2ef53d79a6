"""The posture methods: PT-EAP (RFC 7171, EAP type 54) and the legacy
EAP-TNC (EAP type 38, TCG IF-T for EAP), server side.

Both carry whole TNCCS batches between the endpoint's TNC client and the
TNCS core, fragmented as EAP-TTLS fragments its records
(:mod:`nac.eap.fragments`).  PT-EAP carries PB-TNC (RFC 5793); EAP-TNC
carries IF-TNCCS 1.1 or PB-TNC, told apart by the client's first batch
(the core's 'dynamic' protocol, as strongSwan's tnccs-dynamic).

The exchange, as hostapd and strongSwan run it inside EAP-TTLS: the server's
Start; the client's first batch; batch for batch until the TNCS has decided
(an IF-TNCCS 1.1 client with nothing to send answers a batch with an empty
message, upon which the TNCS decides);
the client's last message (PB-TNC: its CLOSE batch after the RESULT;
IF-TNCCS 1.1: an empty acknowledgement of the batch with the
recommendation) ends the method.  The method succeeds when access is
allowed or isolated and fails when it is denied, as strongSwan's
eap-tnc does (its enforcement callback refuses "no access"), so the outer
conversation ends in EAP-Failure for a denied endpoint.
"""

from __future__ import annotations

from typing import ClassVar

from twisted.internet import defer

from nac.eap.fragments import EAP_TNC, PT_EAP, FragmentChannel, FragmentError, Framing
from nac.eap.method import EapMethod, MethodStep, as_deferred
from nac.eap.packet import EapPacket, EapType
from nac.log import Logger
from nac.tnccs.assessment import TransportLimits, address_of

__all__ = ["EAP_TNC_LIMITS", "EapTnc", "PostureMethod", "PtEap"]

log = Logger(namespace="nac.eap")

EAP_TNC_LIMITS = TransportLimits(max_batch_size=32754, max_message_size=32722)
"""What strongSwan's PT-EAP and EAP-TNC announce to the TNCCS layer."""

MAX_TNC_MESSAGE = 65535
"""Largest reassembled batch accepted (strongSwan's EAP_TNC_MAX_MESSAGE_LEN);
the TNCCS layer applies its own, smaller batch limit after that."""


class PostureMethod(EapMethod):
    """Base of PT-EAP and EAP-TNC: one TNCCS connection on the core.

    ``peer`` is the nac.tnccs.assessment.PeerInfo the assessment is recorded under
    (the authenticated identity); ``fragment_size`` bounds the type-data of
    each packet (None: one packet per batch, as strongSwan sends them).
    """

    FRAMING: ClassVar[Framing]
    PROTOCOL: ClassVar[str]

    def __init__(self, core, peer, *, fragment_size: int | None = None,
                 limits: TransportLimits = EAP_TNC_LIMITS):
        super().__init__()
        self.core = core
        self.peer = peer
        self.limits = limits
        self.connection = None
        self._channel = FragmentChannel(self.FRAMING, fragment_size=fragment_size,
                                        max_message_size=MAX_TNC_MESSAGE)
        self._pending: list[bytes] = []
        self._closing = False
        self._ended = False

    def initiate(self) -> bytes:
        self.connection = self.core.open_connection(self.peer, self.limits, protocol=self.PROTOCOL)
        log.info("{method} method started for '{peer}' (TNCCS Connection ID {cid})",
                 method=self.label, peer=self.peer.identity, cid=self.connection.connection_id)
        return self.FRAMING.start_packet()

    def process(self, response: EapPacket) -> defer.Deferred:
        return as_deferred(self.respond(response))

    def respond(self, response: EapPacket):
        # fragments and acknowledgements are answered at once; only a whole
        # batch goes to the TNCS core (and maybe to the database)
        if self._ended or self.connection is None:
            return MethodStep.failure(f"{self.label} response after the method ended")
        try:
            received = self._channel.receive(response.type_data)
        except FragmentError as err:
            return self._fail(f"invalid {self.label} packet: {err}")
        if received.send is not None:
            return MethodStep.send(received.send)
        message = received.message
        if self._closing:
            # the peer's last word after the TNCS closed: an ACK or its CLOSE batch
            return self._finish()
        if not message:
            if self._pending:
                return self._send_batch(self._pending.pop(0))
            if self.connection.finished:
                return self._finish()
            # IF-TNCCS 1.1: the client's collectors have nothing to say
            acknowledged = self.connection.receive_acknowledgement()
            if acknowledged is None:
                return self._fail(f"empty {self.label} message before the assessment ended")
            acknowledged.addCallbacks(self._batch_outcome, self._core_failed)
            return acknowledged
        d = self.connection.receive_batch(message)
        d.addCallbacks(self._batch_outcome, self._core_failed)
        return d

    def _batch_outcome(self, outcome) -> MethodStep:
        if self._ended:
            return MethodStep.failure(f"{self.label} method aborted")
        batches = list(outcome.batches)
        if outcome.close:
            self._closing = True
        if batches:
            self._pending = batches[1:]
            return self._send_batch(batches[0])
        if outcome.close:
            return self._finish()
        return self._fail("the TNCCS connection produced no batch to send")

    def _send_batch(self, batch: bytes) -> MethodStep:
        return MethodStep.send(self._channel.send(batch))

    def _finish(self) -> MethodStep:
        self._ended = True
        conn = self.connection
        decision = conn.decision if conn is not None else None
        self.decision = decision
        if conn is not None and not conn.finished:
            conn.abort("the EAP method ended")
        if decision is None:
            return MethodStep.failure("the posture assessment ended without a decision")
        self.identity = self.peer.identity
        if decision.access == "denied":
            log.info("policy enforced on peer '{peer}' is 'no access'", peer=self.peer.identity)
            return MethodStep.failure("access denied by the posture assessment")
        log.info("policy enforced on peer '{peer}' is '{group}'", peer=self.peer.identity,
                 group="allow" if decision.access == "allowed" else decision.access)
        return MethodStep.success()

    def _fail(self, reason: str) -> MethodStep:
        log.warn("{reason}", reason=reason,
                 log_limit=("posture exchange failure", address_of(self.peer)))
        self.abort(reason)
        return MethodStep.failure(reason)

    def _core_failed(self, failure) -> MethodStep:
        log.failure("the TNCS core failed on Connection ID {cid}", failure,
                    cid=getattr(self.connection, "connection_id", None))
        self.abort("TNCS failure")
        return MethodStep.failure("the TNCS core failed")

    def abort(self, reason: str) -> None:
        self._ended = True
        if self.connection is not None and not self.connection.finished:
            self.connection.abort(reason)


class PtEap(PostureMethod):
    """PT-EAP (RFC 7171): PB-TNC batches, Start flag 0x80, version 1."""

    TYPE = EapType.PT_EAP
    FRAMING = PT_EAP
    PROTOCOL = "pb-tnc"


class EapTnc(PostureMethod):
    """EAP-TNC (type 38): IF-TNCCS 1.1 or PB-TNC, detected from the first batch."""

    TYPE = EapType.TNC
    FRAMING = EAP_TNC
    PROTOCOL = "dynamic"
