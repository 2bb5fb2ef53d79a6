"""Combining the IMVs' action recommendations into one decision.

The semantics are those of strongSwan's ``tnc_imv_recommendations`` (read for
facts, written anew): every IMV of a connection holds one entry; the decision
exists once each entry has been provided; the first IMV's values seed the fold
and the others are merged by the configured :class:`RecommendationPolicy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nac.ifimv import ActionRecommendation, EvaluationResult, RecommendationPolicy

A = ActionRecommendation
E = EvaluationResult


def stricter_recommendation(current: A, added: A) -> A:
    """DEFAULT policy: the most restrictive recommendation wins."""
    if current is A.NO_RECOMMENDATION:
        return added
    if current is A.ALLOW and added in (A.NO_ACCESS, A.ISOLATE):
        return added
    if current is A.ISOLATE and added is A.NO_ACCESS:
        return added
    return current


def worse_evaluation(current: E, added: E) -> E:
    """DEFAULT policy: the worst evaluation wins; ERROR outranks non-compliance."""
    if current is E.DONT_KNOW:
        return added
    order = (E.COMPLIANT, E.NONCOMPLIANT_MINOR, E.NONCOMPLIANT_MAJOR, E.ERROR)
    if added in order and current in order and order.index(added) > order.index(current):
        return added
    return current


def _any_recommendation(current: A, added: A) -> A:
    # ANY policy: one IMV allowing is enough; isolate beats no access.
    if added is A.ALLOW:
        return added
    if added is A.ISOLATE and current is not A.ALLOW:
        return added
    if added is A.NO_ACCESS and current is A.NO_RECOMMENDATION:
        return added
    return current


def _any_evaluation(current: E, added: E) -> E:
    if added is E.COMPLIANT:
        return added
    if added is E.NONCOMPLIANT_MINOR and current is not E.COMPLIANT:
        return added
    if added is E.NONCOMPLIANT_MAJOR and current not in (E.COMPLIANT, E.NONCOMPLIANT_MINOR):
        return added
    if added is E.ERROR and current is E.DONT_KNOW:
        return added
    return current


@dataclass(slots=True)
class ImvVerdict:
    """What one IMV said about one connection."""

    imv_id: int
    imv_name: str
    provided: bool = False
    recommendation: A = A.NO_RECOMMENDATION
    evaluation: E = E.DONT_KNOW
    reason: str = ""
    reason_language: str = ""
    remediation: list = field(default_factory=list)
    forced: bool = False
    """True when the core filled in the no-result verdict because the IMV gave
    none before the round limit."""


def combine(policy: RecommendationPolicy, verdicts: list[ImvVerdict]) -> tuple[A, E] | None:
    """The final (recommendation, evaluation), or None while any IMV is pending.

    With no IMVs at all there is nobody to vouch for the endpoint: the result
    is (NO_RECOMMENDATION, DONT_KNOW), which the PB-TNC layer maps to Access
    Denied, as strongSwan does.
    """
    if not verdicts:
        return A.NO_RECOMMENDATION, E.DONT_KNOW
    if not all(v.provided for v in verdicts):
        return None
    rec, ev = verdicts[0].recommendation, verdicts[0].evaluation
    for v in verdicts[1:]:
        if policy is RecommendationPolicy.DEFAULT:
            rec = stricter_recommendation(rec, v.recommendation)
            ev = worse_evaluation(ev, v.evaluation)
        elif policy is RecommendationPolicy.ALL:
            if v.recommendation is not rec:
                rec = A.NO_RECOMMENDATION
            if v.evaluation is not ev:
                ev = E.DONT_KNOW
        else:
            rec = _any_recommendation(rec, v.recommendation)
            ev = _any_evaluation(ev, v.evaluation)
    return rec, ev


def choose_language(accept_language: str, available: list[str]) -> str | None:
    """Pick from ``available`` language tags the best match for an HTTP-style
    Accept-Language value (RFC 2616 §14.4 as used by PB-Language-Preference).

    Returns None when nothing matches; callers then fall back to their first
    language.
    """
    prefs: list[tuple[float, int, str]] = []
    for pos, item in enumerate(accept_language.split(",")):
        item = item.strip()
        if not item:
            continue
        tag, _, params = item.partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if q > 0:
            prefs.append((-q, pos, tag.strip().lower()))
    prefs.sort()
    lowered = {a.lower(): a for a in available}
    for _, _, tag in prefs:
        if tag == "*" and available:
            return available[0]
        if tag in lowered:
            return lowered[tag]
        for low, orig in lowered.items():
            if low.split("-")[0] == tag or tag.split("-")[0] == low:
                return orig
    return None
