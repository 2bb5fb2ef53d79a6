"""Building the PA-TNC Error reply (RFC 5792 §4.2.8) for a message we refuse."""

from __future__ import annotations

import itertools

from nac.pa.ietf import PaTncErrorAttribute
from nac.pa.message import (
    ATTRIBUTE_HEADER_SIZE,
    PaMessage,
    PaTncError,
    PaTncErrorCode,
    UnknownAttribute,
)

_message_ids = itertools.count(1)


def pa_error_reply(source, *, unsupported: tuple[UnknownAttribute, ...] = (), raw: bytes = b"") -> bytes:
    """The bytes of a PA-TNC message carrying the error attribute(s).

    ``source`` is either the :class:`PaTncError` raised while parsing, or the
    parsed :class:`PaMessage` holding ``unsupported`` NOSKIP attributes (one
    Attribute Type Not Supported error each; ``raw`` is the message's bytes,
    whose header the errors copy).
    """
    if isinstance(source, PaTncError):
        attr = PaTncErrorAttribute(error_vendor=0, error_code=source.code,
                                   message_header=source.message_header, noskip=True,
                                   offset=source.offset if source.code == PaTncErrorCode.INVALID_PARAMETER else None,
                                   max_version=1, min_version=1)
        attrs = (attr,)
    else:
        header = raw[:8]
        attrs = tuple(PaTncErrorAttribute(error_vendor=0, error_code=PaTncErrorCode.ATTRIBUTE_TYPE_NOT_SUPPORTED,
                                          message_header=header, noskip=True,
                                          attribute_header=a.build()[:ATTRIBUTE_HEADER_SIZE])
                      for a in unsupported)
    return PaMessage(message_id=next(_message_ids) & 0xFFFFFFFF, attributes=attrs).build()
