"""What every TNCS-side connection shares, whatever TNCCS protocol it speaks.

PB-TNC (RFC 5793) and IF-TNCCS 1.1 (TCG XML) differ only in how batches
look on the wire.  Behind the codec they do the same work, which lives here
once: the IMVs' handle on the connection (IF-IMV's TNC_TNCS_* back-calls),
PA message dispatch with PA-TNC error replies, bounded rounds that end in
solicited recommendations, the combined :class:`~nac.tnccs.assessment.Decision`,
recording in the policy store, and the serialisation of batches handed in
while an earlier one is still being processed.

Sans-IO: the only asynchrony is the IMVs' (their methods may return
Deferreds); no reactor, socket or clock is used here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from twisted.internet import defer
from twisted.python.failure import Failure

from nac.db.outage import log_store_failure
from nac.ifimv import ActionRecommendation, ConnectionState, EvaluationResult
from nac import metrics
from nac.log import Logger
from nac.pa import PaMessage, PaTncError, pa_error_reply
from nac.tnccs.assessment import BatchOutcome, Decision, Endpoint, GroupEnforcement
from nac.tnccs.imv_manager import ImvConnection, OutgoingPaMessage, ReceivedPaMessage
from nac.tnccs.recommendations import combine

log = Logger(namespace="nac.tnccs")

# an endpoint policy still being looked up
_PENDING = object()

A = ActionRecommendation
E = EvaluationResult

ACCESS: dict[ActionRecommendation, tuple[ConnectionState, str]] = {
    A.ALLOW: (ConnectionState.ACCESS_ALLOWED, "allowed"),
    A.ISOLATE: (ConnectionState.ACCESS_ISOLATED, "isolate"),
    A.NO_ACCESS: (ConnectionState.ACCESS_NONE, "denied"),
    # nobody vouches for the endpoint: deny, as strongSwan does
    A.NO_RECOMMENDATION: (ConnectionState.ACCESS_NONE, "denied"),
}
"""The IMVs' new connection state and the enforced access for each final
recommendation."""


def maybe_deferred(result) -> defer.Deferred:
    """Await-able view of an IMV method result (a value or a Deferred)."""
    if isinstance(result, defer.Deferred):
        return result
    return defer.succeed(result)


class TnccsServerConnection:
    """Base of the TNCS side of one TNCCS connection.

    Subclasses implement :meth:`_process` (one received batch in, a
    :class:`~nac.tnccs.assessment.BatchOutcome` out) and :meth:`_wrap_pa` (an IMV's
    outgoing PA message as the protocol's message object, kept in
    ``self._queue`` until a batch takes it).  They provide the
    :class:`nac.interfaces.ITnccsConnection` contract through this class.
    """

    PROTOCOL: ClassVar[str] = "TNCCS"
    """Protocol name for log lines."""
    PA_MESSAGE: ClassVar[str] = "PA"
    """What the protocol calls a message carrying PA-TNC, for log lines."""

    def __init__(self, core, connection_id: int, peer, limits):
        self.core = core
        self.connection_id = connection_id
        self.peer = peer
        self.limits = limits
        self.preferred_language = ""
        self.decision: Decision | None = None
        self.finished = False
        self.rounds = 0
        self._imv_conns = [ImvConnection(self, loaded.imv_id, loaded.name) for loaded in core.imvs]
        self._by_id = {c.imv_id: c for c in self._imv_conns}
        self._queue: list[Any] = []
        self._sent_pa_last = False
        self._retry_requested = False
        self._started = False
        self._session: defer.Deferred | None = None
        self._recording: defer.Deferred | None = None
        self._tail: defer.Deferred = defer.succeed(None)
        budget = getattr(core, "reassembly_budget", None)
        #: what the IMVs' unfinished segmented attributes may hold (nac.pa.segmentation)
        self.reassembly = budget() if budget is not None else None
        self._device: tuple[str | None, str | None] = (None, None)
        #: [endpoint key, its policy or the Failure of the lookup once known, the Deferreds waiting for it]
        self._policy: list | None = None
        self._enforcement: GroupEnforcement | None = None

    # -- protocol hooks -------------------------------------------------------------

    async def _process(self, data: bytes) -> BatchOutcome:
        raise NotImplementedError

    def _wrap_pa(self, msg: OutgoingPaMessage):
        """The protocol message carrying ``msg``, or None when it cannot be sent."""
        raise NotImplementedError

    ACKNOWLEDGEMENTS: ClassVar[bool] = False
    """Whether the endpoint may acknowledge a batch without one of its own
    (then :meth:`_acknowledged` answers it)."""

    async def _acknowledged(self) -> BatchOutcome:
        raise NotImplementedError

    # -- IImvConnection back-calls --------------------------------------------------

    def queue_pa_message(self, msg: OutgoingPaMessage) -> None:
        if len(msg.body) > self.limits.max_message_size:
            log.error("IMV {imv_id} message of {size} bytes exceeds the {limit}-byte PA message "
                      "limit of Connection ID {cid}; dropped",
                      imv_id=msg.validator_id, size=len(msg.body),
                      limit=self.limits.max_message_size, cid=self.connection_id)
            return
        wrapped = self._wrap_pa(msg)
        if wrapped is not None:
            self._queue.append(wrapped)

    def request_handshake_retry(self, imv_id: int, reason) -> None:
        log.info("IMV {imv_id} requests a handshake retry on Connection ID {cid}: {reason}",
                 imv_id=imv_id, cid=self.connection_id, reason=reason)
        self._retry_requested = True

    def identify_device(self, device_id: str, product: str | None = None) -> None:
        if (device_id, product) != self._device:
            self._device = (device_id, product)
            log.debug("Connection ID {cid} is device '{device}' ({product})", cid=self.connection_id,
                      device=device_id, product=product or "product unknown")

    def endpoint_policy(self) -> defer.Deferred:
        """The group policy of the endpoint as known now (see
        IImvConnection.endpoint_policy); looked up once per device known."""
        source = getattr(self.core, "policy_source", None)
        if source is None:
            return defer.succeed(None)
        key = (self.peer.identity, *self._device)
        if self._policy is None or self._policy[0] != key:
            entry = self._policy = [key, _PENDING, []]

            def known(result, entry=entry):
                # each waiting caller gets the result (a failure, too: theirs to handle), and
                # later callers get it from the entry; no Deferred is left holding a failure
                entry[1] = result
                waiting, entry[2] = entry[2], []
                for d in waiting:
                    d.callback(result)

            defer.maybeDeferred(source.resolve, Endpoint(*key)).addBoth(known)
        entry = self._policy
        d = defer.Deferred()
        if entry[1] is _PENDING:
            entry[2].append(d)
        else:
            d.callback(entry[1])
        return d

    # -- ITnccsConnection -------------------------------------------------------------

    def receive_batch(self, data: bytes) -> defer.Deferred:
        data = bytes(data)
        return self._in_turn(lambda: self._process(data))

    def receive_acknowledgement(self) -> defer.Deferred | None:
        return self._in_turn(self._acknowledged) if self.ACKNOWLEDGEMENTS else None

    def _in_turn(self, work) -> defer.Deferred:
        """``work()`` (a coroutine) once everything the endpoint sent before
        has been processed; a Deferred of its result, which holds a decision
        reached meanwhile until the store recorded it (or its bounded wait
        passed: :meth:`_record_decision`)."""
        d = defer.Deferred()

        async def turn():
            outcome = await work()
            recording, self._recording = self._recording, None
            if recording is not None:
                await recording
            return outcome

        def run(_):
            inner = defer.ensureDeferred(turn())
            inner.chainDeferred(d)
            return inner.addErrback(lambda _f: None)

        self._tail.addCallback(run)
        return d

    def abort(self, reason: str) -> None:
        if self.finished:
            return
        log.info("Connection ID {cid} aborted: {reason}", cid=self.connection_id, reason=reason)
        if self.decision is None:
            self._record_abort(reason)
        self._end()

    # -- the assessment -----------------------------------------------------------------

    async def _begin(self) -> None:
        """Open the assessment on the first batch: record it, tell the IMVs."""
        if self._started:
            return
        self._started = True
        metrics.assessment_started(self.connection_id)
        self._record_start()
        await self._notify_all(ConnectionState.CREATE)
        await self._notify_all(ConnectionState.HANDSHAKE)

    async def _deliver_pa(self, *, vendor_id: int, subtype: int, collector_id: int,
                          validator_id: int, exclusive: bool, body: bytes) -> None:
        """Parse one PA-TNC message once and hand it to every subscribed IMV;
        a malformed one is answered with a PA-TNC Error attribute instead."""
        recipients = self.core.imvs.recipients(vendor_id, subtype, exclusive, validator_id)
        if not recipients:
            log.debug("message type 0x{vendor:06x}/0x{subtype:08x} not supported by any IMV",
                      vendor=vendor_id, subtype=subtype)
            return
        first = recipients[0].imv_id
        reply = dict(vendor_id=vendor_id, subtype=subtype, collector_id=collector_id, imv_id=first)
        try:
            pa = PaMessage.parse(body)
        except PaTncError as err:
            log.warn("invalid PA-TNC message from collector {imc} on Connection ID {cid}: {err}",
                     imc=collector_id, cid=self.connection_id, err=str(err),
                     log_limit=("invalid PA-TNC message", self.peer.address))
            self._queue_pa_error(body=pa_error_reply(err), **reply)
            return
        unsupported = pa.unsupported_noskip()
        if unsupported:
            log.warn("PA-TNC message from collector {imc} has an unsupported attribute "
                     "0x{vendor:06x}/0x{type:08x} with NOSKIP flag",
                     imc=collector_id, vendor=unsupported[0].vendor, type=unsupported[0].type,
                     log_limit=("unsupported PA-TNC attribute", self.peer.address))
            self._queue_pa_error(body=pa_error_reply(pa, unsupported=unsupported, raw=body), **reply)
            return
        received = ReceivedPaMessage(vendor_id=vendor_id, subtype=subtype, collector_id=collector_id,
                                     validator_id=validator_id, exclusive=exclusive, body=body, pa=pa)
        for loaded in recipients:
            await self._call(loaded.imv_id, "receive_message", received)

    def _queue_pa_error(self, *, vendor_id: int, subtype: int, collector_id: int, imv_id: int,
                        body: bytes) -> None:
        self.queue_pa_message(OutgoingPaMessage(
            vendor_id=vendor_id, subtype=subtype, collector_id=collector_id,
            validator_id=imv_id, exclusive=True, body=body))

    async def _round_verdict(self, *, pa_received: bool, idle: bool):
        """Count one round and return the final (recommendation, evaluation),
        or None while the IMVs are still at work.

        Every exchange ends within a bounded number of rounds: when the
        endpoint's collectors go silent (a client batch without PA messages
        after the IMVs asked for something), when ``idle`` (the protocol has
        nothing to send), or after ``core.max_rounds`` rounds, the IMVs are
        solicited, and an IMV that still gives none counts as "no
        recommendation".
        """
        self.rounds += 1
        verdict = self._combined()
        if verdict is not None:
            return await self._ready(verdict)
        if self.rounds > self.core.max_rounds:
            log.warn("no decision after {n} rounds on Connection ID {cid}; "
                     "soliciting recommendations", n=self.core.max_rounds, cid=self.connection_id)
            return await self._solicit()
        if self._sent_pa_last and not pa_received:
            # The IMVs asked and the endpoint answered with no PA message:
            # it has no collector for them, asking again cannot help.
            log.info("collectors sent no PA message in reply on Connection ID {cid}; "
                     "soliciting recommendations", cid=self.connection_id)
            return await self._solicit()
        if idle:
            return await self._solicit()
        return None

    def _combined(self):
        return combine(self.core.policy, [c.verdict for c in self._imv_conns])

    async def _solicit(self):
        if self._queue:
            # requests that would go unanswered; what the IMVs queue while
            # deciding (assessment results for their collectors) still goes out
            log.info("dropping {n} queued {kind} message(s) on Connection ID {cid}",
                     n=len(self._queue), kind=self.PA_MESSAGE, cid=self.connection_id)
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
        return await self._ready(self._combined())

    async def _ready(self, verdict):
        """``verdict`` once the group policy's enforcement values for the
        decision are known (with a policy source)."""
        if verdict is not None and getattr(self.core, "policy_source", None) is not None:
            try:
                policy = await self.endpoint_policy()
            except Exception:
                log_store_failure(log, Failure(), "the group policy of Connection ID {cid} could not be read; the "
                                  "transports enforce their configuration", cid=self.connection_id)
            else:
                self._enforcement = getattr(policy, "enforcement", None)
        return verdict

    def _conclude(self, rec: ActionRecommendation, ev: EvaluationResult) -> Decision:
        """Fix the decision: record it and tell the IMVs their new state."""
        verdicts = [c.verdict for c in self._imv_conns]
        state, access = ACCESS[rec]
        self.decision = Decision(
            recommendation=rec, evaluation=ev, access=access,
            reasons=tuple((v.reason, v.reason_language) for v in verdicts if v.reason),
            remediation=tuple(r for v in verdicts for r in v.remediation),
            imv_results=tuple(verdicts), enforcement=self._enforcement)
        log.info("final recommendation is '{rec}' and evaluation is '{ev}' for Connection ID {cid} "
                 "({peer})", rec=rec.label, ev=ev.label, cid=self.connection_id,
                 peer=self.peer.identity or self.peer.address)
        self._record_decision(self.decision)
        metrics.assessment_decided(self.connection_id, self.peer.transport, self.decision)
        for c in self._imv_conns:
            self._call_sync(c.imv_id, "notify_connection_change", state)
        return self.decision

    def _end(self) -> None:
        if self.finished:
            return
        self.finished = True
        metrics.assessment_ended(self.connection_id)
        if self._started:
            for c in self._imv_conns:
                self._call_sync(c.imv_id, "notify_connection_change", ConnectionState.DELETE)
        if self.reassembly is not None:
            self.reassembly.close()
        self.core.connection_closed(self.connection_id)

    # -- recording sessions -------------------------------------------------------------

    def _record_start(self) -> None:
        store = self.core.store
        self._session = None
        if store is None:
            return
        d = defer.maybeDeferred(store.session_started, self.peer, self.connection_id)
        d.addErrback(lambda f: log_store_failure(log, f, "recording the start of Connection ID {cid} failed",
                                                 cid=self.connection_id))
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
        """Record the decision once the session has its id.  The endpoint
        hears the decision once it is committed, or once the store's bounded
        wait passed (``[nac] db_wait``, the store's ``bounded_wait``):
        while the database works, no endpoint learns a decision the
        database lacks, whatever happens to this process next; while it
        does not, the decision is not held up for long and its record waits
        in the store's queue."""
        store = self.core.store
        if store is None or self._session is None:
            return
        recorded = defer.Deferred()

        def record(session_id):
            if session_id is None:
                recorded.callback(None)  # nothing is recorded of this session
                return session_id
            d = defer.maybeDeferred(store.session_decided, session_id, decision)
            d.addErrback(lambda f: log_store_failure(log, f, "recording the decision of Connection ID {cid} "
                                                     "failed", cid=self.connection_id))
            d.addBoth(lambda _: recorded.callback(None))
            return session_id

        self._session.addCallback(record)
        wait = getattr(store, "bounded_wait", None)
        if wait is not None:
            self._recording = wait(recorded)

    def _record_abort(self, reason: str) -> None:
        """A session that ends without a decision ends as aborted in the store."""
        store = self.core.store
        aborted = getattr(store, "session_aborted", None)
        if aborted is None or self._session is None:
            return

        def record(session_id):
            if session_id is not None:
                d = defer.maybeDeferred(aborted, session_id, reason[:1000])
                d.addErrback(lambda f: log_store_failure(log, f, "recording the end of Connection ID {cid} "
                                                         "failed", cid=self.connection_id))
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
            await maybe_deferred(getattr(imv, method)(conn, *args))
        except Exception:
            self._imv_failed(conn, method, Failure())

    def _call_sync(self, imv_id: int, method: str, *args) -> None:
        """Fire-and-forget notification (state changes after the decision)."""
        conn = self._by_id[imv_id]
        imv = self.core.imvs.get(imv_id)
        try:
            maybe_deferred(getattr(imv, method)(conn, *args)).addErrback(
                lambda f: self._imv_failed(conn, method, f))
        except Exception:
            self._imv_failed(conn, method, Failure())

    def _imv_failed(self, conn: ImvConnection, method: str, failure: Failure) -> None:
        log.failure("IMV {imv_id} failed in {method} on Connection ID {cid}; "
                    "its verdict is 'no access'", failure,
                    imv_id=conn.imv_id, method=method, cid=self.connection_id)
        if not conn.verdict.provided:
            conn.provide_recommendation(A.NO_ACCESS, E.ERROR)
