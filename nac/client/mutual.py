"""Mutual PB-TNC from nac's TNC client side (the protocol is described in
:mod:`nac.tnccs.mutual`).

- :class:`CollectorClients` gives nac's server its client role: PB-TNC
  clients whose collectors answer an endpoint's IMVs
  (:class:`nac.interfaces.IMutualClientFactory`, built from ``[nac]
  mutual_collectors``).
- :class:`MutualPbTncClient` is nac's TNC client asking for mutual PB-TNC
  (``nac-pt-tls-client --mutual``, ``nac-eap-client --mutual``): its
  collectors answer the server's IMVs as :class:`PbTncClient`'s do, and
  when the server takes part, IMVs of its own judge the server in the
  second exchange.  It alternates between its two roles as strongSwan's
  client does: after a batch of the server's TNCS it sends its own TNCS's
  next batch, after a batch of the server's client role its own client
  role's, until one exchange is over; the last batch is its client role's
  CLOSE, once both are.
- :class:`MutualVerdict` is what those IMVs said about the server.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.python.failure import Failure
from zope.interface import implementer

from nac.client.collectors import make_collectors
from nac.client.pb_client import DEFAULT_MAX_ROUNDS, AssessmentOutcome, ClientStep, PbTncClient
from nac.ifimv import RecommendationPolicy
from nac.interfaces import IMutualClientFactory
from nac.log import Logger
from nac.pb import BatchType, Direction, PbBatch, PbTncError
from nac.tnccs.assessment import Decision, PeerInfo, TransportLimits
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvLoadError, ImvManager, load_imv
from nac.tnccs.mutual import EndpointTncsConnection, from_a_server

__all__ = ["CollectorClients", "MutualPbTncClient", "MutualVerdict", "load_imvs"]

log = Logger(namespace="nac.client.mutual")

_ACCESS_LABELS = {"allowed": "Access Allowed", "isolate": "Quarantined", "denied": "Access Denied"}


@implementer(IMutualClientFactory)
class CollectorClients:
    """The client role of nac's server in mutual PB-TNC: one responding
    :class:`PbTncClient` per connection, all with the same collectors
    (made once; they keep their per-connection state on the connection).

    The collectors read small files of the host (the dpkg status file is
    parsed again only when it changed) in the server's reactor thread, as
    the client's do in its own."""

    def __init__(self, names: Sequence[str], *, language: str = "en",
                 settings: Mapping[str, Mapping[str, Any]] | None = None):
        self.collectors = tuple(names)
        self.language = language
        self._imcs = make_collectors(self.collectors, settings=settings)

    def open_client(self, connection_id: int, limits: TransportLimits, max_rounds: int) -> PbTncClient:
        return PbTncClient(self._imcs, max_batch_size=limits.max_batch_size,
                           max_message_size=limits.max_message_size, language=self.language,
                           max_rounds=max_rounds, connection_id=connection_id, responder=True)


def _default_options(name: str, declared) -> dict[str, Any]:
    return {option.name.lower(): copy.deepcopy(option.default) for option in declared}


def load_imvs(names: Sequence[str]) -> list:
    """The IMVs judging the server, by registered name (``os``) or dotted
    path, each with its default options: the client has no configuration
    file and no policy store.  ValueError saying which failed."""
    imvs = []
    for name in names:
        try:
            imvs.append(load_imv(name, _default_options))
        except ImvLoadError as exc:
            raise ValueError(str(exc)) from None
    return imvs


@dataclasses.dataclass(frozen=True, slots=True)
class MutualVerdict:
    """What this side's IMVs said about the server in mutual PB-TNC.

    ``agreed``: whether the server took part; ``decision``: the combined
    verdict (a nac.tnccs.assessment.Decision), None when there was none;
    ``error``: why this exchange failed, if it did.
    """

    agreed: bool
    decision: Decision | None = None
    error: str | None = None

    @property
    def recommendation_label(self) -> str | None:
        """The PB-TNC Access Recommendation's name, as for the endpoint."""
        return None if self.decision is None else _ACCESS_LABELS[self.decision.access]

    @property
    def assessment_label(self) -> str | None:
        return None if self.decision is None else self.decision.evaluation.label

    def to_json(self) -> dict[str, Any]:
        """``agreed``, ``recommendation`` and ``assessment`` (the words of
        the endpoint's own result), ``reasons``, ``imv_results`` (each IMV's
        ``recommendation`` and ``assessment``) and ``error`` when set."""
        out: dict[str, Any] = {
            "agreed": self.agreed,
            "recommendation": self.recommendation_label,
            "assessment": self.assessment_label,
            "reasons": [{"text": text, "language": language}
                        for text, language in (self.decision.reasons if self.decision else ())],
            "imv_results": [{"imv_id": v.imv_id, "imv": v.imv_name, "recommendation": v.recommendation.label,
                             "assessment": v.evaluation.label}
                            for v in (self.decision.imv_results if self.decision else ())],
        }
        if self.error is not None:
            out["error"] = self.error
        return out


class MutualPbTncClient:
    """nac's TNC client asking for mutual PB-TNC.

    The face of :class:`PbTncClient` (:meth:`start`, :meth:`receive_batch`
    giving a ClientStep, :meth:`abort`, ``finished``, ``outcome``), so the
    PT-TLS and PT-EAP clients carry either; ``outcome.mutual`` is the
    :class:`MutualVerdict`.  ``imvs`` are IImv providers judging the server
    (``server`` names it in logs).  They run without a policy store and
    must answer at once: a client has no thread pool to wait for.
    """

    def __init__(self, imcs, imvs, *, max_batch_size: int, max_message_size: int, language: str = "en",
                 max_rounds: int = DEFAULT_MAX_ROUNDS, policy: RecommendationPolicy = RecommendationPolicy.DEFAULT,
                 server: str = "the server"):
        self.client = PbTncClient(imcs, max_batch_size=max_batch_size, max_message_size=max_message_size,
                                  language=language, max_rounds=max_rounds, mutual=True)
        self.connection_id = self.client.connection_id
        self._core = TnccsCore(ImvManager(imvs), policy=policy, languages=(language,), max_rounds=max_rounds,
                               connection_ids=(self.connection_id, 1),
                               connection_classes={"pb-tnc": EndpointTncsConnection})
        self._server = PeerInfo(transport="pb-tnc", address=server)
        self._limits = TransportLimits(max_batch_size=max_batch_size, max_message_size=max_message_size)
        self.tncs: EndpointTncsConnection | None = None
        """This side's TNCS, once the server agreed to mutual PB-TNC."""
        self.finished = False
        self._client_turn: bytes | None = None  # each role's next batch, waiting for its turn
        self._tncs_turn: bytes | None = None
        self._error: str | None = None

    @property
    def outcome(self) -> AssessmentOutcome:
        verdict = MutualVerdict(agreed=self.client.peer_mutual,
                                decision=self.tncs.decision if self.tncs is not None else None,
                                error=self._error)
        return dataclasses.replace(self.client.outcome, mutual=verdict)

    def start(self) -> bytes:
        """The first CDATA batch, announcing mutual PB-TNC."""
        return self.client.start()

    def receive_batch(self, data: bytes) -> ClientStep:
        """Process one whole batch from the server; says what to send next."""
        if self.finished:
            return ClientStep(close=True, outcome=self.outcome)
        data = bytes(data)
        if self.tncs is not None and not from_a_server(data):
            return self._for_tncs(data)
        return self._for_client(data)

    def abort(self, reason: str) -> AssessmentOutcome:
        """The transport went away or timed out: end without another batch."""
        if not self.finished:
            self._end(reason)
        return self.outcome

    # -- the two roles ------------------------------------------------------------------

    def _for_client(self, data: bytes) -> ClientStep:
        if self.client.finished or self._client_turn is not None:
            # after its RESULT, or before this side's client role had its turn
            return self._refuse("the server's TNCS", Direction.TO_SERVER)
        step = self.client.receive_batch(data)
        if step.close and not step.answers_result:
            # an error, or the server's CLOSE: the connection is over
            return self._over(step.batch)
        if self.tncs is None:
            if not self.client.peer_mutual:
                # one exchange, as without mutual
                if step.close:
                    self.finished = True
                    return dataclasses.replace(step, outcome=self.outcome)
                return step
            log.info("the server takes part in mutual PB-TNC: judging it on Connection ID {cid}",
                     cid=self.connection_id)
            self._client_turn = step.batch
            self.tncs = self._core.open_connection(self._server, self._limits)
            opened = self._now(self.tncs.open())
            if opened is None:
                return self._over(None)
            self._tncs_turn = opened.batches[0]
            return self._send_tncs()
        self._client_turn = step.batch
        if not self.tncs.finished:
            return self._send_tncs()
        return self._send_client()

    def _for_tncs(self, data: bytes) -> ClientStep:
        if self.tncs.finished or self._tncs_turn is not None:
            # after its CLOSE, or before this side's TNCS had its turn
            return self._refuse("the server's client role", Direction.TO_CLIENT)
        outcome = self._now(self.tncs.receive_batch(data))
        if outcome is None:
            return self._over(None)
        batch = outcome.batches[0] if outcome.batches else None
        if outcome.close and batch is not None:
            # this side's TNCS closes with a PB-Error: so does the connection
            self._error = self._error or "the server's client role broke the PB-TNC protocol"
            return self._over(batch)
        if not outcome.close:
            self._tncs_turn = batch
        if self.client.finished and not self.tncs.finished:
            return self._send_tncs()
        return self._send_client()

    def _send_tncs(self) -> ClientStep:
        batch, self._tncs_turn = self._tncs_turn, None
        return ClientStep(batch=batch)

    def _send_client(self) -> ClientStep:
        batch, self._client_turn = self._client_turn, None
        if self.client.finished:
            # its CLOSE, once both exchanges are over: the last batch
            return self._over(batch)
        return ClientStep(batch=batch)

    # -- ending -------------------------------------------------------------------------

    def _now(self, d):
        """The result of a Deferred of this side's TNCS, which must have
        fired; None (with the reason kept) when it has not or failed."""
        results: list = []
        d.addBoth(results.append)
        if not results:
            self._error = "the IMVs judging the server did not answer at once"
        elif isinstance(results[0], Failure):
            log.failure("this side's TNCS failed on Connection ID {cid}", results[0], cid=self.connection_id)
            self._error = f"this side's TNCS failed: {results[0].getErrorMessage()}"
        else:
            return results[0]
        return None

    def _refuse(self, who: str, direction: Direction) -> ClientStep:
        """A batch out of turn: CLOSE with a PB-TNC Unexpected Batch Type
        from the role it was for (``direction``)."""
        reason = f"{who} sent a batch out of turn"
        log.warn("{reason} on Connection ID {cid}", reason=reason, cid=self.connection_id)
        self._error = self._error or reason
        error = PbTncError.unexpected_batch_type(reason).to_message()
        return self._over(PbBatch(BatchType.CLOSE, direction, (error,)).build())

    def _over(self, batch: bytes | None) -> ClientStep:
        self._end("the PB-TNC connection ended")
        return ClientStep(batch=batch, close=True, outcome=self.outcome)

    def _end(self, reason: str) -> None:
        self.finished = True
        if not self.client.finished:
            self.client.abort(reason)
        if self.tncs is not None and not self.tncs.finished:
            self.tncs.abort(reason)
