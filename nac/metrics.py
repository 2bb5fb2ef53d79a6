"""nac's Prometheus metrics (prometheus-client; every name starts with
``nac_``), served by the HTTP transport at ``/metrics``.

The TNCS core reports each decision here (:func:`assessment_decided`); this
module, not the sans-IO core, reads the clock for the durations.  The
values are this process's: nac's worker processes keep their own, which
``/metrics`` of the main process does not sum yet.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["REGISTRY", "assessment_decided", "assessment_started", "exposition"]

REGISTRY = CollectorRegistry(auto_describe=True)

ASSESSMENTS = Counter("nac_assessments", "Assessments decided, by transport and decision (allowed, isolate, denied)",
                      ["transport", "decision"], registry=REGISTRY)
DURATION = Histogram("nac_assessment_duration_seconds", "Time from an assessment's first batch to its decision",
                     ["transport"], registry=REGISTRY,
                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
VERDICTS = Counter("nac_imv_verdicts", "IMV recommendations, by IMV and recommendation", ["imv", "recommendation"],
                   registry=REGISTRY)
OPEN = Gauge("nac_assessments_open", "Assessments in progress in this process", registry=REGISTRY)
DB_LATENCY = Histogram("nac_db_probe_seconds", "Time the policy database took to answer /health and /metrics probes",
                       registry=REGISTRY, buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5))

_started: dict[int, float] = {}


def assessment_started(connection_id: int) -> None:
    if connection_id not in _started and len(_started) < 100_000:
        _started[connection_id] = time.monotonic()
        OPEN.inc()


def assessment_decided(connection_id: int, transport: str, decision) -> None:
    ASSESSMENTS.labels(transport, decision.access).inc()
    for verdict in decision.imv_results:
        VERDICTS.labels(verdict.imv_name, verdict.recommendation.label).inc()
    begun = _started.pop(connection_id, None)
    if begun is not None:
        OPEN.dec()
        DURATION.labels(transport).observe(time.monotonic() - begun)


def assessment_ended(connection_id: int) -> None:
    if _started.pop(connection_id, None) is not None:
        OPEN.dec()


def exposition() -> bytes:
    """The text format of every metric."""
    return generate_latest(REGISTRY)
