"""PA-TNC (RFC 5792) messages and the attribute namespaces nac knows."""

from nac.pa.message import (
    ATTRIBUTE_REGISTRY,
    PaAttribute,
    PaMessage,
    PaSubtype,
    PaTncError,
    PaTncErrorCode,
    PaVendor,
    UnknownAttribute,
    register_attribute,
    vendor_name,
)
from nac.pa import ietf, ita, swima, tcg  # noqa: F401  (fill the registry)
from nac.pa.errors import pa_error_reply

__all__ = ["ATTRIBUTE_REGISTRY", "PaAttribute", "PaMessage", "PaSubtype", "PaTncError",
           "PaTncErrorCode", "PaVendor", "UnknownAttribute", "pa_error_reply", "register_attribute",
           "vendor_name", "ietf", "ita", "swima", "tcg"]
