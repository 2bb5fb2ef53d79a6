"""Integrity Measurement Collectors: IF-IMC in Python form, and the PA-TNC
plumbing every IETF collector shares.

The TNC client (:class:`nac.client.pb_client.PbTncClient`) loads IMCs in
order and numbers them from 1, as strongSwan does; an IMC's id is the PB-PA
Posture Collector Identifier of the messages it sends.  IMC methods are
synchronous: collectors read small local files, and a sans-IO client cannot
wait.

:class:`PaTncImc` does for a collector what strongSwan's ``imc_msg`` does:
parse what an IMV sent, answer TCG segmentation contracts, hand out the next
segment of a large attribute, and pack the collector's attributes into PA-TNC
messages that fit the transport.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nac.entropy import random_id32
from nac.log import Logger
from zope.interface import Attribute, Interface, implementer

from nac.ifimv import ConnectionState, EvaluationResult
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
    Segmenter,
    error_attribute,
    pa_error_reply,
)
from nac.pa.ietf import PaTncErrorAttribute
from nac.pa.segmentation import contract_response, max_segment_size_for_message, needs_segmentation
from nac.pa.tcg import NO_LIMIT
from nac.tnccs.imv_manager import ReceivedPaMessage

__all__ = [
    "ANY_IMV_ID",
    "IImc",
    "IImcConnection",
    "ImcConnection",
    "ImvAssessment",
    "PaTncImc",
    "ReceivedPaMessage",
    "SegmentationContract",
]

log = Logger(namespace="nac.client.imc")

ANY_IMV_ID = 0xFFFF
"""PB-PA Posture Validator Identifier meaning 'any IMV' (TNC_IMVID_ANY)."""


class IImcConnection(Interface):
    """The TNC client seen by one IMC on one connection (IF-IMC's
    TNC_TNCC_* functions, bound to an IMC id and a connection id)."""

    connection_id = Attribute("TNCCS Connection ID")
    imc_id = Attribute("The IMC's id (PB-PA Posture Collector Identifier), from 1")
    imc_name = Attribute("The IMC's name, for logs")
    max_message_size = Attribute("Largest PA-TNC message the transport carries")
    state = Attribute("Free slot for the IMC's own per-connection state")

    def send_message(vendor_id, subtype, body, validator_id=ANY_IMV_ID, exclusive=False):
        """Queue a PA-TNC message (bytes) for the IMVs of the server.

        ``exclusive`` asks for delivery to ``validator_id`` only (PB-PA EXCL);
        it is dropped when no validator is named, as strongSwan does."""


class IImc(Interface):
    """An Integrity Measurement Collector (IF-IMC in Python form)."""

    name = Attribute("Name used in logs and on the command line, e.g. 'OS'")
    subscriptions = Attribute("Sequence of (vendor_id, subtype) PA message types the IMC receives")

    def notify_connection_change(connection, state):
        """TNC_IMC_NotifyConnectionChange with a nac.ifimv.ConnectionState."""

    def begin_handshake(connection):
        """TNC_IMC_BeginHandshake: queue the first measurements."""

    def receive_message(connection, message):
        """TNC_IMC_ReceiveMessageLong: ``message`` is a ReceivedPaMessage."""

    def batch_ending(connection):
        """TNC_IMC_BatchEnding: the last message of a server batch was delivered."""


@dataclass(frozen=True, slots=True)
class ImvAssessment:
    """What one IMV told one IMC about it (RFC 5792 Assessment Result and
    Remediation Instructions attributes)."""

    imc_id: int
    imc_name: str
    imv_id: int
    result: int
    remediation: tuple[str, ...] = ()
    """Remediation URIs or strings, as received."""

    @property
    def result_label(self) -> str:
        """'compliant', 'non-compliant minor', ... as strongSwan logs it."""
        try:
            return EvaluationResult(self.result).label
        except ValueError:
            return f"unknown ({self.result})"


@implementer(IImcConnection)
class ImcConnection:
    """One IMC's handle on one TNCCS connection of a PB-TNC client."""

    def __init__(self, client, imc_id: int, imc_name: str):
        self._client = client
        self.imc_id = imc_id
        self.imc_name = imc_name
        self.state: Any = None

    @property
    def connection_id(self) -> int:
        return self._client.connection_id

    @property
    def max_message_size(self) -> int:
        return self._client.max_message_size

    def send_message(self, vendor_id, subtype, body, validator_id=ANY_IMV_ID, exclusive=False):
        self._client.queue_pa_message(
            vendor_id=int(vendor_id), subtype=int(subtype), collector_id=self.imc_id,
            validator_id=int(validator_id), exclusive=bool(exclusive) and validator_id != ANY_IMV_ID,
            body=bytes(body))


# -- PA-TNC plumbing shared by the IETF collectors --------------------------------


@dataclass(slots=True)
class SegmentationContract:
    """What an IMV accepts from this IMC for one PA message type (its Max
    Attribute Size Request, with our segment size where that is lower)."""

    max_attribute_size: int = NO_LIMIT
    max_segment_size: int = NO_LIMIT


@dataclass(slots=True)
class _PaImcState:
    """Per-connection state of a :class:`PaTncImc`."""

    # IMV id -> contract that IMV proposed (what we send to it)
    contracts: dict[int, SegmentationContract] = field(default_factory=dict)
    # IMV id -> contract it answered to our own request (what it sends to us)
    responses: dict[int, SegmentationContract] = field(default_factory=dict)
    # (IMV id, Base Attribute ID) -> attribute being sent in segments
    segmenters: dict[tuple[int, int], Segmenter] = field(default_factory=dict)
    reassembler: Reassembler = field(default_factory=Reassembler)
    base_ids: Any = field(default_factory=lambda: itertools.count(1))
    extra: dict[str, Any] = field(default_factory=dict)
    """Room for a subclass's own per-connection values."""


@implementer(IImc)
class PaTncImc:
    """Base of the IETF collectors: one PA subtype, PA-TNC in and out.

    Subclasses set ``name`` and ``subtype`` and override
    :meth:`handshake_attributes` (what ``begin_handshake`` sends to any IMV)
    and :meth:`reply_attributes` (the answer to one IMV's message).  The
    attributes they return go out in as many PA-TNC messages as needed,
    segmented under the IMV's contract.
    """

    name: ClassVar[str] = "PA-TNC"
    vendor: ClassVar[int] = PaVendor.IETF
    subtype: ClassVar[int]

    @property
    def subscriptions(self) -> tuple[tuple[int, int], ...]:
        return ((self.vendor, self.subtype),)

    # -- for subclasses ---------------------------------------------------------------

    def handshake_attributes(self, connection: IImcConnection) -> list[PaAttribute]:
        return []

    def reply_attributes(self, connection: IImcConnection, message: ReceivedPaMessage,
                         attributes: tuple[PaAttribute, ...]) -> list[PaAttribute]:
        """The answer to ``message``; ``attributes`` leaves out the TCG
        segmentation attributes (already handled)."""
        return []

    def state_of(self, connection: IImcConnection) -> _PaImcState:
        if not isinstance(connection.state, _PaImcState):
            connection.state = _PaImcState()
        return connection.state

    @staticmethod
    def contract_request(connection: IImcConnection) -> MaxAttributeSizeRequest:
        """A Max Attribute Size Request for what this connection can carry
        (strongSwan's SWIMA IMC sends one first)."""
        return MaxAttributeSizeRequest(NO_LIMIT, max_segment_size_for_message(connection.max_message_size),
                                       noskip=False)

    # -- IImc -------------------------------------------------------------------------

    def notify_connection_change(self, connection, state) -> None:
        if state == ConnectionState.CREATE:
            connection.state = _PaImcState()
        elif state == ConnectionState.DELETE:
            connection.state = None

    def begin_handshake(self, connection) -> None:
        attributes = self.handshake_attributes(connection)
        if attributes:
            # the first message goes to any IMV, without the EXCL flag
            self.send(connection, attributes, validator_id=ANY_IMV_ID, exclusive=False)

    def receive_message(self, connection, message: ReceivedPaMessage) -> None:
        state = self.state_of(connection)
        imv = message.validator_id
        reply: list[PaAttribute] = []
        others: list[PaAttribute] = []
        for attribute in message.pa.attributes:
            if isinstance(attribute, MaxAttributeSizeRequest):
                reply.append(self._accept_contract(connection, state, imv, attribute))
            elif isinstance(attribute, MaxAttributeSizeResponse):
                state.responses[imv] = SegmentationContract(attribute.max_attribute_size,
                                                            attribute.max_segment_size)
            elif isinstance(attribute, NextSegment):
                envelope = self._next_segment(state, imv, attribute)
                if envelope is not None:
                    reply.append(envelope)
            elif isinstance(attribute, SegmentEnvelope):
                whole = self._reassemble(state, message, attribute, reply)
                if whole is not None:
                    others.append(whole)
            else:
                if isinstance(attribute, PaTncErrorAttribute):
                    log.warn("IMC \"{imc}\" received PA-TNC error {code} from IMV {imv}",
                             imc=self.name, code=getattr(attribute.error_code, "name", attribute.error_code),
                             imv=imv)
                others.append(attribute)
        reply.extend(self.reply_attributes(connection, message, tuple(others)))
        if reply:
            # replies go to the asking IMV only (strongSwan sets EXCL), in
            # the PA subtype it asked in (a collector may serve several)
            self.send(connection, reply, validator_id=imv, exclusive=True, subtype=message.subtype)

    def batch_ending(self, connection) -> None:
        return None

    # -- sending ------------------------------------------------------------------------

    def send(self, connection, attributes, *, validator_id: int, exclusive: bool,
             subtype: int | None = None) -> None:
        """Send ``attributes`` in PA-TNC messages no larger than the transport
        allows, segmenting an attribute the IMV's contract cannot take whole;
        in PA subtype ``subtype`` (default: the collector's own)."""
        state = self.state_of(connection)
        contract = state.contracts.get(validator_id)
        limit = connection.max_message_size
        messages: list[list[bytes]] = [[]]
        size = MESSAGE_HEADER_SIZE
        for attribute in attributes:
            data = attribute.build()
            if contract is not None:
                if len(data) > contract.max_attribute_size:
                    log.warn("IMC \"{imc}\" drops {attr} of {n} bytes: IMV {imv} accepts at most {max}",
                             imc=self.name, attr=attribute.full_name, n=len(data), imv=validator_id,
                             max=contract.max_attribute_size)
                    continue
                if needs_segmentation(len(data), contract.max_segment_size):
                    data = self._first_segment(state, validator_id, data, contract)
                    if data is None:
                        log.warn("IMC \"{imc}\" drops {attr}: IMV {imv}'s segments of {seg} bytes cannot "
                                 "carry it", imc=self.name, attr=attribute.full_name, imv=validator_id,
                                 seg=contract.max_segment_size)
                        continue
            if size + len(data) > limit:
                if MESSAGE_HEADER_SIZE + len(data) > limit:
                    log.error("IMC \"{imc}\": {attr} of {n} bytes does not fit a {limit}-byte PA-TNC "
                              "message; dropped", imc=self.name, attr=attribute.full_name,
                              n=len(data), limit=limit)
                    continue
                messages.append([])
                size = MESSAGE_HEADER_SIZE
            messages[-1].append(data)
            size += len(data)
        for parts in messages:
            if parts:
                body = PaMessage(random_id32()).build() + b"".join(parts)
                connection.send_message(self.vendor, self.subtype if subtype is None else subtype, body,
                                        validator_id=validator_id, exclusive=exclusive)

    def _first_segment(self, state: _PaImcState, imv: int, data: bytes,
                       contract: SegmentationContract) -> bytes | None:
        base_id = next(state.base_ids) & 0xFFFFFF
        try:
            segmenter = Segmenter(data, base_attribute_id=base_id, max_segment_size=contract.max_segment_size)
        except ValueError:  # segments too small to hold the attribute header
            return None
        state.segmenters[(imv, base_id)] = segmenter
        # a full first segment; it fits one PA-TNC message by the contract's arithmetic
        envelope = segmenter.first_segment()
        log.debug("IMC \"{imc}\" sends a {n}-byte attribute to IMV {imv} in segments of {seg} bytes "
                  "(base attribute ID {base})", imc=self.name, n=len(data), imv=imv,
                  seg=contract.max_segment_size, base=base_id)
        return envelope.build()

    # -- receiving -----------------------------------------------------------------------

    def _accept_contract(self, connection, state: _PaImcState, imv: int,
                         request: MaxAttributeSizeRequest) -> MaxAttributeSizeResponse:
        response = contract_response(request, connection.max_message_size)
        state.contracts[imv] = SegmentationContract(response.max_attribute_size, response.max_segment_size)
        log.debug("IMC \"{imc}\" accepts a segmentation contract from IMV {imv}: attributes up to "
                  "{attr}, segments up to {seg} bytes", imc=self.name, imv=imv,
                  attr=response.max_attribute_size, seg=response.max_segment_size)
        return response

    def _next_segment(self, state: _PaImcState, imv: int, request: NextSegment) -> SegmentEnvelope | None:
        key = (imv, request.base_attribute_id)
        segmenter = state.segmenters.get(key)
        if segmenter is None:
            log.warn("IMC \"{imc}\": Next Segment from IMV {imv} for unknown base attribute ID {base}",
                     imc=self.name, imv=imv, base=request.base_attribute_id)
            return None
        envelope = segmenter.on_next_segment(request)
        if segmenter.done:
            del state.segmenters[key]
        return envelope

    def _reassemble(self, state: _PaImcState, message: ReceivedPaMessage, envelope: SegmentEnvelope,
                    reply: list[PaAttribute]) -> PaAttribute | None:
        try:
            whole = state.reassembler.add(envelope)
        except PaTncError as err:
            log.warn("IMC \"{imc}\": bad segment from IMV {imv}: {err}",
                     imc=self.name, imv=message.validator_id, err=str(err))
            if not err.in_error_attribute:
                reply.append(error_attribute(err))
            return None
        if whole is None:
            reply.append(NextSegment(envelope.base_attribute_id))
        return whole


def refuse_message(error: PaTncError | PaMessage, *, raw: bytes = b"") -> bytes | None:
    """The PA-TNC message refusing a malformed or unsupported message from an
    IMV, or None when RFC 5792 §4.2.8 forbids answering (an error about an
    error attribute)."""
    if isinstance(error, PaTncError) and error.in_error_attribute:
        return None
    return pa_error_reply(error, raw=raw)
