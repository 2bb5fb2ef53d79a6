"""PA-TNC (RFC 5792): messages, the attribute namespaces nac knows, segmentation.

Importing this package registers every attribute class (IETF incl. SWIMA,
TCG with PTS, ITA-HSR, PWG), so :meth:`PaMessage.parse` knows them all.
"""

from nac.pa import ietf, ita, pwg, swima, tcg, tcg_pts  # noqa: F401  (fill the registry)
from nac.pa.errors import attribute_type_not_supported_error, error_attribute, pa_error_reply
from nac.pa.ietf import IetfAttributeType, PaTncErrorAttribute
from nac.pa.message import (
    ATTRIBUTE_HEADER_SIZE,
    ATTRIBUTE_REGISTRY,
    MESSAGE_HEADER_SIZE,
    PA_TNC_VERSION,
    PaAttribute,
    PaMessage,
    PaSubtype,
    PaTncError,
    PaTncErrorCode,
    PaVendor,
    UnknownAttribute,
    attribute_type_name,
    parse_attribute,
    register_attribute,
    vendor_name,
)
from nac.pa.segmentation import Reassembler, Segmenter
from nac.pa.tcg import MaxAttributeSizeRequest, MaxAttributeSizeResponse, NextSegment, SegmentEnvelope

__all__ = [
    "ATTRIBUTE_HEADER_SIZE",
    "ATTRIBUTE_REGISTRY",
    "IetfAttributeType",
    "MESSAGE_HEADER_SIZE",
    "MaxAttributeSizeRequest",
    "MaxAttributeSizeResponse",
    "NextSegment",
    "PA_TNC_VERSION",
    "PaAttribute",
    "PaMessage",
    "PaSubtype",
    "PaTncError",
    "PaTncErrorAttribute",
    "PaTncErrorCode",
    "PaVendor",
    "Reassembler",
    "SegmentEnvelope",
    "Segmenter",
    "UnknownAttribute",
    "attribute_type_name",
    "attribute_type_not_supported_error",
    "error_attribute",
    "ietf",
    "ita",
    "pa_error_reply",
    "parse_attribute",
    "pwg",
    "register_attribute",
    "swima",
    "tcg",
    "tcg_pts",
    "vendor_name",
]
