"""The PB-TNC client side of one TNCCS connection (RFC 5793 §3.2), sans-IO.

:meth:`PbTncClient.start` gives the first CDATA batch; every batch from the
server goes to :meth:`PbTncClient.receive_batch`, which says what to send
next.  Half duplex, like strongSwan's client: after a server batch the
client always answers (a CDATA batch, empty when the collectors have nothing
to say, or CLOSE after the RESULT) until the connection ends.

The IMCs are called synchronously.  What the client learns on the way (the
result, reason strings, remediation, what each IMV told its IMC, or why it
failed) accumulates in :attr:`PbTncClient.outcome`.

For mutual PB-TNC (strongSwan's ITA-HSR PB-Mutual-Capability) the client
can announce it in its first batch (``mutual``), and it can play the client
role of the second exchange (``responder``), whose server speaks first: its
first batch from the server is an SDATA received in Init.  Routing the two
exchanges over one connection is :mod:`nac.tnccs.mutual`'s and
:mod:`nac.client.mutual`'s work.
"""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass
from typing import Any

from nac.log import Logger
from zope.interface import implementer
from zope.interface.verify import verifyObject

from nac.client.remediation import parse_instructions
from nac.client.imc import (
    IImc,
    ImcConnection,
    ImvAssessment,
    ReceivedPaMessage,
    refuse_message,
)
from nac.ifimv import ANY_SUBTYPE, ANY_SUBTYPE_LONG, ANY_VENDOR, ConnectionState, EvaluationResult
from nac.interfaces import IPbTncClientRole
from nac.pa import PaMessage, PaTncError
from nac.pa.ietf import AssessmentResult as AssessmentResultAttribute
from nac.pa.ietf import RemediationInstructions
from nac.pb.batch import BATCH_HEADER_SIZE, BatchType, Direction, PbBatch
from nac.pb.messages import (
    AccessRecommendation,
    AssessmentResult,
    ItaMutualCapability,
    MutualProtocol,
    PbAccessRecommendation,
    PbAssessmentResult,
    PbError,
    PbLanguagePreference,
    PbMessage,
    PbPa,
    PbReasonString,
    PbRemediationParameters,
    PbTncError,
    RemediationParametersType,
)
from nac.tnccs.pb_server import _RECEIVE as _SERVER_RECEIVE
from nac.tnccs.pb_server import _SEND as _SERVER_SEND
from nac.tnccs.pb_server import PbState

__all__ = [
    "AssessmentOutcome",
    "ClientStep",
    "DEFAULT_MAX_ROUNDS",
    "PbState",
    "PbTncClient",
    "Reason",
    "Remediation",
]

log = Logger(namespace="nac.client.pb")

S = PbState
B = BatchType

# RFC 5793 §3.2 has one state machine for both ends: what a server sends, a
# client receives, and the other way round.
_RECEIVE = _SERVER_SEND
_SEND = _SERVER_RECEIVE

#: Server batches without a result after which the client gives up.
DEFAULT_MAX_ROUNDS = 100

_RECOMMENDATION_LABELS = {
    AccessRecommendation.ALLOWED: "Access Allowed",
    AccessRecommendation.DENIED: "Access Denied",
    AccessRecommendation.QUARANTINED: "Quarantined",
}

_ACCESS_STATES = {
    AccessRecommendation.ALLOWED: ConnectionState.ACCESS_ALLOWED,
    AccessRecommendation.QUARANTINED: ConnectionState.ACCESS_ISOLATED,
    AccessRecommendation.DENIED: ConnectionState.ACCESS_NONE,
}


def _evaluation_label(value: int) -> str:
    try:
        return EvaluationResult(value).label
    except ValueError:
        return f"unknown ({value})"


@dataclass(frozen=True, slots=True)
class Reason:
    """A PB-Reason-String (RFC 5793 §4.10)."""

    text: str
    language: str = ""


@dataclass(frozen=True, slots=True)
class Remediation:
    """PB-Remediation-Parameters (RFC 5793 §4.8): a URI or a string, or the
    raw parameters of a type nac does not know."""

    uri: str | None = None
    text: str | None = None
    language: str = ""
    vendor: int = 0
    type: int = 0
    parameters: bytes = b""

    def to_json(self) -> dict[str, Any]:
        """``uri``; or ``text`` and ``language``, with ``instructions``
        (title, description, items_header, items) when the text is
        instructions in strongSwan's XML; or the raw parameters."""
        if self.uri is not None:
            return {"uri": self.uri}
        if self.text is not None:
            out: dict[str, Any] = {"text": self.text, "language": self.language}
            instructions = parse_instructions(self.text)
            if instructions is not None:
                out["instructions"] = [i.to_json() for i in instructions]
            return out
        return {"vendor": self.vendor, "type": self.type, "parameters": self.parameters.hex()}


@dataclass(frozen=True, slots=True)
class AssessmentOutcome:
    """What one PB-TNC exchange ended with, seen from the endpoint.

    ``recommendation`` and ``assessment`` are set once a RESULT batch
    arrived (``completed``); ``error`` says why the exchange failed
    otherwise (or what went wrong after the result).
    """

    recommendation: AccessRecommendation | None = None
    assessment: AssessmentResult | None = None
    reasons: tuple[Reason, ...] = ()
    remediation: tuple[Remediation, ...] = ()
    imv_results: tuple[ImvAssessment, ...] = ()
    error: str | None = None
    mutual: Any = None
    """With mutual PB-TNC asked for, the verdict of this side's IMVs on
    the server (a :class:`nac.client.mutual.MutualVerdict`); else None."""

    @property
    def completed(self) -> bool:
        return self.recommendation is not None

    @property
    def recommendation_label(self) -> str | None:
        """strongSwan's wording: 'Access Allowed', 'Access Denied', 'Quarantined'."""
        return None if self.recommendation is None else _RECOMMENDATION_LABELS[self.recommendation]

    @property
    def assessment_label(self) -> str | None:
        return None if self.assessment is None else _evaluation_label(self.assessment)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the keys ``nac-pt-tls-client --json`` prints),
        with the words the text output uses: ``recommendation`` is the PB-TNC
        Access Recommendation's name (RFC 5793 §4.7: 'Access Allowed',
        'Access Denied', 'Quarantined'), ``assessment`` the Assessment
        Result's (RFC 5793 §4.6, RFC 5792 §4.2.9: 'compliant', 'non-compliant minor',
        'non-compliant major', 'error', "don't know"); None without a
        result."""
        out: dict[str, Any] = {
            "recommendation": self.recommendation_label,
            "assessment": self.assessment_label,
            "reasons": [{"text": r.text, "language": r.language} for r in self.reasons],
            "remediation": [r.to_json() for r in self.remediation],
            "imv_results": [
                {"imc_id": a.imc_id, "imc": a.imc_name, "imv_id": a.imv_id,
                 "assessment": a.result_label, "remediation": list(a.remediation)}
                for a in self.imv_results
            ],
        }
        if self.error is not None:
            out["error"] = self.error
        if self.mutual is not None:
            out["mutual"] = self.mutual.to_json()
        return out


@dataclass(frozen=True, slots=True)
class ClientStep:
    """What to do after a server batch: send ``batch`` (if any); when
    ``close`` is set the PB-TNC connection is over and the transport may be
    closed once ``batch`` is out; ``outcome`` is then final."""

    batch: bytes | None = None
    close: bool = False
    outcome: AssessmentOutcome | None = None
    decided: bool = False
    """A RESULT arrived and the client stays (``stay``): ``outcome`` is
    this assessment's, nothing is sent, and the connection stays open for
    the server's SRETRY (or :meth:`PbTncClient.close`)."""

    @property
    def answers_result(self) -> bool:
        """Whether this is the client's CLOSE answering the server's RESULT
        (the exchange ended in a result, not in an error or the server's
        CLOSE): in mutual PB-TNC that ends this exchange only."""
        return (self.close and self.batch is not None and self.outcome is not None
                and self.outcome.completed and self.outcome.error is None)


@dataclass(slots=True)
class _Loaded:
    imc_id: int
    imc: Any
    connection: ImcConnection
    subscriptions: tuple[tuple[int, int], ...]

    def subscribed(self, vendor: int, subtype: int) -> bool:
        return any(v in (vendor, ANY_VENDOR) and s in (subtype, ANY_SUBTYPE, ANY_SUBTYPE_LONG)
                   for v, s in self.subscriptions)


_connection_ids = itertools.count(1)


# IMCs shared by many clients (a load generator's) are checked once.
_CHECKED_IMCS: weakref.WeakSet = weakref.WeakSet()


def _verify_imc(imc) -> None:
    try:
        if imc in _CHECKED_IMCS:
            return
    except TypeError:  # unhashable: checked every time
        pass
    verifyObject(IImc, imc)
    try:
        _CHECKED_IMCS.add(imc)
    except TypeError:  # no weak references to it, or unhashable
        pass


@implementer(IPbTncClientRole)
class PbTncClient:
    """One PB-TNC (IF-TNCCS 2.0) connection, client role.

    ``imcs`` are IImc providers, numbered from 1 in order.
    ``max_batch_size`` bounds the batches both ways (what the transport
    carries); ``max_message_size`` the PA-TNC messages the IMCs may send.
    ``mutual``: announce mutual PB-TNC (half duplex) in the first batch;
    :attr:`peer_mutual` says whether the server announced it too.
    ``responder``: the server speaks first (the second exchange of mutual
    PB-TNC): no :meth:`start`, the first server batch is an SDATA, and
    the first CDATA carries the Language-Preference.
    ``stay``: after a RESULT the client stays in the Decided state instead
    of sending CLOSE, so that the server can assess it again (an SRETRY,
    RFC 5793 §3.2, answered with fresh measurements) until it closes or
    :meth:`close` is called.
    """

    def __init__(self, imcs, *, max_batch_size: int, max_message_size: int, language: str = "en",
                 max_rounds: int = DEFAULT_MAX_ROUNDS, connection_id: int | None = None,
                 mutual: bool = False, responder: bool = False, stay: bool = False):
        self.stay = stay
        self.mutual = mutual
        self.responder = responder
        self.peer_mutual = False
        """Whether the server announced mutual PB-TNC (half duplex)."""
        self.max_batch_size = max_batch_size
        self.max_message_size = max_message_size
        self.language = language
        self.max_rounds = max_rounds
        self.connection_id = next(_connection_ids) if connection_id is None else connection_id
        self.state = S.INIT
        self.rounds = 0
        self.finished = False
        self._imcs: list[_Loaded] = []
        for imc in imcs:
            _verify_imc(imc)
            imc_id = len(self._imcs) + 1
            self._imcs.append(_Loaded(imc_id, imc, ImcConnection(self, imc_id, imc.name),
                                      tuple((int(v), int(s)) for v, s in imc.subscriptions)))
        self._queue: list[PbMessage] = []
        self._result: dict[str, Any] = {}
        self._reasons: list[Reason] = []
        self._remediation: list[Remediation] = []
        self._imv_results: list[ImvAssessment] = []
        self._error: str | None = None
        self._opened = False

    # -- results --------------------------------------------------------------------

    @property
    def outcome(self) -> AssessmentOutcome:
        return AssessmentOutcome(
            recommendation=self._result.get("recommendation"),
            assessment=self._result.get("assessment"),
            reasons=tuple(self._reasons),
            remediation=tuple(self._remediation),
            imv_results=tuple(self._imv_results),
            error=self._error,
        )

    @property
    def imc_connections(self) -> tuple[ImcConnection, ...]:
        return tuple(loaded.connection for loaded in self._imcs)

    # -- IImcConnection back-call ---------------------------------------------------

    def queue_pa_message(self, *, vendor_id: int, subtype: int, collector_id: int, validator_id: int,
                         exclusive: bool, body: bytes) -> None:
        if self.finished:
            return
        if len(body) > self.max_message_size:
            log.error("IMC {imc} message of {size} bytes exceeds the {limit}-byte PA message limit of "
                      "Connection ID {cid}; dropped", imc=collector_id, size=len(body),
                      limit=self.max_message_size, cid=self.connection_id)
            return
        self._queue.append(PbPa(pa_vendor=vendor_id, pa_subtype=subtype, collector_id=collector_id,
                                validator_id=validator_id, body=body, exclusive=exclusive, noskip=True))

    # -- the exchange ------------------------------------------------------------------

    def start(self) -> bytes:
        """The first CDATA batch: Language-Preference and the IMCs' first measurements."""
        if self.state is not S.INIT or self.finished:
            raise RuntimeError("the PB-TNC client has already started")
        if self.responder:
            raise RuntimeError("a responding PB-TNC client waits for the server's first batch")
        self._open()
        first: list[PbMessage] = []
        if self.mutual:
            log.debug("proposing PB-TNC mutual half duplex protocol")
            first.append(ItaMutualCapability(MutualProtocol.HALF_DUPLEX))
        return self._build(B.CDATA, first + self._language_preference())

    def _open(self) -> None:
        self._opened = True
        log.info("assigned TNCCS Connection ID {cid}", cid=self.connection_id)
        for loaded in self._imcs:
            self._call(loaded, "notify_connection_change", ConnectionState.CREATE)
        self._handshake()

    def _language_preference(self) -> list[PbMessage]:
        return [PbLanguagePreference(language=self.language)] if self.language else []

    def receive_batch(self, data: bytes) -> ClientStep:
        """Process one whole batch from the server; says what to send next."""
        if self.finished:
            return ClientStep(close=True, outcome=self.outcome)
        try:
            batch = PbBatch.parse(bytes(data), max_size=self.max_batch_size,
                                  expect_direction=Direction.TO_CLIENT)
            log.info("processing PB-TNC {type} batch for Connection ID {cid}",
                     type=batch.batch_type.name, cid=self.connection_id)
            nxt = _RECEIVE[self.state].get(batch.batch_type)
            if self.state is S.INIT and not self.responder:
                nxt = None  # only a responder's server speaks first
            if nxt is None:
                raise PbTncError.unexpected_batch_type(
                    f"{batch.batch_type.name} batch in state '{self.state.value}'")
            unsupported = batch.unsupported_noskip_error()
            if unsupported is not None:
                raise unsupported
            misplaced = batch.misplaced_result_messages()
            if misplaced:
                offset, msg = misplaced[0]
                raise PbTncError.invalid_parameter(offset, f"{msg.NAME} outside a RESULT batch")
        except PbTncError as err:
            log.warn("invalid PB-TNC batch from the server on Connection ID {cid}: {err}",
                     cid=self.connection_id, err=str(err))
            return self._close(err.to_message(), f"invalid PB-TNC batch from the server: {err}")
        self._transition(nxt)
        first: list[PbMessage] = []
        if not self._opened and batch.batch_type is B.SDATA:
            # a responder's handshake begins with the server's first batch
            self._open()
            first = self._language_preference()

        server_error = self._handle_messages(batch)

        if batch.batch_type is B.CLOSE:
            if not self._result and self._error is None:
                self._error = server_error or "the server closed the PB-TNC connection without a result"
            self._end()
            return ClientStep(close=True, outcome=self.outcome)
        if server_error is not None:
            # a fatal PB-Error ends the connection whatever batch carried it
            self._error = server_error
            return self._close(None, server_error)
        if batch.batch_type is B.RESULT:
            return self._decided()
        if batch.batch_type is B.SRETRY:
            log.info("server requests a handshake retry on Connection ID {cid}", cid=self.connection_id)
            self._result.clear()
            self._reasons.clear()
            self._remediation.clear()
            self._imv_results.clear()
            self.rounds = 0
            self._handshake()
            return ClientStep(batch=self._build(B.CDATA, []))
        # SDATA
        self.rounds += 1
        if self.rounds >= self.max_rounds:
            reason = f"no result after {self.rounds} server batches"
            log.warn("{reason} on Connection ID {cid}; giving up", reason=reason, cid=self.connection_id)
            return self._close(PbTncError.local_error(reason).to_message(), reason)
        for loaded in self._imcs:
            self._call(loaded, "batch_ending")
        if not self._queue and not first:
            log.debug("no PA messages from the IMCs, sending empty PB-TNC CDATA batch")
        return ClientStep(batch=self._build(B.CDATA, first))

    def abort(self, reason: str) -> AssessmentOutcome:
        """The transport went away or timed out: end without another batch."""
        if not self.finished:
            if self._error is None and not self._result:
                self._error = reason
            self._end()
        return self.outcome

    # -- messages -----------------------------------------------------------------------

    def _handle_messages(self, batch: PbBatch) -> str | None:
        """Dispatch the messages of a server batch; returns a fatal server error, if any."""
        fatal = None
        for msg in batch.messages:
            if isinstance(msg, PbPa):
                self._deliver_pa(msg)
            elif isinstance(msg, PbAssessmentResult):
                self._result["assessment"] = msg.result
                log.info("PB-TNC assessment result is '{r}'", r=_evaluation_label(msg.result))
            elif isinstance(msg, PbAccessRecommendation):
                self._result["recommendation"] = msg.recommendation
                log.info("PB-TNC access recommendation is '{r}'",
                         r=_RECOMMENDATION_LABELS[msg.recommendation])
            elif isinstance(msg, PbReasonString):
                self._reasons.append(Reason(msg.reason, msg.language))
                log.info("reason string is '{r}' [{lang}]", r=msg.reason, lang=msg.language)
            elif isinstance(msg, PbRemediationParameters):
                self._remediation.append(_remediation(msg))
            elif isinstance(msg, PbError):
                text = f"PB-TNC error from the server: {msg.to_exception()}"
                log.warn("{text} (Connection ID {cid})", text=text, cid=self.connection_id)
                if msg.fatal and fatal is None:
                    fatal = text
            elif isinstance(msg, PbLanguagePreference):
                log.debug("ignoring PB-Language-Preference from the server")
            elif isinstance(msg, ItaMutualCapability):
                self._mutual_capability(msg)
        return fatal

    def _mutual_capability(self, msg: ItaMutualCapability) -> None:
        half_duplex = bool(msg.protocols & MutualProtocol.HALF_DUPLEX)
        if self.mutual and half_duplex and not self.peer_mutual:
            log.info("activating mutual PB-TNC half duplex protocol on Connection ID {cid}",
                     cid=self.connection_id)
        elif not self.mutual:
            log.debug("server supports mutual PB-TNC protocol 0x{p:08x}; not mutual here", p=msg.protocols)
        self.peer_mutual = self.peer_mutual or half_duplex

    def _deliver_pa(self, msg: PbPa) -> None:
        recipients = [loaded for loaded in self._imcs
                      if loaded.subscribed(msg.pa_vendor, msg.pa_subtype)
                      and (not msg.exclusive or loaded.imc_id == msg.collector_id)]
        if not recipients:
            log.debug("message type {name} not supported by any IMC", name=msg.subtype_name)
            return
        try:
            pa = PaMessage.parse(msg.body)
        except PaTncError as err:
            log.warn("invalid PA-TNC message from IMV {imv} on Connection ID {cid}: {err}",
                     imv=msg.validator_id, cid=self.connection_id, err=str(err))
            self._refuse(msg, recipients[0], refuse_message(err))
            return
        unsupported = pa.unsupported_noskip()
        if unsupported:
            log.warn("PA-TNC message from IMV {imv} has an unsupported attribute {name} with NOSKIP flag",
                     imv=msg.validator_id, name=unsupported[0].full_name)
            self._refuse(msg, recipients[0], refuse_message(pa, raw=msg.body))
            return
        received = ReceivedPaMessage(vendor_id=msg.pa_vendor, subtype=msg.pa_subtype,
                                     collector_id=msg.collector_id, validator_id=msg.validator_id,
                                     exclusive=msg.exclusive, body=msg.body, pa=pa)
        for loaded in recipients:
            self._record_assessment(loaded, msg.validator_id, pa)
            self._call(loaded, "receive_message", received)

    def _record_assessment(self, loaded: _Loaded, imv_id: int, pa: PaMessage) -> None:
        results = pa.find(AssessmentResultAttribute)
        if not results:
            return
        remediation = []
        for instr in pa.find(RemediationInstructions):
            if instr.uri is not None:
                remediation.append(instr.uri)
            elif instr.string is not None:
                remediation.append(instr.string)
        for attr in results:
            log.info("assessment of IMC {imc} \"{name}\" from IMV {imv}: '{result}'", imc=loaded.imc_id,
                     name=loaded.imc.name, imv=imv_id, result=_evaluation_label(attr.result))
            self._imv_results.append(ImvAssessment(loaded.imc_id, loaded.imc.name, imv_id,
                                                   int(attr.result), tuple(remediation)))

    def _refuse(self, msg: PbPa, loaded: _Loaded, body: bytes | None) -> None:
        if body is not None:
            self.queue_pa_message(vendor_id=msg.pa_vendor, subtype=msg.pa_subtype,
                                  collector_id=loaded.imc_id, validator_id=msg.validator_id,
                                  exclusive=True, body=body)

    # -- states and batches ----------------------------------------------------------------

    def _handshake(self) -> None:
        for loaded in self._imcs:
            self._call(loaded, "notify_connection_change", ConnectionState.HANDSHAKE)
        for loaded in self._imcs:
            self._call(loaded, "begin_handshake")

    def _decided(self) -> ClientStep:
        recommendation = self._result.get("recommendation")
        if recommendation is None:
            # RFC 5793 §4.7: a RESULT without PB-Access-Recommendation leaves it to the client
            log.warn("RESULT batch without PB-Access-Recommendation; taking it as Access Denied")
            self._result["recommendation"] = recommendation = AccessRecommendation.DENIED
        if "assessment" not in self._result:
            log.warn("RESULT batch without PB-Assessment-Result")
        state = _ACCESS_STATES[recommendation]
        for loaded in self._imcs:
            self._call(loaded, "notify_connection_change", state)
        # whatever the IMCs queue now would never be read
        self._queue.clear()
        if self.stay:
            log.info("staying on Connection ID {cid} for another assessment", cid=self.connection_id)
            return ClientStep(outcome=self.outcome, decided=True)
        data = self._build(B.CLOSE, [])
        self._end()
        return ClientStep(batch=data, close=True, outcome=self.outcome)

    def close(self) -> bytes:
        """The CLOSE batch ending a connection the client stayed on; the
        outcome is the last assessment's."""
        if self.finished:
            raise RuntimeError("the PB-TNC connection has already ended")
        self._queue.clear()
        data = self._build(B.CLOSE, [])
        self._end()
        return data

    def _close(self, error: PbError | None, reason: str) -> ClientStep:
        if self._error is None:
            self._error = reason
        self._queue.clear()
        data = self._build(B.CLOSE, [error] if error is not None else [])
        self._end()
        return ClientStep(batch=data, close=True, outcome=self.outcome)

    def _build(self, btype: BatchType, first: list[PbMessage]) -> bytes:
        messages = list(first)
        if btype is B.CDATA:
            messages.extend(self._take_fitting(sum(m.size for m in messages)))
        nxt = _SEND[self.state].get(btype, S.END if btype is B.CLOSE else None)
        if nxt is None:  # pragma: no cover - a bug in this module, not the peer's fault
            raise RuntimeError(f"cannot send {btype.name} in state '{self.state.value}'")
        data = PbBatch(batch_type=btype, direction=Direction.TO_SERVER, messages=tuple(messages)).build()
        log.info("sending PB-TNC {type} batch ({size} bytes) for Connection ID {cid}",
                 type=btype.name, size=len(data), cid=self.connection_id)
        self._transition(nxt)
        return data

    def _take_fitting(self, used: int) -> list[PbMessage]:
        room = self.max_batch_size - BATCH_HEADER_SIZE - used
        taken: list[PbMessage] = []
        while self._queue and self._queue[0].size <= room:
            msg = self._queue.pop(0)
            room -= msg.size
            taken.append(msg)
        if self._queue and not taken:
            dropped = self._queue.pop(0)
            log.error("PB-TNC message of {size} bytes does not fit a batch; dropped", size=dropped.size)
        if self._queue:
            log.debug("queued {n} PB-TNC message(s) for the next batch", n=len(self._queue))
        return taken

    def _transition(self, new: PbState) -> None:
        if new is not self.state:
            log.debug("PB-TNC state transition from '{old}' to '{new}'", old=self.state.value, new=new.value)
            self.state = new

    def _end(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.state = S.END
        if self._opened:  # IMCs never told of the connection hear nothing of its end
            for loaded in self._imcs:
                self._call(loaded, "notify_connection_change", ConnectionState.DELETE)

    def _call(self, loaded: _Loaded, method: str, *args) -> None:
        try:
            getattr(loaded.imc, method)(loaded.connection, *args)
        except Exception:
            # a collector's bug must not end the assessment of the others
            log.failure("IMC {imc_id} \"{name}\" failed in {method}", imc_id=loaded.imc_id,
                        name=loaded.imc.name, method=method)


def _remediation(msg: PbRemediationParameters) -> Remediation:
    if msg.rp_vendor == 0 and msg.rp_type == RemediationParametersType.URI and msg.uri is not None:
        return Remediation(uri=msg.uri, vendor=msg.rp_vendor, type=msg.rp_type)
    if msg.rp_vendor == 0 and msg.rp_type == RemediationParametersType.STRING and msg.string is not None:
        return Remediation(text=msg.string, language=msg.language, vendor=msg.rp_vendor, type=msg.rp_type)
    return Remediation(vendor=msg.rp_vendor, type=msg.rp_type, parameters=msg.parameters)
