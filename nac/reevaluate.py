"""Re-evaluation after a policy change: a decision follows the policy, not
only the next assessment.

Database triggers move a generation counter on with every change to the
package policy (products, packages, releases: row 1) and to the group
policy (groups, members, policies, enforcements: row 2), whoever makes it:
``nac-admin``, the HTTP API, the console, plain SQL or another nac.  The
main nac process reads both every ``[nac] reevaluate_interval`` (one
query).  When they moved on, it judges again every device a changed
decision can still reach — those with an open RADIUS accounting session
(:func:`nac.db.reevaluation.live_devices`) — with what the device's last
decided assessment kept:

* an IMV that can rebuild its state from that (``restore_state``: the OS
  IMV, from its ``os`` measurement and the device's kept package list)
  judges it again with its own ``judge``, against the policy in force now
  (the package releases, the device's group policy);
* every other IMV's last result stands.

The results are combined by the core's recommendation policy.  When the
access that gives differs from the last one, it is recorded as a session of
transport ``reevaluation`` (its IMV results, measurements and reason, as
any assessment) and the store's decision listeners hear of it: the RADIUS
transport sends the NAS holding the device's session a CoA-Request with the
new enforcement, or a Disconnect-Request (:mod:`transports.radius.dynamic`).
An unchanged access records nothing.

Of several nac instances on one database, the first to claim a change
(:func:`nac.db.reevaluation.claim_reevaluation`) does the work.  Devices are
judged one after the other, at most ``[nac] reevaluate_max`` per change;
changes that come while one is judged are taken together afterwards.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.python.failure import Failure

from nac.db.outage import log_store_failure
from nac.db.reevaluation import claim_reevaluation, last_assessment, live_devices, policy_generations
from nac.ifimv import ActionRecommendation, EvaluationResult
from nac.log import Logger
from nac.policy import Endpoint
from nac.tnccs.assessment import Decision, PeerInfo
from nac.tnccs.connection import ACCESS
from nac.tnccs.imv_manager import Remediation
from nac.tnccs.recommendations import ImvVerdict, combine

__all__ = ["TRANSPORT", "Reevaluator"]

log = Logger(namespace="nac.reevaluate")

#: the transport of the sessions that record a changed decision
TRANSPORT = "reevaluation"


class _Assessment:
    """One device judged again: the session id its IMVs' writes wait for
    (given once the decision is known to change, else None: nothing is
    written) and its group policy, looked up once."""

    def __init__(self, core, last, connection_id: int):
        self.core = core
        self.last = last
        self.connection_id = connection_id
        self.peer = PeerInfo(transport=TRANSPORT, address=last.peer_address or "", identity=last.identity,
                             auth_method=last.auth_method or "none", nas=last.nas, station=last.station)
        self._session: list[defer.Deferred] | None = []
        self._session_id: int | None = None
        self._policy: defer.Deferred | None = None

    def session_id(self) -> defer.Deferred:
        if self._session is None:
            return defer.succeed(self._session_id)
        d = defer.Deferred()
        self._session.append(d)
        return d

    def resolve(self, session_id: int | None) -> None:
        waiting, self._session, self._session_id = self._session or [], None, session_id
        for d in waiting:
            d.callback(session_id)

    def endpoint_policy(self) -> defer.Deferred:
        source = getattr(self.core, "policy_source", None)
        if source is None:
            return defer.succeed(None)
        if self._policy is None:
            last = self.last
            self._policy = defer.maybeDeferred(source.resolve, Endpoint(last.identity, last.device_id, last.product))
        d = defer.Deferred()

        def share(result):
            d.callback(result)
            return None if isinstance(result, Failure) else result

        self._policy.addBoth(share)
        return d


class _StoreView:
    """The store as an IMV judging again sees it: an assessment's bounded
    wait for its session id does not wait (the id comes after the verdict)."""

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @staticmethod
    def bounded_wait(d: defer.Deferred) -> defer.Deferred:
        return defer.succeed(None)


class _Judging:
    """What one IMV's ``judge`` sees of a device judged again (the parts
    of :class:`nac.interfaces.IImvConnection` judging uses)."""

    preferred_language = ""
    reassembly = None

    def __init__(self, assessment: _Assessment, imv_id: int, store):
        self._assessment = assessment
        self.imv_id = imv_id
        self.store = store
        self.state = None

    @property
    def connection_id(self) -> int:
        return self._assessment.connection_id

    @property
    def peer(self) -> PeerInfo:
        return self._assessment.peer

    def session_id(self) -> defer.Deferred:
        return self._assessment.session_id()

    def endpoint_policy(self) -> defer.Deferred:
        return self._assessment.endpoint_policy()

    def identify_device(self, device_id, product=None) -> None:
        pass  # known: the device judged again

    def send_message(self, *args, **kwargs) -> None:
        pass  # there is no collector to tell


def stored_verdict(imv_id: int, row: dict) -> ImvVerdict:
    """An IMV's result as the last assessment recorded it."""
    language = row.get("reason_language") or ""
    remediation = [Remediation(imv_id, row["remediation"], language or "en", None)] if row.get("remediation") else []
    return ImvVerdict(imv_id=imv_id, imv_name=row["imv_name"], provided=True,
                      recommendation=ActionRecommendation(row["recommendation"]),
                      evaluation=EvaluationResult(row["evaluation"]), reason=row.get("reason") or "",
                      reason_language=language, remediation=remediation, forced=bool(row.get("forced")))


def judged_verdict(imv, conn: _Judging, judgement) -> ImvVerdict:
    """An IMV's new result from its :class:`imvs.policy.Judgement`."""
    from imvs.policy import lang_text

    language = imv.language(conn)
    verdict = ImvVerdict(imv_id=conn.imv_id, imv_name=imv.name, provided=True,
                         recommendation=judgement.recommendation, evaluation=judgement.evaluation)
    if judgement.reasons:
        verdict.reason = "\n".join(lang_text(r, language) for r in judgement.reasons)
        verdict.reason_language = language
    if judgement.evaluation is not EvaluationResult.COMPLIANT and judgement.remediation:
        verdict.remediation.append(Remediation(conn.imv_id, judgement.remediation.encode(),
                                               judgement.remediation.language, None))
    return verdict


class Reevaluator(service.Service):
    """Watches the policy generations and judges the live devices again
    after a change (see the module)."""

    name = "reevaluation"

    def __init__(self, core, store, *, interval: float = 0.5, max_devices: int = 10000,
                 instance: str | None = None, clock=None):
        self.core = core
        self.store = store
        self.interval = interval
        self.max_devices = max_devices
        self.instance = instance
        self.clock = clock
        self.generations: tuple[int, ...] | None = None
        """The generations last read (None: not yet)."""
        self._busy = False
        self._loop: task.LoopingCall | None = None
        self._running_d: defer.Deferred | None = None
        self.runs = 0
        """Re-evaluations done (for tests and figures)."""
        self.changed = 0
        """Decisions changed by them."""
        self.judged = 0
        """Devices judged again."""

    # -- life cycle --------------------------------------------------------------------

    def metric_families(self):
        """The re-evaluations so far, as prometheus-client families (``/metrics``)."""
        from prometheus_client.core import CounterMetricFamily

        yield CounterMetricFamily("nac_reevaluations", "Re-evaluations of the devices with open accounting "
                                  "sessions after a policy change", value=self.runs)
        yield CounterMetricFamily("nac_reevaluation_devices", "Devices judged again after policy changes",
                                  value=self.judged)
        yield CounterMetricFamily("nac_reevaluation_changes", "Decisions changed by re-evaluations (each "
                                  "recorded and told to the NASes)", value=self.changed)

    def startService(self):
        super().startService()
        from nac import metrics

        metrics.add_source(self, self.metric_families)
        self._loop = task.LoopingCall(self.poll)
        if self.clock is not None:
            self._loop.clock = self.clock
        self._loop.start(self.interval, now=True).addErrback(
            lambda failure: log.failure("watching the policy for changes failed", failure))
        log.info("decisions follow policy changes: devices with open accounting sessions are judged again "
                 "(policy looked at every {interval} s)", interval=self.interval)

    def stopService(self):
        super().stopService()
        from nac import metrics

        metrics.remove_source(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return self._running_d

    # -- watching ----------------------------------------------------------------------

    def poll(self) -> defer.Deferred | None:
        """Read the generations; judge the live devices again when they moved on."""
        if self._busy:
            return None  # the next poll after this run sees what changed meanwhile
        self._busy = True
        d = self.store.read(policy_generations)
        d.addCallback(self._compare)
        d.addErrback(self._failed)
        d.addBoth(self._idle)
        self._running_d = d
        return d

    def _idle(self, result):
        self._busy = False
        self._running_d = None
        return None

    @staticmethod
    def _failed(failure: Failure) -> None:
        log_store_failure(log, failure, "judging devices again after a policy change failed",
                          log_limit=("re-evaluation failed", "policy database"))

    @defer.inlineCallbacks
    def _compare(self, generations: tuple[int, ...]):
        before, self.generations = self.generations, generations
        if before is None or before == generations:
            return None
        key = "policy:" + ":".join(str(g) for g in generations)
        try:
            claimed = yield self.store.writes.submit(claim_reevaluation, key, self.instance)
            if not claimed:
                log.debug("another nac instance judges the devices again after policy change {key}", key=key)
                return None
            yield self.run()
        except BaseException:
            # the database failed us: the next poll tries this change again
            self.generations = before
            raise

    @defer.inlineCallbacks
    def run(self):
        """Judge every live device again (at most ``max_devices``); the number of changed decisions."""
        started = self._seconds()
        devices, total = yield self.store.read(live_devices, self.max_devices)
        changed = 0
        for device_pk in devices:
            try:
                if (yield self.reevaluate(device_pk)):
                    changed += 1
            except Exception:
                log_store_failure(log, Failure(), "judging device {pk} again after a policy change failed",
                                  pk=device_pk, log_limit=("re-evaluation of a device failed", "policy database"))
        self.runs += 1
        self.judged += len(devices)
        self.changed += changed
        if devices:
            log.info("policy changed: {n} device(s) with open sessions judged again in {s:.2f} s, "
                     "{k} decision(s) changed", n=len(devices), k=changed, s=self._seconds() - started)
        if total > len(devices):
            log.warn("policy changed: {left} device(s) with open sessions were not judged again "
                     "([nac] reevaluate_max {max})", left=total - len(devices), max=self.max_devices)
        return changed

    def _seconds(self) -> float:
        if self.clock is not None:
            return self.clock.seconds()
        from twisted.internet import reactor
        return reactor.seconds()

    # -- one device --------------------------------------------------------------------

    @defer.inlineCallbacks
    def reevaluate(self, device_pk: int):
        """Judge device ``device_pk`` again: True when its decision changed
        (and was recorded), False when it stands, None when nothing could be
        judged again."""
        from imvs.policy import GroupPolicyUnreadable

        last = yield self.store.read(last_assessment, device_pk)
        if last is None:
            return None
        assessment = _Assessment(self.core, last, self.core.new_connection_id())
        stored = {row["imv_name"]: row for row in last.results}
        store = _StoreView(self.store)
        verdicts, again = [], []
        try:
            for loaded in self.core.imvs:
                row = stored.get(loaded.name)
                if row is None:
                    continue  # the IMV took no part in that assessment
                conn = _Judging(assessment, loaded.imv_id, store)
                restore = getattr(loaded.imv, "restore_state", None)
                state = restore(conn, last) if restore is not None else None
                if state is None:
                    verdicts.append(stored_verdict(loaded.imv_id, row))
                    continue
                conn.state = state
                try:
                    judgement = yield defer.maybeDeferred(loaded.imv.judge, conn, state)
                except GroupPolicyUnreadable:
                    judgement = loaded.imv.check_failed("the group policy could not be read")
                verdicts.append(judged_verdict(loaded.imv, conn, judgement))
                again.append(loaded.name)
            if not again:
                assessment.resolve(None)
                return None
            rec, ev = combine(self.core.policy, verdicts)
            access = ACCESS[rec][1]
            if access == last.access:
                log.debug("device '{device}' judged again: {access} stands", device=last.device_id, access=access)
                assessment.resolve(None)
                return False
            enforcement = None
            if getattr(self.core, "policy_source", None) is not None:
                try:
                    policy = yield assessment.endpoint_policy()
                    enforcement = getattr(policy, "enforcement", None)
                except Exception:
                    log_store_failure(log, Failure(), "the group policy of device {pk} could not be read; the "
                                      "transports enforce their configuration", pk=device_pk)
            decision = Decision(
                recommendation=rec, evaluation=ev, access=access,
                reasons=tuple((v.reason, v.reason_language) for v in verdicts if v.reason),
                remediation=tuple(r for v in verdicts for r in v.remediation),
                imv_results=tuple(verdicts), enforcement=enforcement)
            session_id = yield self.store.session_started(assessment.peer, assessment.connection_id)
        except BaseException:
            assessment.resolve(None)
            raise
        assessment.resolve(session_id)  # the IMVs' writes (device, measurements) go first
        yield self.store.session_decided(session_id, decision)
        log.info("device '{device}': decision changed from {old} to {new} after a policy change ({imvs} "
                 "judged again; session {sid})", device=last.device_id, old=last.access, new=access,
                 imvs=", ".join(again), sid=session_id)
        return True
