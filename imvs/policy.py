"""What the IETF IMVs share: policy, per-connection state, PA-TNC plumbing.

The OS and Scanner IMVs (and any IMV speaking one IETF PA subtype) are
built like strongSwan's ``imv_agent``: read for facts, written anew.

* :class:`VerdictPolicy` turns an evaluation into a recommendation, the way
  a strongSwan enforcement does (``rec_fail`` for a failed check,
  ``rec_noresult`` for a check without result); its options are declared
  once here for every IMV (:func:`verdict_options`).
* :func:`combine_checks` folds the results of an IMV's checks into one
  evaluation, where a check that got no measurement keeps the endpoint
  from being called compliant.
* :class:`RemediationString` builds strongSwan's remediation instructions
  in XML (``<remediationinstructions>``), the text its IMVs send in the
  IETF Remediation Instructions attribute; :func:`lang_text` picks a
  translation for the client's PB-Language-Preference.
* :class:`ImvState` is the per-connection state every IMV starts from, and
  :class:`PaTncImv` the IF-IMV plumbing: state creation and reset on a
  handshake retry, TCG segmentation contracts and reassembly of segmented
  attributes from the collector (``nac.pa.segmentation``), sending PA-TNC
  messages that fit the transport, and the final Assessment Result with
  remediation to the collector, reason string, remediation and
  recommendation to the TNCS.
* :meth:`PaTncImv.group_policy` asks the TNCS for the group policy of the
  endpoint (``nac.interfaces.IEndpointPolicy``): when it governs the IMV's
  family of checks, its due checks replace the ``[imv:NAME]`` policy, each
  failed check recommending its enforcement's ``rec_fail``
  (:func:`checks_recommendation`), and their outcomes are kept for the
  checks' maximum age (:meth:`PaTncImv.record_checks`).
* The pieces of that plumbing an IMV with its own flow uses without the
  base class (the SWIMA IMV): :func:`propose_contract`,
  :func:`accept_contract`, :func:`contract_accepted`, :func:`reassemble`,
  :func:`send_attributes` and :func:`fetch_session_id`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from xml.sax.saxutils import escape

from twisted.internet import defer
from zope.interface import implementer

from nac.entropy import random_id32
from nac.config import Option, byte_size, choice, optional, text
from nac.db.outage import log_store_failure
from nac.ifimv import ANY_IMC_ID, ActionRecommendation, ConnectionState, EvaluationResult
from nac.interfaces import IImv
from nac.log import Logger
from nac.pa import (
    MESSAGE_HEADER_SIZE,
    MaxAttributeSizeRequest,
    MaxAttributeSizeResponse,
    NextSegment,
    PaAttribute,
    PaMessage,
    PaTncError,
    PaVendor,
    Reassembler,
    SegmentEnvelope,
    error_attribute,
)
from nac.pa.ietf import AssessmentResult, PaTncErrorAttribute, RemediationInstructions
from nac.pa.segmentation import (
    DEFAULT_MAX_ATTRIBUTE_SIZE,
    ReassemblyBudget,
    contract_response,
    max_segment_size_for_message,
)
from nac.pa.tcg import NO_LIMIT
from nac.tnccs.assessment import address_of
from nac.tnccs.recommendations import choose_language, stricter_recommendation

__all__ = [
    "DEFAULT_LANGUAGE",
    "Judgement",
    "LangText",
    "MAX_PENDING_SEGMENTED",
    "PaTncImv",
    "RECOMMENDATIONS",
    "ImvState",
    "RemediationString",
    "VerdictPolicy",
    "accept_contract",
    "choose_text_language",
    "checks_recommendation",
    "combine_checks",
    "contract_accepted",
    "contract_text",
    "fetch_session_id",
    "lang_text",
    "peer_address",
    "propose_contract",
    "reassemble",
    "replace_state",
    "send_attributes",
    "verdict_options",
]

log = Logger(namespace="nac.imv")

A = ActionRecommendation
E = EvaluationResult

#: Recommendation names accepted in ``[imv:NAME]`` options.
RECOMMENDATIONS: dict[str, ActionRecommendation] = {
    "allow": A.ALLOW,
    "isolate": A.ISOLATE,
    "no-access": A.NO_ACCESS,
    "no-recommendation": A.NO_RECOMMENDATION,
}
_NAMES = {rec: name for name, rec in RECOMMENDATIONS.items()}

DEFAULT_LANGUAGE = "en"

#: Most items listed in one remediation instruction: the instructions must
#: fit one PA-TNC message and a RESULT batch next to the other IMVs' (32 KB
#: over PT-EAP); the full list is kept in the session's measurements.
MAX_REMEDIATION_ITEMS = 100
#: Segmented attributes from one collector being reassembled at once.
MAX_PENDING_SEGMENTED = 2


# -- evaluation → recommendation ---------------------------------------------------------

REASON_CHECK_FAILED: LangText = {
    "en": "The security policy could not be checked",
    "de": "Die Sicherheitsrichtlinie konnte nicht überprüft werden",
}


def verdict_options(*, minor: str = "no-access", major: str = "no-access",
                    no_result: str = "no-recommendation", server_checks: bool = False) -> list[Option]:
    """The ``[imv:NAME]`` options of :class:`VerdictPolicy` (strongSwan's
    enforcement ``rec_fail`` / ``rec_noresult``, split by severity) and the
    remediation URI; with ``server_checks`` (an IMV that looks the endpoint's
    measurements up in the policy database) also ``check_failed``."""
    names = tuple(RECOMMENDATIONS)
    failed = [check_failed_option()] if server_checks else []
    return failed + [
        Option("non_compliant_minor", choice(*names[:3]), minor,
               "Recommendation when a check finds a minor violation: allow, isolate or no-access."),
        Option("non_compliant_major", choice(*names[:3]), major,
               "Recommendation when a check finds a major violation: allow, isolate or no-access."),
        Option("no_result", choice(*names), no_result,
               "Recommendation when the endpoint sent nothing to judge, or not all that was asked "
               "for: allow, isolate, no-access or no-recommendation (the other IMVs decide)."),
        Option("remediation_uri", optional(text), None,
               "A URI sent with the remediation instructions (strongSwan's remediation_uri)."),
    ]


def check_failed_option(what: str = "a check of its own") -> Option:
    """``check_failed``: the recommendation when nac cannot make ``what``
    (the policy database is away); never allow."""
    return Option("check_failed", choice("isolate", "no-access"), "no-access",
                  f"Recommendation when nac cannot make {what} (the policy database cannot be read or "
                  "written, or does not answer within [nac] db_timeout): isolate or no-access, never "
                  "allow, with a reason saying so.")


@dataclass(frozen=True, slots=True)
class VerdictPolicy:
    """Which recommendation each evaluation gets (strongSwan's workitem
    ``set_result``: compliant allows, a violation gets ``rec_fail``, no
    result or an error ``rec_noresult``)."""

    minor: ActionRecommendation = A.NO_ACCESS
    major: ActionRecommendation = A.NO_ACCESS
    no_result: ActionRecommendation = A.NO_RECOMMENDATION
    check_failed: ActionRecommendation = A.NO_ACCESS
    """When a check of nac's own failed (the policy database): never allow."""

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> VerdictPolicy:
        return cls(RECOMMENDATIONS[options["non_compliant_minor"]],
                   RECOMMENDATIONS[options["non_compliant_major"]],
                   RECOMMENDATIONS[options["no_result"]],
                   RECOMMENDATIONS[options.get("check_failed", "no-access")])

    def recommendation(self, evaluation: EvaluationResult) -> ActionRecommendation:
        evaluation = E(evaluation)
        if evaluation is E.COMPLIANT:
            return A.ALLOW
        if evaluation is E.NONCOMPLIANT_MINOR:
            return self.minor
        if evaluation is E.NONCOMPLIANT_MAJOR:
            return self.major
        return self.no_result

    def describe(self) -> str:
        return (f"non-compliant minor: {_NAMES[self.minor]}, non-compliant major: "
                f"{_NAMES[self.major]}, no result: {_NAMES[self.no_result]}")


def combine_checks(results: Iterable[EvaluationResult | None]) -> EvaluationResult:
    """One evaluation from an IMV's checks; None is a check that got no measurement.

    A violation decides (the worst one); otherwise an error; otherwise the
    endpoint is compliant only when every check got a result and there was
    at least one check: an endpoint that withholds a measurement is not
    vouched for.
    """
    worst = None
    error = missing = False
    seen = False
    for result in results:
        seen = True
        if result is None or result is E.DONT_KNOW:
            missing = True
        elif result is E.ERROR:
            error = True
        elif result is not E.COMPLIANT:
            if worst is None or result > worst:
                worst = E(result)
    if worst is not None:
        return worst
    if error:
        return E.ERROR
    if missing or not seen:
        return E.DONT_KNOW
    return E.COMPLIANT


def checks_recommendation(outcomes) -> ActionRecommendation:
    """The recommendation of a group policy's checks: ``outcomes`` are
    (check, passed) pairs, passed None for a check without a result; the
    most restrictive of ALLOW (passed), the check's rec_fail (failed) and
    its rec_noresult (no result).  No checks: ALLOW (all were skipped for
    their maximum age, or none is due)."""
    recommendation = A.ALLOW
    for check, passed in outcomes:
        recommendation = stricter_recommendation(recommendation, check.recommendation(passed))
    return recommendation


# -- remediation instructions ------------------------------------------------------------

LangText = Mapping[str, str]
"""One text in several languages: language tag → text (an ``en`` entry is expected)."""


def lang_text(texts: LangText, language: str) -> str:
    """``texts`` in ``language`` (a tag chosen with :func:`choose_text_language`),
    falling back to English and then to any."""
    return texts.get(language) or texts.get(DEFAULT_LANGUAGE) or next(iter(texts.values()))


def choose_text_language(accept_language: str, available: Iterable[str]) -> str:
    """The language of the IMV's texts best matching the client's
    PB-Language-Preference (an Accept-Language value), else English."""
    available = list(available)
    return choose_language(accept_language or "", available) or DEFAULT_LANGUAGE


class RemediationString:
    """strongSwan's remediation instructions in XML (``imv_remediation_string``
    with XML encoding), e.g.::

        <?xml version="1.0" encoding="UTF-8"?>
        <remediationinstructions>
          <instruction>
            <title>Open Server Ports</title>
            <description>Open Internet ports have been detected</description>
            <itemsheader>Please close the following server ports:</itemsheader>
            <items>
              <item>tcp/271</item>
            </items>
          </instruction>
        </remediationinstructions>

    Texts are chosen in ``language``; text is escaped for XML (strongSwan
    does not escape; for its port and package items that changes nothing).
    """

    HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n<remediationinstructions>\n'
    TRAILER = "</remediationinstructions>"

    def __init__(self, language: str = DEFAULT_LANGUAGE, *, max_items: int = MAX_REMEDIATION_ITEMS):
        self.language = language
        self.max_items = max_items
        self._instructions: list[str] = []
        self.omitted = 0
        """Items left out to keep the instructions small."""

    def __bool__(self) -> bool:
        return bool(self._instructions)

    def add_instruction(self, title: LangText, description: LangText,
                        items_header: LangText | None = None, items: Sequence[str] = ()) -> None:
        lang = self.language
        parts = ["  <instruction>\n",
                 f"    <title>{escape(lang_text(title, lang))}</title>\n",
                 f"    <description>{escape(lang_text(description, lang))}</description>\n"]
        if items_header is not None:
            parts.append(f"    <itemsheader>{escape(lang_text(items_header, lang))}</itemsheader>\n")
        if items:
            shown = list(items)[:self.max_items]
            self.omitted += len(items) - len(shown)
            parts.append("    <items>\n")
            parts.extend(f"      <item>{escape(item)}</item>\n" for item in shown)
            parts.append("    </items>\n")
        parts.append("  </instruction>\n")
        self._instructions.append("".join(parts))

    def encode(self) -> str:
        """The whole document; empty when no instruction was added."""
        if not self._instructions:
            return ""
        return self.HEADER + "".join(self._instructions) + self.TRAILER


def contract_text(attribute) -> str:
    """A segmentation contract as strongSwan logs it."""
    size = ("no message size limit" if attribute.max_attribute_size == NO_LIMIT
            else f"maximum message size of {attribute.max_attribute_size} bytes")
    segment = ("no segmentation" if attribute.max_segment_size == NO_LIMIT
               else f"maximum segment size of {attribute.max_segment_size} bytes")
    return f"{size}, {segment}"


# -- IF-IMV plumbing as functions (PaTncImv and IMVs with their own flow) -------------------


def propose_contract(connection, max_attribute_size: int, message_type: str) -> MaxAttributeSizeRequest:
    """The segmentation contract an IMV proposes for ``message_type``
    ('IETF/SWIMA'): attributes up to ``max_attribute_size``, segments that
    fit one PA-TNC message."""
    request = MaxAttributeSizeRequest(max_attribute_size,
                                      max_segment_size_for_message(connection.max_message_size))
    log.debug("IMV {imv_id} requests a segmentation contract for PA message type '{type}': {text}",
             imv_id=connection.imv_id, type=message_type, text=contract_text(request))
    return request


def accept_contract(connection, imc_id: int, request: MaxAttributeSizeRequest,
                    message_type: str) -> MaxAttributeSizeResponse:
    """The answer to a collector's segmentation contract request (what the
    IMV may send it)."""
    log.debug("IMV {imv_id} received a segmentation contract request from IMC {imc} for PA "
             "message type '{type}': {text}", imv_id=connection.imv_id, imc=imc_id,
             type=message_type, text=contract_text(request))
    return contract_response(request, connection.max_message_size)


def contract_accepted(connection, imc_id: int, response: MaxAttributeSizeResponse,
                      message_type: str) -> None:
    """Log the collector's answer to the IMV's contract request."""
    log.debug("IMV {imv_id} received a segmentation contract response from IMC {imc} for PA "
             "message type '{type}': {text}", imv_id=connection.imv_id, imc=imc_id,
             type=message_type, text=contract_text(response))


def peer_address(connection) -> str:
    """The endpoint's address, which names the peer of a line about its
    input (``log_limit``)."""
    return address_of(getattr(connection, "peer", None))


def reassemble(connection, reassembler: Reassembler, imc_id: int, envelope: SegmentEnvelope,
               reply: list[PaAttribute]) -> PaAttribute | None:
    """The base attribute once ``envelope`` was its last segment, else None
    with a Next Segment (or, for an invalid segment, a PA-TNC Error) added to
    ``reply``.  Attributes that took too long are dropped first, each with
    a PA-TNC Error."""
    expired = reassembler.expire()
    for err in expired.values():
        _segment_refused(connection, imc_id, err, reply)
    if envelope.base_attribute_id in expired:
        return None  # its error is on the way
    try:
        whole = reassembler.add(envelope)
    except PaTncError as err:
        _segment_refused(connection, imc_id, err, reply)
        return None
    if whole is None:
        log.debug("IMV {imv_id} received {n} bytes of base attribute {base}, asking for the "
                  "next segment", imv_id=connection.imv_id,
                  n=reassembler.received(envelope.base_attribute_id), base=envelope.base_attribute_id)
        reply.append(NextSegment(envelope.base_attribute_id))
        return None
    log.debug("IMV {imv_id} reassembled {attr} from segments", imv_id=connection.imv_id,
              attr=whole.full_name)
    return whole


def _segment_refused(connection, imc_id: int, err: PaTncError, reply: list[PaAttribute]) -> None:
    log.warn("IMV {imv_id} received an invalid segment from IMC {imc}: {err}",
             imv_id=connection.imv_id, imc=imc_id, err=str(err),
             log_limit=("invalid IF-M segment", peer_address(connection)))
    if not err.in_error_attribute:
        reply.append(error_attribute(err))


def send_attributes(connection, vendor: int, subtype: int, attributes: Sequence[PaAttribute], *,
                    collector_id: int, exclusive: bool,
                    fit: Callable[[PaAttribute, bytes, int], bytes | None] | None = None) -> None:
    """``attributes`` in one PA-TNC message to ``collector_id``; an attribute
    that would make the message larger than the transport carries is left
    out and logged.

    ``fit(attribute, data, space)`` sees every built attribute first, with
    the ``space`` left in the message, and returns what to send in its place
    (``data``, or the first Segment Envelope of it) or None to drop it,
    having said why.
    """
    limit = connection.max_message_size
    parts: list[bytes] = []
    size = MESSAGE_HEADER_SIZE
    for attribute in attributes:
        data = attribute.build()
        if fit is not None:
            data = fit(attribute, data, limit - size)
            if data is None:
                continue
        if size + len(data) > limit:
            log.error("IMV {imv_id}: {attr} of {n} bytes does not fit a {limit}-byte PA-TNC "
                      "message; left out", imv_id=connection.imv_id, attr=attribute.full_name,
                      n=len(data), limit=limit)
            continue
        parts.append(data)
        size += len(data)
    if parts:
        body = PaMessage(random_id32()).build() + b"".join(parts)
        connection.send_message(vendor, subtype, body, collector_id=collector_id, exclusive=exclusive)


def fetch_session_id(connection, state, *, bounded: bool = False) -> defer.Deferred:
    """Deferred firing with this assessment's session id, kept in
    ``state.session_id`` (None without a store or when the store fails).

    The session's start waits for the database while it is away; with
    ``bounded`` the Deferred fires with None (for now) once the store's
    bounded wait passed (``[nac] db_wait``), so that an assessment does not
    wait with it; ``state.session_id`` is set whenever the id comes."""
    if state.session_id is not None or connection.store is None:
        return defer.succeed(state.session_id)

    def keep(session_id):
        state.session_id = session_id
        return session_id

    def failed(failure):
        log_store_failure(log, failure, "IMV {imv_id}: no session id for Connection ID {cid}",
                          imv_id=connection.imv_id, cid=connection.connection_id)
        return None

    d = connection.session_id().addCallbacks(keep, failed)
    wait = getattr(connection.store, "bounded_wait", None) if bounded else None
    if wait is None or d.called:
        return d
    return wait(d).addCallback(lambda _: state.session_id)


# -- per-connection state and the IF-IMV plumbing ------------------------------------------


@dataclass(slots=True)
class ImvState:
    """What an IMV knows about one connection; IMVs extend it."""

    max_attribute_size: int = DEFAULT_MAX_ATTRIBUTE_SIZE
    reassembly: ReassemblyBudget | None = None
    """The connection's budget for unfinished segmented attributes."""
    imc_id: int | None = None
    """The collector that answers this IMV (the first one that spoke)."""
    started: bool = False
    """The IMV did its first-batch work (a retry starts anew after that)."""
    heard: bool = False
    """A message from the collector arrived since the last batch ended."""
    received_any: bool = False
    decided: bool = False
    session_id: int | None = None
    reassembler: Reassembler = field(init=False)

    def __post_init__(self):
        self.reassembler = Reassembler(max_attribute_size=self.max_attribute_size,
                                       max_pending=MAX_PENDING_SEGMENTED, budget=self.reassembly)


def replace_state(connection, state) -> None:
    """``connection.state = state``, giving back what the old state's
    unfinished segmented attributes held."""
    reassembler = getattr(connection.state, "reassembler", None)
    if reassembler is not None:
        reassembler.clear()
    connection.state = state



class GroupPolicyUnreadable(Exception):
    """The endpoint's group policy could not be read (the policy database
    failed): the IMV judges as when a check of its own could not be made."""


@dataclass(frozen=True, slots=True)
class Judgement:
    """An IMV's verdict, ready to be sent."""

    evaluation: EvaluationResult
    recommendation: ActionRecommendation
    reasons: tuple[LangText, ...] = ()
    remediation: RemediationString | None = None
    summary: str = ""
    """What the log line says after the recommendation."""


@implementer(IImv)
class PaTncImv:
    """Base of the IMVs of one IETF PA subtype (strongSwan's imv_agent).

    Subclasses set ``name`` (configuration), ``label`` (logs), ``subtype``,
    ``state_class`` and ``OPTIONS``, and implement :meth:`handle_attribute`
    (store what one attribute says in the state), :meth:`batch_ending` and
    :meth:`judge` (the verdict from the state, may wait for the store).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    vendor: ClassVar[int] = PaVendor.IETF
    subtype: ClassVar[int]
    subtype_name: ClassVar[str]
    """The PA subtype as strongSwan names it in logs ('Operating System')."""
    LANGUAGES: ClassVar[tuple[str, ...]] = (DEFAULT_LANGUAGE,)
    """Languages of the IMV's reason strings and remediation texts."""
    state_class: ClassVar[type[ImvState]] = ImvState
    OPTIONS: ClassVar[list[Option]] = []

    def __init__(self, options: Mapping[str, Any] | None = None):
        values = {option.name: option.default for option in self.OPTIONS}
        values.update(options or {})
        self.options = values
        self.policy = VerdictPolicy.from_options(values)
        self.remediation_uri: str | None = values.get("remediation_uri")
        self.max_attribute_size: int = values.get("max_attribute_size", DEFAULT_MAX_ATTRIBUTE_SIZE)
        self._warned_no_store = False

    @property
    def subscriptions(self) -> tuple[tuple[int, int], ...]:
        return ((self.vendor, self.subtype),)

    @classmethod
    def attribute_size_option(cls) -> Option:
        return Option("max_attribute_size", byte_size(64 * 1024, 256 * 1024 * 1024),
                      DEFAULT_MAX_ATTRIBUTE_SIZE,
                      "Largest attribute accepted from the collector, whole or reassembled from "
                      "segments; announced in the segmentation contract.")

    # -- state ---------------------------------------------------------------------------

    def new_state(self, connection=None) -> ImvState:
        return self.state_class(max_attribute_size=self.max_attribute_size,
                                reassembly=getattr(connection, "reassembly", None))

    def state_of(self, connection) -> ImvState:
        if not isinstance(connection.state, self.state_class):
            replace_state(connection, self.new_state(connection))
        return connection.state

    # -- IImv ----------------------------------------------------------------------------

    def notify_connection_change(self, connection, state) -> None:
        if state == ConnectionState.CREATE:
            replace_state(connection, self.new_state(connection))
        elif state == ConnectionState.HANDSHAKE:
            current = connection.state
            if not isinstance(current, self.state_class) or current.started or current.decided:
                # a handshake retry starts the assessment anew
                replace_state(connection, self.new_state(connection))
        elif state == ConnectionState.DELETE:
            replace_state(connection, None)

    def receive_message(self, connection, message):
        state = self.state_of(connection)
        if message.vendor_id != self.vendor or message.subtype != self.subtype:
            return None
        log.debug("IMV {imv_id} \"{label}\" received message for Connection ID {cid} from IMC {imc}",
                 imv_id=connection.imv_id, label=self.label, cid=connection.connection_id,
                 imc=message.collector_id)
        if state.imc_id is None:
            state.imc_id = message.collector_id
        state.heard = True
        state.received_any = True
        reply: list[PaAttribute] = []
        for attribute in message.pa.attributes:
            for whole in self._unwrap(connection, state, message.collector_id, attribute, reply):
                self.handle_attribute(connection, state, whole)
        if reply:
            self.send(connection, reply, collector_id=message.collector_id, exclusive=True)
        return None

    def batch_ending(self, connection):
        raise NotImplementedError

    def solicit_recommendation(self, connection):
        state = self.state_of(connection)
        if state.decided:
            return None
        return self.decide(connection, state)

    # -- for subclasses ------------------------------------------------------------------

    def handle_attribute(self, connection, state: ImvState, attribute: PaAttribute) -> None:
        """Take in one (reassembled) attribute from the collector."""

    def judge(self, connection, state: ImvState):
        """The :class:`Judgement` (or a Deferred of it) from what ``state`` holds."""
        raise NotImplementedError

    def language(self, connection) -> str:
        """The language of this IMV's texts for the client's PB-Language-Preference."""
        return choose_text_language(connection.preferred_language, self.LANGUAGES)

    def no_store(self, connection) -> None:
        """Say once per IMV that checks needing the policy database are skipped."""
        if not self._warned_no_store:
            self._warned_no_store = True
            log.warn("IMV {imv_id} \"{label}\" has no policy database: checks that need it are "
                     "skipped", imv_id=connection.imv_id, label=self.label)

    # -- segmentation ----------------------------------------------------------------------

    def contract_request(self, connection) -> MaxAttributeSizeRequest:
        """The segmentation contract this IMV proposes: attributes up to
        ``max_attribute_size``, segments that fit one PA-TNC message."""
        return propose_contract(connection, self.max_attribute_size, self.message_type_name)

    @property
    def message_type_name(self) -> str:
        return f"IETF/{self.subtype_name}"

    def _unwrap(self, connection, state: ImvState, imc_id: int, attribute: PaAttribute,
                reply: list[PaAttribute]) -> list[PaAttribute]:
        """The base attributes ``attribute`` stands for (none for TCG
        segmentation attributes, the reassembled one after the last segment)."""
        if isinstance(attribute, MaxAttributeSizeRequest):
            # recorded by the collector; this IMV sends nothing that needs segments
            reply.append(accept_contract(connection, imc_id, attribute, self.message_type_name))
            return []
        if isinstance(attribute, MaxAttributeSizeResponse):
            contract_accepted(connection, imc_id, attribute, self.message_type_name)
            return []
        if isinstance(attribute, SegmentEnvelope):
            whole = reassemble(connection, state.reassembler, imc_id, attribute, reply)
            if whole is None or isinstance(whole, (SegmentEnvelope, NextSegment)):
                return []  # incomplete, invalid, or segments inside segments (they mean nothing)
            return [whole]
        if isinstance(attribute, NextSegment):
            # this IMV sends nothing in segments
            log.debug("IMV {imv_id}: Next Segment from IMC {imc} for unknown base attribute ID {base}",
                      imv_id=connection.imv_id, imc=imc_id, base=attribute.base_attribute_id)
            return []
        if isinstance(attribute, PaTncErrorAttribute):
            log.warn("IMV {imv_id} received PA-TNC error '{code}' from IMC {imc}",
                     imv_id=connection.imv_id, imc=imc_id,
                     code=getattr(attribute.error_code, "name", attribute.error_code),
                     log_limit=("PA-TNC error from a collector", peer_address(connection)))
            return []
        return [attribute]

    # -- sending -------------------------------------------------------------------------

    def send(self, connection, attributes: Sequence[PaAttribute], *, collector_id: int | None,
             exclusive: bool) -> None:
        """``attributes`` in one PA-TNC message to ``collector_id`` (any
        collector when None); an attribute that would make the message
        larger than the transport carries is left out and logged."""
        if collector_id is None:
            collector_id = ANY_IMC_ID
        send_attributes(connection, self.vendor, self.subtype, attributes, collector_id=collector_id,
                        exclusive=exclusive and collector_id != ANY_IMC_ID)

    # -- deciding ------------------------------------------------------------------------

    def decide(self, connection, state: ImvState):
        """Judge, tell the collector and the TNCS (once); may return a Deferred."""
        if state.decided:
            return None
        state.decided = True
        def unreadable(failure):
            failure.trap(GroupPolicyUnreadable)
            return self.check_failed("the group policy could not be read")

        judged = defer.maybeDeferred(self.judge, connection, state).addErrback(unreadable)
        return judged.addCallback(lambda judgement: self.provide(connection, state, judgement))

    def provide(self, connection, state: ImvState, judgement: Judgement) -> None:
        """Send the Assessment Result (and Remediation Instructions when not
        compliant) to the collector, then reason, remediation and
        recommendation to the TNCS."""
        rec, ev = judgement.recommendation, judgement.evaluation
        log.info("IMV {imv_id} \"{label}\" on Connection ID {cid}: {rec} - {summary}",
                 imv_id=connection.imv_id, label=self.label, cid=connection.connection_id,
                 rec=rec.label, summary=judgement.summary or ev.label)
        language = self.language(connection)
        attributes: list[PaAttribute] = [AssessmentResult(int(ev))]
        instructions = ""
        if ev is not E.COMPLIANT and judgement.remediation:
            instructions = judgement.remediation.encode()
            if judgement.remediation.omitted:
                log.info("IMV {imv_id}: {n} remediation item(s) left out of the instructions",
                         imv_id=connection.imv_id, n=judgement.remediation.omitted)
            attributes.append(RemediationInstructions.for_string(instructions,
                                                                 judgement.remediation.language))
            if self.remediation_uri:
                attributes.append(RemediationInstructions.for_uri(self.remediation_uri))
        if state.imc_id is not None:
            self.send(connection, attributes, collector_id=state.imc_id, exclusive=True)
        if judgement.reasons:
            reason = "\n".join(lang_text(r, language) for r in judgement.reasons)
            log.info("IMV {imv_id} is setting reason string to '{reason}'",
                     imv_id=connection.imv_id, reason=reason)
            connection.set_reason(reason, language)
        if instructions:
            connection.add_remediation(instructions, judgement.remediation.language)
            if self.remediation_uri:
                connection.add_remediation("", judgement.remediation.language, uri=self.remediation_uri)
        connection.provide_recommendation(rec, ev)

    def group_policy(self, connection, types):
        """Deferred firing with the endpoint's group policy when it governs
        ``types`` (PolicyType values), else None (the ``[imv:NAME]`` policy
        applies).  When the policy cannot be read it logs why and fails with
        :class:`GroupPolicyUnreadable`, which :meth:`decide` turns into the
        verdict of a check that could not be made."""
        lookup = getattr(connection, "endpoint_policy", None)
        if lookup is None:
            return defer.succeed(None)

        def unreadable(failure):
            log_store_failure(log, failure, "IMV {imv_id}: the group policy of Connection ID {cid} could not be "
                              "read", imv_id=connection.imv_id, cid=connection.connection_id)
            raise GroupPolicyUnreadable()

        return defer.maybeDeferred(lookup).addCallbacks(
            lambda policy: policy if policy is not None and policy.governs(types) else None, unreadable)

    def record_checks(self, connection, state: ImvState, policy, outcomes) -> None:
        """Keep each (check, passed) outcome for the checks' maximum age, in the background."""
        for check, passed in outcomes:
            rec = check.recommendation(passed)
            self.record(connection, state, f"the result of policy '{check.name}'",
                        lambda session_id, check=check, rec=rec: policy.record(check, rec, session_id))

    def check_failed(self, summary: str) -> Judgement:
        """The verdict when a check of nac's own could not be made (the policy
        database failed): never allow, whatever else the endpoint showed."""
        return Judgement(E.ERROR, self.policy.check_failed, (REASON_CHECK_FAILED,), None, summary)

    def no_result(self, reason: LangText | None = None, summary: str = "",
                  evaluation: EvaluationResult = E.DONT_KNOW) -> Judgement:
        """The verdict when nothing (or not everything) could be judged; the
        reason is given only when the recommendation restricts access."""
        rec = self.policy.no_result
        reasons = (reason,) if reason is not None and rec in (A.ISOLATE, A.NO_ACCESS) else ()
        return Judgement(evaluation, rec, reasons, None, summary)

    def session_id(self, connection, state: ImvState, *, bounded: bool = False):
        """Deferred firing with this assessment's session id (None without a
        store); see :func:`fetch_session_id` for ``bounded``."""
        return fetch_session_id(connection, state, bounded=bounded)

    def measure(self, connection, state: ImvState, kind: str, payload: dict) -> None:
        """Keep ``payload`` as a measurement of this session (see :meth:`record`)."""
        store = connection.store
        if store is not None:
            self.record(connection, state, f"the {kind} measurement",
                        lambda session_id: store.add_measurement(session_id, self.name, kind, payload))

    def record(self, connection, state: ImvState, what: str, write) -> None:
        """``write(session_id)`` (a store write) once this session has its id,
        in the background: the store commits it before the session's
        decision, which is queued after it, so verdicts need not wait for
        it.  A failure is logged as storing ``what`` failed."""
        def run(session_id):
            return None if session_id is None else write(session_id)

        def failed(failure):
            log_store_failure(log, failure, "IMV {imv_id}: storing {what} of Connection ID {cid} failed",
                              imv_id=connection.imv_id, what=what, cid=connection.connection_id)

        self.session_id(connection, state).addCallback(run).addErrback(failed)
