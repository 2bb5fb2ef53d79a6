"""The PB-TNC server side of one TNCCS connection (RFC 5793 §3.2).

Sans-IO: :meth:`PbTncServerConnection.receive_batch` takes the bytes of one
batch and fires with the batches to send.  The only asynchrony is the IMVs'
(their methods may return Deferreds), so a Deferred is the result type; no
reactor, socket or clock is used here.

Every exchange ends in a decision within a bounded number of rounds: when the
endpoint's collectors go silent (a CDATA batch without PA messages after the
IMVs asked for something), or after ``max_rounds`` SDATA round trips, the
IMVs are solicited for a recommendation, and an IMV that still gives none
counts as "no recommendation", which denies access.  That machinery, shared
with IF-TNCCS 1.1, lives in :mod:`nac.tnccs.connection`; this module holds
what is PB-TNC's own: the state machine, the batch types and the messages,
and the server's handshake retry after a decision (an SRETRY batch, on a
transport's re-assessment schedule: :class:`nac.interfaces.IHandshakeRetry`),
whose new assessment is recorded as a session of its own.
"""

from __future__ import annotations

import enum

from zope.interface import implementer

from nac import metrics
from nac.log import Logger
from nac.ifimv import ActionRecommendation, ConnectionState, EvaluationResult
from nac.interfaces import IHandshakeRetry, ITnccsConnection
from nac.pb.batch import BatchType, Direction, PbBatch
from nac.pb.messages import (
    AccessRecommendation,
    AssessmentResult,
    ItaMutualCapability,
    PbAccessRecommendation,
    PbAssessmentResult,
    PbError,
    PbLanguagePreference,
    PbPa,
    PbReasonString,
    PbRemediationParameters,
    PbTncError,
)
from nac.tnccs.connection import TnccsServerConnection
from nac.tnccs.assessment import BatchOutcome
from nac.tnccs.imv_manager import OutgoingPaMessage

log = Logger(namespace="nac.tnccs.pb")

A = ActionRecommendation
E = EvaluationResult


class PbState(enum.Enum):
    """RFC 5793 §3.2 states, named as strongSwan logs them."""

    INIT = "Init"
    SERVER_WORKING = "Server Working"
    CLIENT_WORKING = "Client Working"
    DECIDED = "Decided"
    END = "End"


S = PbState
B = BatchType

# What a PB-TNC server may receive / send in each state, and where it leads:
# RFC 5793 §3.2, and from Init also an SDATA as strongSwan's state machine
# allows, with which the TNCS of the side that opened the connection as
# its client starts the second exchange of mutual PB-TNC
# (:mod:`nac.tnccs.mutual`).  A server of one exchange never sends it.
_RECEIVE = {
    S.INIT: {B.CDATA: S.SERVER_WORKING, B.CLOSE: S.END},
    S.SERVER_WORKING: {B.CRETRY: S.SERVER_WORKING, B.CLOSE: S.END},
    S.CLIENT_WORKING: {B.CDATA: S.SERVER_WORKING, B.CRETRY: S.SERVER_WORKING, B.CLOSE: S.END},
    S.DECIDED: {B.CRETRY: S.SERVER_WORKING, B.CLOSE: S.END},
    S.END: {B.CLOSE: S.END},
}
_SEND = {
    S.INIT: {B.SDATA: S.CLIENT_WORKING, B.CLOSE: S.END},
    S.SERVER_WORKING: {B.SDATA: S.CLIENT_WORKING, B.SRETRY: S.CLIENT_WORKING,
                       B.RESULT: S.DECIDED, B.CLOSE: S.END},
    S.CLIENT_WORKING: {B.SRETRY: S.CLIENT_WORKING, B.CLOSE: S.END},
    S.DECIDED: {B.SRETRY: S.CLIENT_WORKING, B.CLOSE: S.END},
    S.END: {B.CLOSE: S.END},
}


_PB_RECOMMENDATION = {
    A.ALLOW: AccessRecommendation.ALLOWED,
    A.ISOLATE: AccessRecommendation.QUARANTINED,
    A.NO_ACCESS: AccessRecommendation.DENIED,
    A.NO_RECOMMENDATION: AccessRecommendation.DENIED,
}


class _Fatal(Exception):
    def __init__(self, error: PbError):
        self.error = error


@implementer(ITnccsConnection, IHandshakeRetry)
class PbTncServerConnection(TnccsServerConnection):
    """One PB-TNC (IF-TNCCS 2.0) connection, server role (RFC 5793 §3.2)."""

    PROTOCOL = "PB-TNC"
    PA_MESSAGE = "PB-PA"

    def __init__(self, core, connection_id: int, peer, limits):
        super().__init__(core, connection_id, peer, limits)
        self.state = S.INIT
        self._retry_sent = False

    def _wrap_pa(self, msg: OutgoingPaMessage) -> PbPa:
        return PbPa(pa_vendor=msg.vendor_id, pa_subtype=msg.subtype,
                    collector_id=msg.collector_id, validator_id=msg.validator_id,
                    body=msg.body, exclusive=msg.exclusive, noskip=True)

    # -- processing ----------------------------------------------------------------

    async def _process(self, data: bytes) -> BatchOutcome:
        if self.finished:
            return BatchOutcome(close=True)
        try:
            return await self._process_batch(data)
        except _Fatal as fatal:
            return await self._send_close(fatal.error)

    async def _process_batch(self, data: bytes) -> BatchOutcome:
        try:
            batch = PbBatch.parse(data, max_size=self.limits.max_batch_size)
        except PbTncError as err:
            log.warn("invalid PB-TNC batch on Connection ID {cid} from {peer}: {err}",
                     cid=self.connection_id, peer=self.peer.address, err=str(err),
                     log_limit=("invalid PB-TNC batch", self.peer.address))
            raise _Fatal(err.to_message())
        if batch.direction is not Direction.TO_SERVER:
            log.warn("wrong Directionality: batch is from a PB-TNC server (Connection ID {cid})",
                     cid=self.connection_id, log_limit=("invalid PB-TNC batch", self.peer.address))
            raise _Fatal(PbTncError.invalid_parameter(1).to_message())

        log.debug("processing PB-TNC {type} batch for Connection ID {cid}",
                 type=batch.batch_type.name, cid=self.connection_id)
        nxt = _RECEIVE[self.state].get(batch.batch_type)
        if nxt is None and batch.batch_type is B.CDATA and self._retry_requested:
            nxt = S.SERVER_WORKING
        if nxt is None:
            log.warn("unexpected PB-TNC batch type: {type} in state '{state}'",
                     type=batch.batch_type.name, state=self.state.value,
                     log_limit=("unexpected PB-TNC batch", self.peer.address))
            raise _Fatal(PbTncError.unexpected_batch_type().to_message())
        self._transition(nxt)

        if not self._started:
            await self._begin()
        elif self._retry_sent and batch.batch_type in (B.CDATA, B.CRETRY):
            await self._begin_again()
        elif batch.batch_type is B.CRETRY or (batch.batch_type is B.CDATA and self._retry_requested):
            self._retry_requested = False
            self.decision = None
            self.rounds = 0
            for c in self._imv_conns:
                c.clear()
            await self._notify_all(ConnectionState.HANDSHAKE)

        fatal_from_client = await self._handle_messages(batch)

        if batch.batch_type is B.CLOSE or fatal_from_client:
            if batch.batch_type is B.CLOSE:
                self._end()
                return BatchOutcome(close=True, decision=self.decision)
            return await self._send_close(None)

        await self._each_imv("batch_ending")

        pa_received = any(isinstance(m, PbPa) for m in batch.messages)
        return await self._reply(empty=not batch.messages, pa_received=pa_received)

    async def _handle_messages(self, batch: PbBatch) -> bool:
        """Dispatch the messages of a batch; True if the client reported a fatal error."""
        unsupported = batch.unsupported_noskip_error()
        if unsupported is not None:
            log.warn("reject PB-TNC message with NOSKIP flag on Connection ID {cid}: {err}",
                     cid=self.connection_id, err=str(unsupported),
                     log_limit=("unsupported PB-TNC message", self.peer.address))
            raise _Fatal(unsupported.to_message())
        misplaced = batch.misplaced_result_messages()
        if misplaced:
            offset, msg = misplaced[0]
            log.warn("reject {name} message received from a PB-TNC client", name=msg.NAME,
                     log_limit=("misplaced PB-TNC message", self.peer.address))
            raise _Fatal(PbTncError.invalid_parameter(offset).to_message())
        fatal = False
        for msg in batch.messages:
            if isinstance(msg, PbPa):
                await self._deliver_pa(vendor_id=msg.pa_vendor, subtype=msg.pa_subtype,
                                       collector_id=msg.collector_id, validator_id=msg.validator_id,
                                       exclusive=msg.exclusive, body=msg.body)
            elif isinstance(msg, PbLanguagePreference):
                log.debug("setting language preference to '{lang}'", lang=msg.language)
                self.preferred_language = msg.language
            elif isinstance(msg, PbError):
                log.warn("received PB-TNC error from client (Connection ID {cid}): {err}",
                         cid=self.connection_id, err=str(msg.to_exception()),
                         log_limit=("PB-TNC error from a client", self.peer.address))
                fatal = fatal or msg.fatal
            elif isinstance(msg, ItaMutualCapability):
                self._mutual_capability(msg)
        return fatal

    def _mutual_capability(self, msg: ItaMutualCapability) -> None:
        """The client announced mutual PB-TNC; a server of one exchange
        only notes it (:mod:`nac.tnccs.mutual` takes it up)."""
        log.debug("client supports mutual PB-TNC protocol 0x{p:08x}; not mutual here",
                  p=msg.protocols)

    # -- the server's handshake retry (IHandshakeRetry) ---------------------------------

    def retry_handshake(self, reason: str):
        return self._in_turn(lambda: self._retry(reason))

    def _can_retry(self) -> bool:
        return self.state is S.DECIDED and not self.finished and self.decision is not None

    async def _retry(self, reason: str) -> BatchOutcome | None:
        if not self._can_retry():
            return None
        log.info("starting a new assessment of Connection ID {cid} ({peer}): {reason}", cid=self.connection_id,
                 peer=self.peer.identity or self.peer.address, reason=reason)
        # RFC 5793 §3.2: the SRETRY leads to Client Working, and the
        # endpoint's next CDATA begins the new handshake (as strongSwan's
        # TNCS takes it); a CLOSE instead ends the connection with the
        # decision it has
        self._retry_sent = True
        self._queue.clear()
        return BatchOutcome(batches=[self._build(B.SRETRY, [])])

    async def _begin_again(self) -> None:
        """A new assessment on this connection, after the SRETRY: a session
        of its own in the store, the group policy and the device looked up
        anew, and the IMVs start over (HANDSHAKE, as for any retry)."""
        self._retry_sent = False
        self._retry_requested = False
        self.decision = None
        self.rounds = 0
        self._sent_pa_last = False
        self._device = (None, None)
        self._policy = None
        self._enforcement = None
        for c in self._imv_conns:
            c.clear()
        metrics.assessment_started(self.connection_id)
        self._record_start()
        await self._notify_all(ConnectionState.HANDSHAKE)

    # -- building the reply ----------------------------------------------------------

    async def _reply(self, *, empty: bool, pa_received: bool) -> BatchOutcome:
        # an empty CDATA answered by nothing would just ping-pong: decide
        verdict = await self._round_verdict(pa_received=pa_received, idle=empty and not self._queue)
        if verdict is not None:
            return self._send_result(*verdict)
        return self._send_sdata()

    def _send_sdata(self) -> BatchOutcome:
        if not self._queue:
            log.debug("no recommendation available yet, sending empty PB-TNC SDATA batch")
        messages = self._take_fitting(self._queue, reserve=0)
        self._sent_pa_last = any(isinstance(m, PbPa) for m in messages)
        return BatchOutcome(batches=[self._build(B.SDATA, messages)])

    def _send_result(self, rec: A, ev: E) -> BatchOutcome:
        result_msgs = [PbAssessmentResult(result=AssessmentResult(int(ev))),
                       PbAccessRecommendation(recommendation=_PB_RECOMMENDATION[rec])]
        for c in self._imv_conns:
            v = c.verdict
            if v.reason:
                result_msgs.append(PbReasonString(reason=v.reason, language=v.reason_language))
            for r in v.remediation:
                if r.uri:
                    result_msgs.append(PbRemediationParameters.for_uri(r.uri))
                else:
                    result_msgs.append(PbRemediationParameters.for_string(r.instructions, r.language))
        result_size = sum(m.size for m in result_msgs)
        pending_pa = self._take_fitting(self._queue, reserve=result_size)
        if self._queue:
            # Not everything fits with the result: flush PA messages first.
            self._queue[:0] = pending_pa
            return self._send_sdata()
        batch = self._build(B.RESULT, pending_pa + result_msgs)
        return BatchOutcome(batches=[batch], decision=self._conclude(rec, ev))

    def _take_fitting(self, queue: list, reserve: int) -> list:
        room = self.limits.max_batch_size - PbBatch.HEADER_SIZE - reserve
        taken = []
        while queue and queue[0].size <= room:
            msg = queue.pop(0)
            room -= msg.size
            taken.append(msg)
        if queue and not taken and reserve == 0:
            # a single message larger than a batch can never be sent
            dropped = queue.pop(0)
            log.error("PB-TNC message of {size} bytes does not fit a batch; dropped", size=dropped.size)
        if queue:
            log.debug("queued {n} PB-TNC message(s) for the next batch", n=len(queue))
        return taken

    def _build(self, btype: BatchType, messages) -> bytes:
        nxt = _SEND[self.state][btype]
        data = PbBatch(batch_type=btype, direction=Direction.TO_CLIENT,
                       messages=tuple(messages)).build()
        log.debug("sending PB-TNC {type} batch ({size} bytes) for Connection ID {cid}",
                 type=btype.name, size=len(data), cid=self.connection_id)
        self._transition(nxt)
        return data

    async def _send_close(self, error: PbError | None) -> BatchOutcome:
        messages = (error,) if error is not None else ()
        data = PbBatch(batch_type=B.CLOSE, direction=Direction.TO_CLIENT, messages=messages).build()
        log.debug("sending PB-TNC CLOSE batch ({size} bytes) for Connection ID {cid}",
                 size=len(data), cid=self.connection_id)
        self._transition(S.END)
        self._end()
        return BatchOutcome(batches=[data], close=True, decision=self.decision)

    def _transition(self, new: PbState) -> None:
        if new is not self.state:
            log.info("PB-TNC state transition from '{old}' to '{new}'",
                      old=self.state.value, new=new.value)
            self.state = new

    def _end(self) -> None:
        self.state = S.END
        super()._end()
