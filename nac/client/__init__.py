"""nac's TNC client: a sans-IO PB-TNC client, IMCs measuring the host, and
PT-TLS over real TLS (``nac-pt-tls-client``), for tests, benchmarks and
operators."""

from nac.client.imc import IImc, IImcConnection, ImvAssessment, PaTncImc, ReceivedPaMessage
from nac.client.pb_client import AssessmentOutcome, ClientStep, PbTncClient, Reason, Remediation

__all__ = [
    "AssessmentOutcome",
    "ClientStep",
    "IImc",
    "IImcConnection",
    "ImvAssessment",
    "PaTncImc",
    "PbTncClient",
    "Reason",
    "ReceivedPaMessage",
    "Remediation",
]
