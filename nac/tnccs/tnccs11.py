"""IF-TNCCS 1.1: the TCG's XML TNCCS protocol, server side.

TCG "TNC IF-TNCCS: Protocol Bindings for TNCCS" 1.1 (1.2 adds
TNCCS-TNCSContactInfo) is what legacy TNC clients speak inside EAP-TNC
(EAP type 38): wpa_supplicant / eapol_test, tnc@fhh, strongSwan's tnccs-11.
A batch is one XML document::

    <?xml version="1.0"?>
    <TNCCS-Batch BatchId="2" Recipient="TNCC" xmlns="…/IF_TNCCS#" …>
    <TNCC-TNCS-Message><Type>00000001</Type><XML><TNCCS-Recommendation type="allow"></TNCCS-Recommendation></XML></TNCC-TNCS-Message>
    <IMC-IMV-Message><Type>00000001</Type><Base64>AQAAAA…</Base64></IMC-IMV-Message>
    </TNCCS-Batch>

``IMC-IMV-Message`` carries one PA-TNC message (Base64) whose 32-bit Type is
``vendor << 8 | subtype`` (so only 8-bit subtypes); ``TNCC-TNCS-Message``
carries the TNCCS's own messages as XML: TNCCS-Recommendation (Type 1),
TNCCS-Error (2), TNCCS-PreferredLanguage (3), TNCCS-ReasonStrings (4),
TNCCS-TNCSContactInfo (5).

The client sends the odd BatchIds from 1, the server answers batch N with
N + 1.  The server's last batch carries the TNCCS-Recommendation (and the
reason strings); the client acknowledges it outside IF-TNCCS, with an empty
EAP-TNC message, after which the EAP layer sends EAP-Success or -Failure.
A batch that cannot be accepted (malformed XML, wrong BatchId or Recipient,
too long) is answered with a TNCCS-Error and the connection closes.

Batches are parsed with defusedxml (no DTD, no entities, nothing external)
after a size check, with a bound on nesting.  Two byte layouts are written:
hostap's (what wpa_supplicant and hostapd write, and what nac sends) and
libxml2's indented one (what strongSwan writes); both parse back to the same
batch, and the captured batches of both rebuild byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import ClassVar, Union

from defusedxml.ElementTree import XMLParser
from zope.interface import implementer

from nac.ifimv import ANY_IMC_ID, ANY_SUBTYPE, ANY_VENDOR, ActionRecommendation, EvaluationResult
from nac.interfaces import ITnccsConnection
from nac.log import Logger
from nac.tnccs.connection import TnccsServerConnection
from nac.tnccs.assessment import BatchOutcome
from nac.tnccs.imv_manager import OutgoingPaMessage

log = Logger(namespace="nac.tnccs.tnccs11")

TNCCS_NAMESPACE = "http://www.trustedcomputinggroup.org/IWG/TNC/1_0/IF_TNCCS#"
XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"
TNCCS_SCHEMA = "https://www.trustedcomputinggroup.org/XML/SCHEMA/TNCCS_1.0.xsd"
XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"

MAX_MESSAGES = 10000
"""Messages accepted in one batch (beyond it: batch-too-long)."""
MAX_DEPTH = 16
"""Element nesting accepted in a batch; the schema needs five levels."""

_NS = "{" + TNCCS_NAMESPACE + "}"
_XML_LANG = "{" + XML_NAMESPACE + "}lang"


class Recipient(enum.Enum):
    """TNCCS-Batch Recipient attribute (TNCCS-Recipient-Type)."""

    TNCS = "TNCS"
    TNCC = "TNCC"


class TnccsMessageType(enum.IntEnum):
    """TNCC-TNCS-Message Type values of the TCG namespace."""

    RECOMMENDATION = 1
    ERROR = 2
    PREFERRED_LANGUAGE = 3
    REASON_STRINGS = 4
    TNCS_CONTACT_INFO = 5

    @property
    def element(self) -> str:
        """Name of the element inside ``<XML>``."""
        return _ELEMENTS[self]


_ELEMENTS = {
    TnccsMessageType.RECOMMENDATION: "TNCCS-Recommendation",
    TnccsMessageType.ERROR: "TNCCS-Error",
    TnccsMessageType.PREFERRED_LANGUAGE: "TNCCS-PreferredLanguage",
    TnccsMessageType.REASON_STRINGS: "TNCCS-ReasonStrings",
    TnccsMessageType.TNCS_CONTACT_INFO: "TNCCS-TNCSContactInfo",
}


class RecommendationType(enum.Enum):
    """TNCCS-Recommendation type attribute (TNCCS-Recommendations)."""

    ALLOW = "allow"
    NONE = "none"
    ISOLATE = "isolate"


class TnccsErrorType(enum.Enum):
    """TNCCS-Error type attribute (TNCCS-Errors)."""

    BATCH_TOO_LONG = "batch-too-long"
    MALFORMED_BATCH = "malformed-batch"
    INVALID_BATCH_ID = "invalid-batch-id"
    INVALID_RECIPIENT_TYPE = "invalid-recipient-type"
    INTERNAL_ERROR = "internal-error"
    OTHER = "other"


class BatchLayout(enum.Enum):
    """How a batch is laid out in bytes (XML whitespace, attribute order,
    Base64 line length, hex case).  Only :meth:`TnccsBatch.build` looks at it."""

    HOSTAP = "hostap"
    """wpa_supplicant's and hostapd's: one line per batch body, Base64 in
    72-character lines each ending in a newline, upper-case Type."""
    LIBXML = "libxml"
    """libxml2's indented dump as strongSwan writes it: two-space indents,
    Base64 in 76-character lines, lower-case Type, trailing newline."""


def _enum_or_raw(enum_cls, value: str):
    try:
        return enum_cls(value)
    except ValueError:
        return value


def _value(v) -> str:
    return v.value if isinstance(v, enum.Enum) else str(v)


class TnccsBatchError(Exception):
    """A received batch that must be answered with a TNCCS-Error.

    ``position`` is the (line, column) of an XML syntax error when known.
    """

    def __init__(self, error_type: TnccsErrorType, reason: str,
                 position: tuple[int, int] | None = None):
        self.error_type = error_type
        self.reason = reason
        self.position = position
        super().__init__(reason)

    def __str__(self) -> str:
        where = f" at line {self.position[0]}, column {self.position[1]}" if self.position else ""
        return f"{self.error_type.value}: {self.reason}{where}"

    def to_message(self) -> TnccsError:
        return TnccsError(type=self.error_type, message=self.reason)


# -- XML writing -------------------------------------------------------------------------

# characters XML 1.0 cannot carry at all; replaced so an odd reason string
# from an IMV can never break a batch
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(s: str) -> str:
    s = _NOT_XML.sub("\ufffd", s)
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", "&#13;"))


def _attr(s: str) -> str:
    # tab, newline and CR would be normalised to spaces by the reader
    return (_text(s).replace('"', "&quot;").replace("\t", "&#9;").replace("\n", "&#10;"))


@dataclass(frozen=True, slots=True)
class _Node:
    """An element to write: text content or child nodes, or raw markup."""

    tag: str
    attrs: tuple[tuple[str, str], ...] = ()
    text: str | None = None
    children: tuple[_Node, ...] = ()
    raw: str | None = None

    def write_hostap(self) -> str:
        if self.raw is not None:
            return self.raw
        attrs = "".join(f' {k}="{_attr(v)}"' for k, v in self.attrs)
        inner = _text(self.text) if self.text else "".join(c.write_hostap() for c in self.children)
        return f"<{self.tag}{attrs}>{inner}</{self.tag}>"

    def write_libxml(self, level: int) -> str:
        indent = "  " * level
        if self.raw is not None:
            return f"{indent}{self.raw}\n"
        attrs = "".join(f' {k}="{_attr(v)}"' for k, v in self.attrs)
        if self.text:
            return f"{indent}<{self.tag}{attrs}>{_text(self.text)}</{self.tag}>\n"
        if not self.children:
            return f"{indent}<{self.tag}{attrs}/>\n"
        inner = "".join(c.write_libxml(level + 1) for c in self.children)
        return f"{indent}<{self.tag}{attrs}>\n{inner}{indent}</{self.tag}>\n"


def _base64_hostap(body: bytes) -> str:
    # hostap's encoder: 72-character lines, each ending in a newline
    b64 = base64.b64encode(body).decode("ascii")
    return "".join(b64[i:i + 72] + "\n" for i in range(0, len(b64), 72))


def _base64_libxml(body: bytes) -> str:
    # strongSwan encodes 57 bytes (76 characters) per line, newline-separated
    return "\n".join(base64.b64encode(body[i:i + 57]).decode("ascii")
                     for i in range(0, len(body), 57))


def _type_text(value: int, layout: BatchLayout) -> str:
    return f"{value:08X}" if layout is BatchLayout.HOSTAP else f"{value:08x}"


def _base64_node(body: bytes, layout: BatchLayout) -> _Node:
    text = _base64_hostap(body) if layout is BatchLayout.HOSTAP else _base64_libxml(body)
    return _Node("Base64", text=text)


# -- messages ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ImcImvMessage:
    """IMC-IMV-Message: one PA-TNC message between collectors and verifiers.

    ``message_type`` is the TNC_MessageType, ``vendor_id << 8 | subtype``.
    """

    message_type: int
    body: bytes

    ELEMENT: ClassVar[str] = "IMC-IMV-Message"

    @classmethod
    def for_pa(cls, vendor_id: int, subtype: int, body: bytes) -> ImcImvMessage:
        if not (0 <= vendor_id < ANY_VENDOR and 0 <= subtype < ANY_SUBTYPE):
            raise ValueError(f"PA message type 0x{vendor_id:06x}/0x{subtype:08x} "
                             "has no IF-TNCCS 1.1 message type")
        return cls(message_type=vendor_id << 8 | subtype, body=bytes(body))

    @property
    def vendor_id(self) -> int:
        return self.message_type >> 8

    @property
    def subtype(self) -> int:
        return self.message_type & 0xFF

    def node(self, layout: BatchLayout) -> _Node:
        return _Node(self.ELEMENT, children=(
            _Node("Type", text=_type_text(self.message_type, layout)),
            _base64_node(self.body, layout)))

    @classmethod
    def from_element(cls, elem) -> ImcImvMessage:
        msg_type = _message_type(elem, "IMC-IMV-Message")
        b64 = elem.find(_NS + "Base64")
        if b64 is None:
            raise TnccsBatchError(TnccsErrorType.MALFORMED_BATCH, "Base64 is missing in IMC-IMV-Message")
        return cls(message_type=msg_type, body=_decode_base64(b64.text or "", "IMC-IMV-Message"))


class _TnccsMessage:
    """A TNCC-TNCS-Message: Type plus XML content (or Base64 for vendor types)."""

    __slots__ = ()
    ELEMENT: ClassVar[str] = "TNCC-TNCS-Message"
    MESSAGE_TYPE: ClassVar[int]

    @property
    def message_type(self) -> int:
        return self.MESSAGE_TYPE

    def content(self) -> _Node:
        raise NotImplementedError

    def node(self, layout: BatchLayout) -> _Node:
        return _Node(self.ELEMENT, children=(
            _Node("Type", text=_type_text(self.message_type, layout)),
            _Node("XML", children=(self.content(),))))


@dataclass(frozen=True, slots=True)
class TnccsRecommendation(_TnccsMessage):
    """TNCCS-Recommendation (Type 1): the TNCS's final access recommendation.

    ``type`` is a :class:`RecommendationType`, or the raw string when unknown.
    """

    type: Union[RecommendationType, str]
    MESSAGE_TYPE: ClassVar[int] = TnccsMessageType.RECOMMENDATION

    @classmethod
    def for_action(cls, rec: ActionRecommendation) -> TnccsRecommendation:
        """IF-TNCCS 1.1 has no "no recommendation": like strongSwan and
        tnc@fhh, it is sent as "none" (no access)."""
        return cls(type=_RECOMMENDATION_FOR_ACTION[ActionRecommendation(rec)])

    @property
    def action(self) -> ActionRecommendation | None:
        return _ACTION_FOR_RECOMMENDATION.get(self.type)

    def content(self) -> _Node:
        return _Node(TnccsMessageType.RECOMMENDATION.element, attrs=(("type", _value(self.type)),))

    @classmethod
    def from_content(cls, elem) -> TnccsRecommendation:
        value = elem.get("type")
        if value is None:
            raise TnccsBatchError(TnccsErrorType.MALFORMED_BATCH,
                                  "type property in TNCCS-Recommendation is missing")
        return cls(type=_enum_or_raw(RecommendationType, value))


_RECOMMENDATION_FOR_ACTION = {
    ActionRecommendation.ALLOW: RecommendationType.ALLOW,
    ActionRecommendation.ISOLATE: RecommendationType.ISOLATE,
    ActionRecommendation.NO_ACCESS: RecommendationType.NONE,
    ActionRecommendation.NO_RECOMMENDATION: RecommendationType.NONE,
}
_ACTION_FOR_RECOMMENDATION = {
    RecommendationType.ALLOW: ActionRecommendation.ALLOW,
    RecommendationType.ISOLATE: ActionRecommendation.ISOLATE,
    RecommendationType.NONE: ActionRecommendation.NO_ACCESS,
}


@dataclass(frozen=True, slots=True)
class TnccsError(_TnccsMessage):
    """TNCCS-Error (Type 2); every TNCCS-Error is fatal to the connection.

    ``type`` is a :class:`TnccsErrorType`, or the raw string when unknown.
    """

    type: Union[TnccsErrorType, str]
    message: str = ""
    MESSAGE_TYPE: ClassVar[int] = TnccsMessageType.ERROR

    def content(self) -> _Node:
        return _Node(TnccsMessageType.ERROR.element, attrs=(("type", _value(self.type)),),
                     text=self.message)

    @classmethod
    def from_content(cls, elem) -> TnccsError:
        value = elem.get("type")
        error_type = TnccsErrorType.OTHER if value is None else _enum_or_raw(TnccsErrorType, value)
        return cls(type=error_type, message=elem.text or "")


@dataclass(frozen=True, slots=True)
class TnccsPreferredLanguage(_TnccsMessage):
    """TNCCS-PreferredLanguage (Type 3): the client's Accept-Language value."""

    language: str
    MESSAGE_TYPE: ClassVar[int] = TnccsMessageType.PREFERRED_LANGUAGE

    def content(self) -> _Node:
        return _Node(TnccsMessageType.PREFERRED_LANGUAGE.element, text=self.language)

    @classmethod
    def from_content(cls, elem) -> TnccsPreferredLanguage:
        return cls(language=elem.text or "")


@dataclass(frozen=True, slots=True)
class ReasonString:
    """One ReasonString of a TNCCS-ReasonStrings message (``xml:lang``)."""

    reason: str
    language: str = ""


@dataclass(frozen=True, slots=True)
class TnccsReasonStrings(_TnccsMessage):
    """TNCCS-ReasonStrings (Type 4): why the recommendation is what it is."""

    reasons: tuple[ReasonString, ...]
    MESSAGE_TYPE: ClassVar[int] = TnccsMessageType.REASON_STRINGS

    def content(self) -> _Node:
        return _Node(TnccsMessageType.REASON_STRINGS.element, children=tuple(
            _Node("ReasonString", attrs=(("xml:lang", r.language),), text=r.reason)
            for r in self.reasons))

    @classmethod
    def from_content(cls, elem) -> TnccsReasonStrings:
        reasons = tuple(ReasonString(reason=child.text or "", language=child.get(_XML_LANG, ""))
                        for child in elem if _local(child.tag) == "ReasonString")
        if not reasons:
            raise TnccsBatchError(TnccsErrorType.MALFORMED_BATCH, "ReasonString tag not found")
        return cls(reasons=reasons)


@dataclass(frozen=True, slots=True)
class UnknownTnccsMessage(_TnccsMessage):
    """A TNCC-TNCS-Message nac does not interpret (TNCCS-TNCSContactInfo,
    vendor types), kept as it came: the element inside ``<XML>`` as markup,
    or the ``<Base64>`` content as bytes."""

    type_value: int
    xml: str | None = None
    base64: bytes | None = None

    @property
    def message_type(self) -> int:
        return self.type_value

    @property
    def name(self) -> str:
        try:
            return TnccsMessageType(self.type_value).element
        except ValueError:
            return f"TNCC-TNCS-Message type 0x{self.type_value:08x}"

    def node(self, layout: BatchLayout) -> _Node:
        body = (_base64_node(self.base64, layout) if self.base64 is not None
                else _Node("XML", children=(_Node("", raw=self.xml or ""),)))
        return _Node(self.ELEMENT, children=(_Node("Type", text=_type_text(self.type_value, layout)), body))


TnccsMessage = Union[ImcImvMessage, TnccsRecommendation, TnccsError, TnccsPreferredLanguage,
                     TnccsReasonStrings, UnknownTnccsMessage]

_CONTENT_PARSERS = {
    TnccsMessageType.RECOMMENDATION: TnccsRecommendation.from_content,
    TnccsMessageType.ERROR: TnccsError.from_content,
    TnccsMessageType.PREFERRED_LANGUAGE: TnccsPreferredLanguage.from_content,
    TnccsMessageType.REASON_STRINGS: TnccsReasonStrings.from_content,
}


# -- XML reading ---------------------------------------------------------------------------

def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


_HEX_TYPE = re.compile(r"[0-9A-Fa-f]{1,8}")


def _message_type(elem, where: str) -> int:
    type_elem = elem.find(_NS + "Type")
    if type_elem is None:
        raise TnccsBatchError(TnccsErrorType.MALFORMED_BATCH, f"Type is missing in {where}")
    text = (type_elem.text or "").strip()
    if not _HEX_TYPE.fullmatch(text):
        raise TnccsBatchError(TnccsErrorType.MALFORMED_BATCH, f"Type in {where} is not a hex number")
    return int(text, 16)


_WHITESPACE = re.compile(r"[ \t\r\n]+")


def _decode_base64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(_WHITESPACE.sub("", text), validate=True)
    except (binascii.Error, ValueError):
        raise TnccsBatchError(TnccsErrorType.MALFORMED_BATCH, f"invalid Base64 in {where}") from None


def _tnccs_message(elem) -> _TnccsMessage:
    msg_type = _message_type(elem, "TNCC-TNCS-Message")
    xml = elem.find(_NS + "XML")
    if xml is None:
        b64 = elem.find(_NS + "Base64")
        if b64 is None or msg_type in _CONTENT_PARSERS:
            raise TnccsBatchError(TnccsErrorType.MALFORMED_BATCH,
                                  "XML node is missing in TNCC-TNCS-Message")
        return UnknownTnccsMessage(type_value=msg_type,
                                   base64=_decode_base64(b64.text or "", "TNCC-TNCS-Message"))
    if len(xml) == 0:
        raise TnccsBatchError(TnccsErrorType.MALFORMED_BATCH, "XML node is empty")
    content = xml[0]
    parse = _CONTENT_PARSERS.get(msg_type)
    if parse is None:
        content.tail = None
        return UnknownTnccsMessage(type_value=msg_type, xml=ET.tostring(content, encoding="unicode"))
    expected = TnccsMessageType(msg_type).element
    if content.tag != _NS + expected:
        raise TnccsBatchError(TnccsErrorType.MALFORMED_BATCH,
                              f"expected '{expected}' node in TNCC-TNCS-Message of type {msg_type}")
    return parse(content)


class _BoundedTreeBuilder(ET.TreeBuilder):
    """A TreeBuilder refusing deep nesting (nothing in a batch needs it, and
    serialising unknown content back must not recurse without bound)."""

    def __init__(self):
        super().__init__()
        self._depth = 0

    def start(self, tag, attrs):
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise TnccsBatchError(TnccsErrorType.MALFORMED_BATCH,
                                  f"XML elements nested deeper than {MAX_DEPTH} levels")
        return super().start(tag, attrs)

    def end(self, tag):
        self._depth -= 1
        return super().end(tag)


def _parse_document(data: bytes):
    parser = XMLParser(target=_BoundedTreeBuilder(), forbid_dtd=True,
                       forbid_entities=True, forbid_external=True)
    try:
        parser.feed(data)
        return parser.close()
    except TnccsBatchError:
        raise
    except ET.ParseError as err:
        raise TnccsBatchError(TnccsErrorType.MALFORMED_BATCH, "failed to parse XML message",
                              position=getattr(err, "position", None)) from None
    except (ValueError, LookupError) as err:
        # defusedxml's refusals (DTD, entities, external references), bad encodings
        raise TnccsBatchError(TnccsErrorType.MALFORMED_BATCH,
                              f"refused XML message ({type(err).__name__})") from None


_LIBXML_ROOT = re.compile(rb"\s*(?:<\?xml[^>]*\?>\s*)?<TNCCS-Batch\s+xmlns=")


# -- batches ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TnccsBatch:
    """One IF-TNCCS 1.1 TNCCS-Batch (TNCCS_1.0.xsd).

    ``layout`` only decides the bytes :meth:`build` writes (parse detects
    it); ``ignored`` names the elements :meth:`parse` skipped (other
    namespaces, unknown names).  Neither takes part in equality.
    """

    batch_id: int
    recipient: Recipient
    messages: tuple[TnccsMessage, ...] = ()
    layout: BatchLayout = field(default=BatchLayout.HOSTAP, compare=False)
    ignored: tuple[str, ...] = field(default=(), compare=False, repr=False)

    # -- encoding -----------------------------------------------------------

    def _open_tag(self) -> str:
        if self.layout is BatchLayout.HOSTAP:
            attrs = (f'BatchId="{self.batch_id}" Recipient="{self.recipient.value}" '
                     f'xmlns="{TNCCS_NAMESPACE}" xmlns:xsi="{XSI_NAMESPACE}"')
        else:
            attrs = (f'xmlns="{TNCCS_NAMESPACE}" xmlns:xsi="{XSI_NAMESPACE}" '
                     f'BatchId="{self.batch_id}" Recipient="{self.recipient.value}"')
        return (f'<?xml version="1.0"?>\n<TNCCS-Batch {attrs} '
                f'xsi:schemaLocation="{TNCCS_NAMESPACE} {TNCCS_SCHEMA}"')

    def _close(self) -> str:
        return "\n</TNCCS-Batch>" if self.layout is BatchLayout.HOSTAP else "</TNCCS-Batch>\n"

    def fragment(self, msg: TnccsMessage) -> str:
        """``msg`` as this batch's layout writes it."""
        node = msg.node(self.layout)
        return node.write_hostap() if self.layout is BatchLayout.HOSTAP else node.write_libxml(1)

    @property
    def overhead(self) -> int:
        """Bytes of a batch around its messages."""
        return len(self._open_tag()) + 2 + len(self._close())

    def message_size(self, msg: TnccsMessage) -> int:
        return len(self.fragment(msg).encode("utf-8"))

    def build(self) -> bytes:
        body = "".join(self.fragment(m) for m in self.messages)
        if self.layout is BatchLayout.HOSTAP:
            text = f"{self._open_tag()}>\n{body}{self._close()}"
        elif self.messages:
            text = f"{self._open_tag()}>\n{body}{self._close()}"
        else:
            text = f"{self._open_tag()}/>\n"
        return text.encode("utf-8")

    # -- decoding -----------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes, *, max_size: int | None = None,
              max_messages: int = MAX_MESSAGES) -> TnccsBatch:
        """Decode one batch; raises only :class:`TnccsBatchError`.

        Elements outside the TNCCS namespace and unknown message elements
        are skipped (as strongSwan does); TNCC-TNCS-Messages of unknown
        types are kept as :class:`UnknownTnccsMessage`.
        """
        if not isinstance(data, bytes):
            data = bytes(data)
        if max_size is not None and len(data) > max_size:
            raise TnccsBatchError(TnccsErrorType.BATCH_TOO_LONG,
                                  f"batch of {len(data)} bytes exceeds the maximum of {max_size}")
        # whitespace before the XML declaration is not XML, but harmless
        root = _parse_document(data.lstrip(b" \t\r\n"))
        if root.tag != _NS + "TNCCS-Batch":
            if not root.tag.startswith(_NS):
                raise TnccsBatchError(TnccsErrorType.MALFORMED_BATCH, "TNCCS namespace not found")
            raise TnccsBatchError(TnccsErrorType.MALFORMED_BATCH,
                                  "wrong XML document type, expected TNCCS-Batch")
        batch_id = root.get("BatchId")
        if batch_id is None:
            raise TnccsBatchError(TnccsErrorType.INVALID_BATCH_ID, "BatchId is missing")
        batch_id = batch_id.strip()
        if not (batch_id.isascii() and batch_id.isdigit() and len(batch_id) <= 10
                and int(batch_id) <= 0x7FFFFFFF):
            raise TnccsBatchError(TnccsErrorType.INVALID_BATCH_ID, "BatchId is not a number")
        recipient = root.get("Recipient")
        if recipient is None:
            raise TnccsBatchError(TnccsErrorType.INVALID_RECIPIENT_TYPE, "Recipient is missing")
        try:
            recipient = Recipient(recipient.strip())
        except ValueError:
            raise TnccsBatchError(TnccsErrorType.INVALID_RECIPIENT_TYPE,
                                  "Recipient is neither 'TNCS' nor 'TNCC'") from None

        messages: list[TnccsMessage] = []
        ignored: list[str] = []
        for child in root:
            if len(messages) >= max_messages:
                raise TnccsBatchError(TnccsErrorType.BATCH_TOO_LONG,
                                      f"more than {max_messages} messages in one batch")
            if child.tag == _NS + ImcImvMessage.ELEMENT:
                messages.append(ImcImvMessage.from_element(child))
            elif child.tag == _NS + _TnccsMessage.ELEMENT:
                messages.append(_tnccs_message(child))
            else:
                ignored.append(child.tag)
        layout = BatchLayout.LIBXML if _LIBXML_ROOT.match(data) else BatchLayout.HOSTAP
        return cls(batch_id=int(batch_id), recipient=recipient, messages=tuple(messages),
                   layout=layout, ignored=tuple(ignored))


def looks_like_tnccs11(data: bytes) -> bool:
    """True when ``data`` opens like an XML document (TCG IF-TNCCS TLV
    Binding 2.0 §3.5: whitespace or '<' first, optionally after a UTF-8 BOM)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return bool(data) and data[0] in b"\t\n\r <"


# -- the server side of a connection -------------------------------------------------------

@implementer(ITnccsConnection)
class Tnccs11ServerConnection(TnccsServerConnection):
    """One IF-TNCCS 1.1 connection, TNCS role.

    Each client batch is answered with one batch: the IMVs' IMC-IMV
    messages while they are at work, then the TNCCS-Recommendation (with
    TNCCS-ReasonStrings) as the last batch, after which the connection is
    finished (the client's acknowledgement is an empty EAP-TNC message).
    When the IMVs have nothing to send, or the client answered their
    requests with no IMC-IMV message (no collectors), the IMVs are solicited
    at once, as hostapd's and strongSwan's TNCS do; ``core.max_rounds``
    bounds the rest.
    """

    PROTOCOL = "TNCCS 1.1"
    PA_MESSAGE = "IMC-IMV"
    LAYOUT = BatchLayout.HOSTAP
    """What nac writes: the layout wpa_supplicant's own TNCC writes, with the
    standard Recipient="TNCC" (hostapd writes "TNCS", a known quirk)."""

    ACKNOWLEDGEMENTS = True

    def __init__(self, core, connection_id: int, peer, limits):
        super().__init__(core, connection_id, peer, limits)
        self.batch_id = 0
        """BatchId of the last batch received or sent."""

    def _wrap_pa(self, msg: OutgoingPaMessage) -> ImcImvMessage | None:
        try:
            return ImcImvMessage.for_pa(msg.vendor_id, msg.subtype, msg.body)
        except ValueError:
            log.error("IMV {imv_id} message type 0x{vendor:06x}/0x{subtype:08x} cannot be carried "
                      "by IF-TNCCS 1.1 on Connection ID {cid}; dropped",
                      imv_id=msg.validator_id, vendor=msg.vendor_id, subtype=msg.subtype,
                      cid=self.connection_id)
            return None

    # -- processing ----------------------------------------------------------------

    async def _process(self, data: bytes) -> BatchOutcome:
        if self.finished:
            # the client's acknowledgement of the last batch, or a straggler
            return BatchOutcome(close=True, decision=self.decision)
        log.debug("received TNCCS Batch ({size} bytes) for Connection ID {cid}",
                 size=len(data), cid=self.connection_id)
        expected = self.batch_id + 1
        try:
            batch = TnccsBatch.parse(data, max_size=self.limits.max_batch_size)
            if batch.batch_id != expected:
                raise TnccsBatchError(TnccsErrorType.INVALID_BATCH_ID,
                                      f"BatchId {expected} expected, got {batch.batch_id}")
            if batch.recipient is not Recipient.TNCS:
                raise TnccsBatchError(TnccsErrorType.INVALID_RECIPIENT_TYPE,
                                      f"message recipient expected 'TNCS', got '{batch.recipient.value}'")
        except TnccsBatchError as err:
            log.warn("invalid TNCCS Batch on Connection ID {cid} from {peer}: {err}",
                     cid=self.connection_id, peer=self.peer.address, err=str(err),
                     log_limit=("invalid TNCCS Batch", self.peer.address))
            self.batch_id = expected
            return self._send_error(err)
        self.batch_id = batch.batch_id
        log.debug("processing TNCCS Batch #{id}", id=batch.batch_id)
        await self._begin()

        if await self._handle_messages(batch):
            log.warn("a fatal TNCCS-Error occurred, terminating Connection ID {cid}",
                     cid=self.connection_id)
            self._end()
            return BatchOutcome(close=True, decision=self.decision)

        await self._each_imv("batch_ending")

        pa_received = any(isinstance(m, ImcImvMessage) for m in batch.messages)
        # nothing to ask the client: there is nothing left to wait for
        verdict = await self._round_verdict(pa_received=pa_received, idle=not self._queue)
        if verdict is None:
            messages = self._take_fitting(reserve=0)
            if messages:
                self._sent_pa_last = True
                return BatchOutcome(batches=[self._build(messages)])
            verdict = await self._solicit()
        return self._send_recommendation(*verdict)

    async def _acknowledged(self) -> BatchOutcome:
        # As strongSwan's TNCS: an empty turn of the client takes no BatchId
        # (the client numbers only the batches it sends); nothing more will
        # come from its collectors, so the IMVs decide now and the next
        # batch carries the recommendation.
        if self.finished:
            return BatchOutcome(close=True, decision=self.decision)
        log.info("TNC client acknowledged TNCCS Batch #{id} without a batch on Connection ID {cid}; "
                 "soliciting recommendations", id=self.batch_id, cid=self.connection_id)
        return self._send_recommendation(*await self._solicit())

    async def _handle_messages(self, batch: TnccsBatch) -> bool:
        """Dispatch the messages of a batch; True if the client sent a TNCCS-Error."""
        for tag in batch.ignored:
            log.info("ignoring unknown message node '{tag}'", tag=tag,
                     log_limit=("unknown TNCCS message node", self.peer.address))
        fatal = False
        for msg in batch.messages:
            if isinstance(msg, ImcImvMessage):
                await self._receive_imc_imv(msg)
            elif isinstance(msg, TnccsPreferredLanguage):
                log.debug("setting preferred language to '{lang}'", lang=msg.language)
                self.preferred_language = msg.language
            elif isinstance(msg, TnccsError):
                log.warn("received '{type}' TNCCS-Error: {message}",
                         type=_value(msg.type), message=msg.message,
                         log_limit=("TNCCS-Error from a client", self.peer.address))
                fatal = True
            elif isinstance(msg, TnccsRecommendation):
                log.warn("ignoring TNCCS-Recommendation message from TNC client",
                         log_limit=("misplaced TNCCS message", self.peer.address))
            elif isinstance(msg, TnccsReasonStrings):
                log.warn("ignoring TNCCS-ReasonStrings message from TNC client",
                         log_limit=("misplaced TNCCS message", self.peer.address))
            else:
                log.info("ignoring {name} message", name=msg.name,
                         log_limit=("misplaced TNCCS message", self.peer.address))
        return fatal

    async def _receive_imc_imv(self, msg: ImcImvMessage) -> None:
        vendor, subtype = msg.vendor_id, msg.subtype
        if vendor == ANY_VENDOR or subtype == ANY_SUBTYPE:
            log.warn("ignoring IMC-IMV message with wildcard type 0x{vendor:06x}/0x{subtype:02x}",
                     vendor=vendor, subtype=subtype, log_limit=("invalid IMC-IMV message", self.peer.address))
            return
        if len(msg.body) > self.limits.max_message_size:
            log.warn("ignoring IMC-IMV message of {size} bytes, above the {limit}-byte limit",
                     size=len(msg.body), limit=self.limits.max_message_size,
                     log_limit=("invalid IMC-IMV message", self.peer.address))
            return
        log.debug("handling IMC-IMV message type 0x{vendor:06x}/0x{subtype:02x}",
                  vendor=vendor, subtype=subtype)
        # IF-TNCCS 1.1 names neither the collector nor the verifier
        await self._deliver_pa(vendor_id=vendor, subtype=subtype, collector_id=ANY_IMC_ID,
                               validator_id=ANY_IMC_ID, exclusive=False, body=msg.body)

    # -- building the reply ----------------------------------------------------------

    def _send_recommendation(self, rec: ActionRecommendation, ev: EvaluationResult) -> BatchOutcome:
        final: list[TnccsMessage] = [TnccsRecommendation.for_action(rec)]
        reasons = tuple(ReasonString(reason=c.verdict.reason, language=c.verdict.reason_language)
                        for c in self._imv_conns if c.verdict.reason)
        if reasons:
            final.append(TnccsReasonStrings(reasons=reasons))
        sizer = TnccsBatch(self.batch_id + 1, Recipient.TNCC, layout=self.LAYOUT)
        pending = self._take_fitting(reserve=sum(sizer.message_size(m) for m in final))
        if self._queue:
            # Not everything fits with the recommendation: flush messages first.
            self._queue[:0] = pending
            pending = self._take_fitting(reserve=0)
            if pending:
                self._sent_pa_last = True
                return BatchOutcome(batches=[self._build(pending)])
            # (what could not fit any batch has been dropped; the queue is empty)
        # TNCCS_1.0.xsd: TNCC-TNCS-Messages come before IMC-IMV-Messages
        data = self._build(final + pending)
        decision = self._conclude(rec, ev)
        self._end()
        return BatchOutcome(batches=[data], decision=decision, close=True)

    def _take_fitting(self, reserve: int) -> list[ImcImvMessage]:
        sizer = TnccsBatch(self.batch_id + 1, Recipient.TNCC, layout=self.LAYOUT)
        room = self.limits.max_batch_size - sizer.overhead - reserve
        taken: list[ImcImvMessage] = []
        while self._queue:
            size = sizer.message_size(self._queue[0])
            if size > room:
                if not taken and reserve == 0:
                    # a single message larger than a batch can never be sent
                    self._queue.pop(0)
                    log.error("IMC-IMV message of {size} bytes does not fit a TNCCS Batch; dropped",
                              size=size)
                    continue
                break
            taken.append(self._queue.pop(0))
            room -= size
        if self._queue:
            log.debug("queued {n} IMC-IMV message(s) for the next batch", n=len(self._queue))
        return taken

    def _build(self, messages) -> bytes:
        self.batch_id += 1
        log.debug("creating TNCCS Batch #{id}", id=self.batch_id)
        data = TnccsBatch(self.batch_id, Recipient.TNCC, tuple(messages), layout=self.LAYOUT).build()
        log.debug("sending TNCCS Batch ({size} bytes) for Connection ID {cid}",
                 size=len(data), cid=self.connection_id)
        return data

    def _send_error(self, err: TnccsBatchError) -> BatchOutcome:
        data = self._build([err.to_message()])
        self._end()
        return BatchOutcome(batches=[data], close=True, decision=self.decision)
