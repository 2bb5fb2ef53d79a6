"""The PA-TNC Error replies (RFC 5792 §4.2.8) for a PA-TNC message we refuse."""

from __future__ import annotations

from collections.abc import Sequence

from nac.entropy import random_id32
from nac.pa.ietf import PaTncErrorAttribute
from nac.pa.message import MESSAGE_HEADER_SIZE, PaAttribute, PaMessage, PaTncError, PaTncErrorCode

__all__ = ["attribute_type_not_supported_error", "error_attribute", "pa_error_reply"]


def error_attribute(error: PaTncError) -> PaTncErrorAttribute:
    """The IETF PA-TNC Error attribute (RFC 5792 §4.2.8) reporting ``error``."""
    header = error.message_header[:MESSAGE_HEADER_SIZE].ljust(MESSAGE_HEADER_SIZE, b"\0")
    if error.code == PaTncErrorCode.VERSION_NOT_SUPPORTED:
        return PaTncErrorAttribute.version_not_supported(header)
    if error.code == PaTncErrorCode.ATTRIBUTE_TYPE_NOT_SUPPORTED and error.attribute_header:
        return PaTncErrorAttribute.attribute_type_not_supported(header, error.attribute_header)
    return PaTncErrorAttribute.invalid_parameter(header, error.offset)


def attribute_type_not_supported_error(message_header: bytes, attribute: PaAttribute) -> PaTncErrorAttribute:
    """Attribute Type Not Supported for ``attribute`` (normally an unknown NOSKIP one).

    ``message_header``: the refused message's first 8 bytes (``PaMessage.header``).
    """
    return PaTncErrorAttribute.attribute_type_not_supported(message_header, attribute.header)


def pa_error_reply(
    source: PaTncError | PaMessage,
    *,
    unsupported: Sequence[PaAttribute] | None = None,
    raw: bytes = b"",
    message_id: int | None = None,
) -> bytes:
    """A whole PA-TNC message carrying the error attribute(s), ready to send.

    ``source`` is the :class:`PaTncError` raised while parsing (one error
    attribute), or the parsed :class:`PaMessage` whose ``unsupported`` NOSKIP
    attributes (default: all of them) each get an Attribute Type Not
    Supported error; ``raw``, when given, is that message's bytes.  A
    :class:`PaTncError` with ``in_error_attribute`` set should not be
    answered at all (§4.2.8): check before calling.
    """
    if isinstance(source, PaTncError):
        attributes: tuple[PaAttribute, ...] = (error_attribute(source),)
    else:
        header = raw[:8] if raw else source.header
        refused = source.unsupported_noskip() if unsupported is None else unsupported
        attributes = tuple(attribute_type_not_supported_error(header, a) for a in refused)
    if message_id is None:
        message_id = random_id32()
    return PaMessage(message_id, attributes).build()
