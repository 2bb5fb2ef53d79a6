"""The PB-TNC server side of one TNCCS connection (RFC 5793 §3.2).

Sans-IO: :meth:`PbTncServerConnection.receive_batch` takes the bytes of one
batch and fires with the batches to send.  The only asynchrony is the IMVs'
(their methods may return Deferreds), so a Deferred is the result type; no
reactor, socket or clock is used here.

Every exchange ends in a decision within a bounded number of rounds: when the
endpoint's collectors go silent (a CDATA batch without PA messages after the
IMVs asked for something), or after ``max_rounds`` SDATA round trips, the
IMVs are solicited for a recommendation, and an IMV that still gives none
counts as "no recommendation", which denies access.
"""

from __future__ import annotations

import enum

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from nac.log import Logger
from nac.ifimv import ActionRecommendation, ConnectionState, EvaluationResult
from nac.interfaces import ITnccsConnection
from nac.pa import PaMessage, PaTncError, pa_error_reply
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
from nac.tnccs.core import BatchOutcome, Decision
from nac.tnccs.imv_manager import ImvConnection, OutgoingPaMessage, ReceivedPaMessage
from nac.tnccs.recommendations import combine

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

# What a PB-TNC server may receive / send in each state, and where it leads.
_RECEIVE = {
    S.INIT: {B.CDATA: S.SERVER_WORKING, B.CLOSE: S.END},
    S.SERVER_WORKING: {B.CRETRY: S.SERVER_WORKING, B.CLOSE: S.END},
    S.CLIENT_WORKING: {B.CDATA: S.SERVER_WORKING, B.CRETRY: S.SERVER_WORKING, B.CLOSE: S.END},
    S.DECIDED: {B.CRETRY: S.SERVER_WORKING, B.CLOSE: S.END},
    S.END: {B.CLOSE: S.END},
}
_SEND = {
    S.INIT: {B.CLOSE: S.END},
    S.SERVER_WORKING: {B.SDATA: S.CLIENT_WORKING, B.SRETRY: S.CLIENT_WORKING,
                       B.RESULT: S.DECIDED, B.CLOSE: S.END},
    S.CLIENT_WORKING: {B.SRETRY: S.CLIENT_WORKING, B.CLOSE: S.END},
    S.DECIDED: {B.SRETRY: S.CLIENT_WORKING, B.CLOSE: S.END},
    S.END: {B.CLOSE: S.END},
}


_PB_ACCESS = {
    A.ALLOW: (AccessRecommendation.ALLOWED, ConnectionState.ACCESS_ALLOWED, "allowed"),
    A.ISOLATE: (AccessRecommendation.QUARANTINED, ConnectionState.ACCESS_ISOLATED, "isolate"),
    A.NO_ACCESS: (AccessRecommendation.DENIED, ConnectionState.ACCESS_NONE, "denied"),
    A.NO_RECOMMENDATION: (AccessRecommendation.DENIED, ConnectionState.ACCESS_NONE, "denied"),
}


class _Fatal(Exception):
    def __init__(self, error: PbError):
        self.error = error


def _maybe(result):
    """Await-able view of an IMV method result (a value or a Deferred)."""
    if isinstance(result, defer.Deferred):
        return result
    return defer.succeed(result)


@implementer(ITnccsConnection)
class PbTncServerConnection:
    """One PB-TNC (IF-TNCCS 2.0) connection, server role."""

    def __init__(self, core, connection_id: int, peer, limits):
        self.core = core
        self.connection_id = connection_id
        self.peer = peer
        self.limits = limits
        self.state = S.INIT
        self.preferred_language = ""
        self.decision: Decision | None = None
        self.finished = False
        self.rounds = 0
        self._imv_conns = [ImvConnection(self, loaded.imv_id, loaded.name)
                           for loaded in core.imvs]
        self._by_id = {c.imv_id: c for c in self._imv_conns}
        self._queue: list = []
        self._sent_pa_last = False
        self._retry_requested = False
        self._started = False
        self._session = None
        self._tail: defer.Deferred = defer.succeed(None)

    # -- IImvConnection back-calls ------------------------------------------------

    def queue_pa_message(self, msg: OutgoingPaMessage) -> None:
        if len(msg.body) > self.limits.max_message_size:
            log.error("IMV {imv_id} message of {size} bytes exceeds the {limit}-byte PA message "
                      "limit of Connection ID {cid}; dropped",
                      imv_id=msg.validator_id, size=len(msg.body),
                      limit=self.limits.max_message_size, cid=self.connection_id)
            return
        self._queue.append(PbPa(pa_vendor=msg.vendor_id, pa_subtype=msg.subtype,
                                collector_id=msg.collector_id, validator_id=msg.validator_id,
                                body=msg.body, exclusive=msg.exclusive, noskip=True))

    def request_handshake_retry(self, imv_id: int, reason) -> None:
        log.info("IMV {imv_id} requests a handshake retry on Connection ID {cid}: {reason}",
                 imv_id=imv_id, cid=self.connection_id, reason=reason)
        self._retry_requested = True

    # -- ITnccsConnection ---------------------------------------------------------

    def receive_batch(self, data: bytes) -> defer.Deferred:
        d = defer.Deferred()

        def run(_):
            inner = defer.ensureDeferred(self._process(bytes(data)))
            inner.chainDeferred(d)
            return inner.addErrback(lambda _f: None)

        self._tail.addCallback(run)
        return d

    def abort(self, reason: str) -> None:
        if self.finished:
            return
        log.info("Connection ID {cid} aborted: {reason}", cid=self.connection_id, reason=reason)
        self._end()

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
                     cid=self.connection_id, peer=self.peer.address, err=str(err))
            raise _Fatal(err.to_message())
        if batch.direction is not Direction.TO_SERVER:
            log.warn("wrong Directionality: batch is from a PB-TNC server (Connection ID {cid})",
                     cid=self.connection_id)
            raise _Fatal(PbTncError.invalid_parameter(1).to_message())

        log.info("processing PB-TNC {type} batch for Connection ID {cid}",
                 type=batch.batch_type.name, cid=self.connection_id)
        nxt = _RECEIVE[self.state].get(batch.batch_type)
        if nxt is None and batch.batch_type is B.CDATA and self._retry_requested:
            nxt = S.SERVER_WORKING
        if nxt is None:
            log.warn("unexpected PB-TNC batch type: {type} in state '{state}'",
                     type=batch.batch_type.name, state=self.state.value)
            raise _Fatal(PbTncError.unexpected_batch_type().to_message())
        self._transition(nxt)

        if not self._started:
            self._started = True
            self._record_start()
            await self._notify_all(ConnectionState.CREATE)
            await self._notify_all(ConnectionState.HANDSHAKE)
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
                     cid=self.connection_id, err=str(unsupported))
            raise _Fatal(unsupported.to_message())
        misplaced = batch.misplaced_result_messages()
        if misplaced:
            offset, msg = misplaced[0]
            log.warn("reject {name} message received from a PB-TNC client", name=msg.NAME)
            raise _Fatal(PbTncError.invalid_parameter(offset).to_message())
        fatal = False
        for msg in batch.messages:
            if isinstance(msg, PbPa):
                await self._deliver_pa(msg)
            elif isinstance(msg, PbLanguagePreference):
                log.debug("setting language preference to '{lang}'", lang=msg.language)
                self.preferred_language = msg.language
            elif isinstance(msg, PbError):
                log.warn("received PB-TNC error from client (Connection ID {cid}): {err}",
                         cid=self.connection_id, err=str(msg.to_exception()))
                fatal = fatal or msg.fatal
            elif isinstance(msg, ItaMutualCapability):
                log.debug("client supports mutual PB-TNC protocol 0x{p:08x}; not mutual here",
                          p=msg.protocols)
        return fatal

    async def _deliver_pa(self, msg: PbPa) -> None:
        recipients = self.core.imvs.recipients(msg.pa_vendor, msg.pa_subtype,
                                               msg.exclusive, msg.validator_id)
        if not recipients:
            log.debug("message type 0x{vendor:06x}/0x{subtype:08x} not supported by any IMV",
                      vendor=msg.pa_vendor, subtype=msg.pa_subtype)
            return
        first = recipients[0].imv_id
        try:
            pa = PaMessage.parse(msg.body)
        except PaTncError as err:
            log.warn("invalid PA-TNC message from collector {imc} on Connection ID {cid}: {err}",
                     imc=msg.collector_id, cid=self.connection_id, err=str(err))
            self._queue_pa_error(msg, first, pa_error_reply(err))
            return
        unsupported = pa.unsupported_noskip()
        if unsupported:
            log.warn("PA-TNC message from collector {imc} has an unsupported attribute "
                     "0x{vendor:06x}/0x{type:08x} with NOSKIP flag",
                     imc=msg.collector_id, vendor=unsupported[0].vendor, type=unsupported[0].type)
            self._queue_pa_error(msg, first, pa_error_reply(pa, unsupported=unsupported, raw=msg.body))
            return
        received = ReceivedPaMessage(vendor_id=msg.pa_vendor, subtype=msg.pa_subtype,
                                     collector_id=msg.collector_id, validator_id=msg.validator_id,
                                     exclusive=msg.exclusive, body=msg.body, pa=pa)
        for loaded in recipients:
            await self._call(loaded.imv_id, "receive_message", received)

    def _queue_pa_error(self, msg: PbPa, imv_id: int, body: bytes) -> None:
        self.queue_pa_message(OutgoingPaMessage(
            vendor_id=msg.pa_vendor, subtype=msg.pa_subtype, collector_id=msg.collector_id,
            validator_id=imv_id, exclusive=True, body=body))

    # -- building the reply ----------------------------------------------------------

    async def _reply(self, *, empty: bool, pa_received: bool) -> BatchOutcome:
        self.rounds += 1
        verdict = combine(self.core.policy, [c.verdict for c in self._imv_conns])
        if verdict is None:
            silent = self._sent_pa_last and not pa_received
            if self.rounds > self.core.max_rounds:
                log.warn("no decision after {n} rounds on Connection ID {cid}; "
                         "soliciting recommendations", n=self.core.max_rounds, cid=self.connection_id)
                verdict = await self._solicit()
            elif silent:
                # The IMVs asked and the endpoint answered with no PA message:
                # it has no collector for them, asking again cannot help.
                log.info("collectors sent no PA message in reply on Connection ID {cid}; "
                         "soliciting recommendations", cid=self.connection_id)
                verdict = await self._solicit()
            elif empty and not self._queue:
                verdict = await self._solicit()
        if verdict is not None:
            return self._send_result(*verdict)
        return self._send_sdata()

    async def _solicit(self):
        if self._queue:
            # requests that would go unanswered; what the IMVs queue while
            # deciding (assessment results for their collectors) still goes out
            log.info("dropping {n} queued PB-PA message(s) on Connection ID {cid}",
                     n=len(self._queue), cid=self.connection_id)
            self._queue.clear()
        for c in self._imv_conns:
            if not c.verdict.provided:
                await self._call(c.imv_id, "solicit_recommendation")
        for c in self._imv_conns:
            if not c.verdict.provided:
                log.warn("IMV {imv_id} gave no recommendation; counting it as "
                         "'no recommendation'", imv_id=c.imv_id)
                c.provide_recommendation(A.NO_RECOMMENDATION, E.DONT_KNOW)
                c.verdict.forced = True
        if not self._imv_conns:
            log.info("there are no IMVs to make a recommendation")
        return combine(self.core.policy, [c.verdict for c in self._imv_conns])

    def _send_sdata(self) -> BatchOutcome:
        if not self._queue:
            log.debug("no recommendation available yet, sending empty PB-TNC SDATA batch")
        messages = self._take_fitting(self._queue, reserve=0)
        self._sent_pa_last = any(isinstance(m, PbPa) for m in messages)
        return BatchOutcome(batches=[self._build(B.SDATA, messages)])

    def _send_result(self, rec: A, ev: E) -> BatchOutcome:
        pb_rec, state, access = _PB_ACCESS[rec]
        result_msgs = [PbAssessmentResult(result=AssessmentResult(int(ev))),
                       PbAccessRecommendation(recommendation=pb_rec)]
        reasons = []
        remediation = []
        for c in self._imv_conns:
            v = c.verdict
            if v.reason:
                reasons.append((v.reason, v.reason_language))
                result_msgs.append(PbReasonString(reason=v.reason, language=v.reason_language))
            for r in v.remediation:
                remediation.append(r)
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
        self.decision = Decision(recommendation=rec, evaluation=ev, access=access,
                                 reasons=tuple(reasons), remediation=tuple(remediation),
                                 imv_results=tuple(c.verdict for c in self._imv_conns))
        log.info("final recommendation is '{rec}' and evaluation is '{ev}' for Connection ID {cid} "
                 "({peer})", rec=rec.label, ev=ev.label, cid=self.connection_id,
                 peer=self.peer.identity or self.peer.address)
        out = BatchOutcome(batches=[self._build(B.RESULT, pending_pa + result_msgs)],
                           decision=self.decision)
        self._record_decision(self.decision)
        for c in self._imv_conns:
            self._call_sync(c.imv_id, "notify_connection_change", state)
        return out

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
        log.info("sending PB-TNC {type} batch ({size} bytes) for Connection ID {cid}",
                 type=btype.name, size=len(data), cid=self.connection_id)
        self._transition(nxt)
        return data

    async def _send_close(self, error: PbError | None) -> BatchOutcome:
        messages = (error,) if error is not None else ()
        data = PbBatch(batch_type=B.CLOSE, direction=Direction.TO_CLIENT, messages=messages).build()
        log.info("sending PB-TNC CLOSE batch ({size} bytes) for Connection ID {cid}",
                 size=len(data), cid=self.connection_id)
        self._transition(S.END)
        self._end()
        return BatchOutcome(batches=[data], close=True, decision=self.decision)

    def _transition(self, new: PbState) -> None:
        if new is not self.state:
            log.debug("PB-TNC state transition from '{old}' to '{new}'",
                      old=self.state.value, new=new.value)
            self.state = new

    def _end(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.state = S.END
        if self._started:
            for c in self._imv_conns:
                self._call_sync(c.imv_id, "notify_connection_change", ConnectionState.DELETE)
        self.core.connection_closed(self.connection_id)

    # -- recording sessions -------------------------------------------------------------

    def _record_start(self) -> None:
        store = self.core.store
        self._session = None
        if store is None:
            return
        d = defer.maybeDeferred(store.session_started, self.peer, self.connection_id)
        d.addErrback(lambda f: log.failure("recording the start of Connection ID {cid} failed",
                                           f, cid=self.connection_id))
        self._session = d

    def session_id(self) -> defer.Deferred:
        """Fires with the store's session id for this connection (or None)."""
        if self._session is None:
            return defer.succeed(None)
        d = defer.Deferred()

        def share(session_id):
            d.callback(session_id)
            return session_id

        self._session.addCallback(share)
        return d

    def _record_decision(self, decision: Decision) -> None:
        store = self.core.store
        if store is None or self._session is None:
            return

        def record(session_id):
            if session_id is not None:
                d = defer.maybeDeferred(store.session_decided, session_id, decision)
                d.addErrback(lambda f: log.failure(
                    "recording the decision of Connection ID {cid} failed", f,
                    cid=self.connection_id))
            return session_id

        self._session.addCallback(record)

    # -- calling IMVs -------------------------------------------------------------------

    async def _notify_all(self, state: ConnectionState) -> None:
        for c in self._imv_conns:
            await self._call(c.imv_id, "notify_connection_change", state)

    async def _each_imv(self, method: str) -> None:
        for c in self._imv_conns:
            await self._call(c.imv_id, method)

    async def _call(self, imv_id: int, method: str, *args) -> None:
        conn = self._by_id[imv_id]
        imv = self.core.imvs.get(imv_id)
        try:
            await _maybe(getattr(imv, method)(conn, *args))
        except Exception:
            self._imv_failed(conn, method, Failure())

    def _call_sync(self, imv_id: int, method: str, *args) -> None:
        """Fire-and-forget notification (state changes after the decision)."""
        conn = self._by_id[imv_id]
        imv = self.core.imvs.get(imv_id)
        try:
            _maybe(getattr(imv, method)(conn, *args)).addErrback(
                lambda f: self._imv_failed(conn, method, f))
        except Exception:
            self._imv_failed(conn, method, Failure())

    def _imv_failed(self, conn: ImvConnection, method: str, failure: Failure) -> None:
        log.failure("IMV {imv_id} failed in {method} on Connection ID {cid}; "
                    "its verdict is 'no access'", failure,
                    imv_id=conn.imv_id, method=method, cid=self.connection_id)
        if not conn.verdict.provided:
            conn.provide_recommendation(A.NO_ACCESS, E.ERROR)
