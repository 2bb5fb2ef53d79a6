"""The PA-TNC Error replies (RFC 5792 §4.2.8) for a PA-TNC message we refuse."""

from __future__ import annotations

from collections.abc import Sequence

from nac.entropy import random_id32
from nac.pa.ietf import PaTncErrorAttribute
from nac.pa.message import PaAttribute, PaMessage, PaTncError

__all__ = ["attribute_type_not_supported_error", "pa_error_reply"]


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
        attributes: tuple[PaAttribute, ...] = (source.to_attribute(),)
    else:
        header = raw[:8] if raw else source.header
        refused = source.unsupported_noskip() if unsupported is None else unsupported
        attributes = tuple(attribute_type_not_supported_error(header, a) for a in refused)
    if message_id is None:
        message_id = random_id32()
    return PaMessage(message_id, attributes).build()
