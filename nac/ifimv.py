"""IF-IMV values shared by the TNCS core and the IMVs (TCG IF-IMV 1.3, §3.2).

The IMV API of nac is the Python form of IF-IMV: the numeric values below are
the ones the TCG specification (and strongSwan's ``tncifimv.h``) defines, so
logs and stored results read the same as in other TNC implementations.
"""

from __future__ import annotations

import enum


class ActionRecommendation(enum.IntEnum):
    """TNC_IMV_Action_Recommendation."""

    ALLOW = 0
    NO_ACCESS = 1
    ISOLATE = 2
    NO_RECOMMENDATION = 3

    @property
    def label(self) -> str:
        return _ACTION_LABELS[self]


_ACTION_LABELS = {
    ActionRecommendation.ALLOW: "allow",
    ActionRecommendation.NO_ACCESS: "no access",
    ActionRecommendation.ISOLATE: "isolate",
    ActionRecommendation.NO_RECOMMENDATION: "no recommendation",
}


class EvaluationResult(enum.IntEnum):
    """TNC_IMV_Evaluation_Result (same numbering as the PB-TNC Assessment Result)."""

    COMPLIANT = 0
    NONCOMPLIANT_MINOR = 1
    NONCOMPLIANT_MAJOR = 2
    ERROR = 3
    DONT_KNOW = 4

    @property
    def label(self) -> str:
        return _EVALUATION_LABELS[self]


_EVALUATION_LABELS = {
    EvaluationResult.COMPLIANT: "compliant",
    EvaluationResult.NONCOMPLIANT_MINOR: "non-compliant minor",
    EvaluationResult.NONCOMPLIANT_MAJOR: "non-compliant major",
    EvaluationResult.ERROR: "error",
    EvaluationResult.DONT_KNOW: "don't know",
}


class ConnectionState(enum.IntEnum):
    """TNC_ConnectionState, notified to every IMV for every connection."""

    CREATE = 0
    HANDSHAKE = 1
    ACCESS_ALLOWED = 2
    ACCESS_ISOLATED = 3
    ACCESS_NONE = 4
    DELETE = 5

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")


class RecommendationPolicy(enum.Enum):
    """How the recommendations of several IMVs are combined (strongSwan's
    ``libtnccs.plugins.tnc-imv.recommendation_policy``)."""

    DEFAULT = "default"
    ANY = "any"
    ALL = "all"


ANY_VENDOR = 0xFFFFFF
ANY_SUBTYPE = 0xFF
"""IF-IMV wildcards (TNC_VENDORID_ANY, TNC_SUBTYPE_ANY) for PA message type
subscriptions.  PB-TNC subtypes are 32 bits wide; 0xFFFFFFFF also matches all."""
ANY_SUBTYPE_LONG = 0xFFFFFFFF

ANY_IMC_ID = 0xFFFF
"""PB-PA Posture Collector/Validator Identifier meaning 'not specified'."""
