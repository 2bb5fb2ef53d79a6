"""The Scanner IMV (IETF PA subtype Firewall, RFC 5792 §4.2.6): judges the
open server ports an endpoint reports in its Port Filter.

strongSwan's imv-scanner policy (read for facts, written anew), set in
``[imv:scanner]``:

* ``closed_port_policy = yes`` (the default): every port must be closed
  except those listed in ``tcp_ports`` / ``udp_ports``;
* ``closed_port_policy = no``: every port may be open except those listed.

Lists are ports and ranges separated by blanks or commas
(``22 443 10000-65000``).  Blocked entries and other protocols are
ignored.  An endpoint whose groups enforce port policies (``open-tcp-ports``:
the TCP ports that may be open, every other must be closed;
``blocked-tcp-ports``: the ports that must be closed; the same for UDP) is
judged by those instead, each violated policy recommending its ``rec_fail``
(``nac.policy``).  Any violation makes the endpoint non-compliant minor, with the
reason "Open server ports were detected" and remediation instructions
listing the ports (``tcp/41963``).  The Port Filter normally comes with
the collector's first message; otherwise the IMV asks for it once, and
without an answer gives its no-result recommendation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from twisted.internet import defer

from imvs.policy import (
    ImvState,
    Judgement,
    LangText,
    PaTncImv,
    RemediationString,
    checks_recommendation,
    verdict_options,
)
from nac.config import Option, boolean
from nac.db.models import PolicyType
from nac.ifimv import ANY_IMC_ID, ActionRecommendation, EvaluationResult
from nac.log import Logger
from nac.pa import PaAttribute, PaSubtype, PaVendor
from nac.pa.ietf import AttributeRequest, IetfAttributeType, PortEntry, PortFilter
from nac.policy import PortRanges, port_ranges

__all__ = ["PortRanges", "ScannerImv", "ScannerState", "port_ranges", "violating_ports"]

log = Logger(namespace="nac.imv.scanner")

A = ActionRecommendation
E = EvaluationResult

TCP, UDP = 6, 17
PROTOCOL_NAMES = {TCP: "tcp", UDP: "udp"}

#: the group policy types this IMV checks: (protocol, closed-port policy)
PORT_POLICIES = {
    PolicyType.OPEN_TCP_PORTS: (TCP, True),
    PolicyType.BLOCKED_TCP_PORTS: (TCP, False),
    PolicyType.OPEN_UDP_PORTS: (UDP, True),
    PolicyType.BLOCKED_UDP_PORTS: (UDP, False),
}

def _listed(port: int, ranges: PortRanges) -> bool:
    return any(first <= port <= last for first, last in ranges)


def violating_ports(entries: Sequence[PortEntry], closed_port_policy: bool,
                    policy: Mapping[int, PortRanges]) -> list[tuple[int, int]]:
    """The (protocol, port) of the open ports the policy forbids, TCP first
    then UDP, in the order reported, each once."""
    out: list[tuple[int, int]] = []
    for protocol in (TCP, UDP):
        ranges = policy.get(protocol, ())
        name = PROTOCOL_NAMES[protocol]
        for entry in entries:
            if entry.blocked or entry.protocol != protocol:
                continue
            passed = closed_port_policy == _listed(entry.port, ranges)
            log.debug("{proto} port {port} open: {verdict}", proto=name, port=entry.port,
                      verdict="ok" if passed else "fatal")
            if not passed and (protocol, entry.port) not in out:
                out.append((protocol, entry.port))
    return out


REASON_OPEN_PORTS: LangText = {
    "en": "Open server ports were detected",
    "de": "Offene Serverports wurden festgestellt",
    "fr": "Il y a des ports du serveur ouverts",
}
REASON_NO_RESULT: LangText = {
    "en": "No port filter information was received",
    "de": "Es wurden keine Angaben zu offenen Ports empfangen",
    "fr": "Aucune information sur les ports ouverts n'a été reçue",
}
PORTS_TITLE: LangText = {"en": "Open Server Ports", "de": "Offene Server Ports",
                         "fr": "Ports ouverts du serveur"}
PORTS_DESCRIPTION: LangText = {
    "en": "Open Internet ports have been detected",
    "de": "Offenen Internet-Ports wurden festgestellt",
    "fr": "Il y'a des ports Internet ouverts",
}
PORTS_HEADER: LangText = {
    "en": "Please close the following server ports:",
    "de": "Bitte schliessen Sie die folgenden Serverports:",
    "fr": "Fermez les ports du serveur suivants s'il vous plait:",
}


@dataclass(slots=True)
class ScannerState(ImvState):
    """What the Scanner IMV knows about one connection."""

    ports: tuple[PortEntry, ...] | None = None


class ScannerImv(PaTncImv):
    """IETF Firewall (PA subtype 5) verifier, strongSwan's imv-scanner."""

    name = "scanner"
    label = "Scanner"
    subtype = PaSubtype.FIREWALL
    subtype_name = "Firewall"
    state_class = ScannerState
    LANGUAGES = ("en", "de", "fr")

    CONFIG_HELP = (
        "Open server ports (IETF PA subtype Firewall, strongSwan's imv-scanner), from the Port "
        "Filter the collector reports. Any violation is non-compliant minor, with the reason \"Open "
        "server ports were detected\" and remediation listing the ports (tcp/41963). Load with "
        "`imvs = ..., scanner`.")

    OPTIONS = [
        Option("closed_port_policy", boolean, True,
               "yes: every port must be closed except those listed; no: every port may be open "
               "except those listed."),
        Option("tcp_ports", port_ranges, (),
               "TCP ports (and ranges like 10000-65000) allowed open (closed-port policy) or "
               "forbidden (open-port policy), separated by blanks or commas."),
        Option("udp_ports", port_ranges, (), "The same for UDP ports."),
        *verdict_options(),
    ]

    def __init__(self, options: Mapping | None = None):
        super().__init__(options)
        self.closed_port_policy: bool = self.options["closed_port_policy"]
        self.ports_policy = {TCP: tuple(self.options["tcp_ports"]), UDP: tuple(self.options["udp_ports"])}

    def handle_attribute(self, connection, state: ScannerState, attribute: PaAttribute) -> None:
        if isinstance(attribute, PortFilter):
            # a later Port Filter replaces the earlier one, as in strongSwan
            state.ports = attribute.entries
            log.debug("IMV {imv_id} received a Port Filter with {n} entries",
                      imv_id=connection.imv_id, n=len(attribute.entries))
        else:
            log.debug("IMV {imv_id} ignores attribute {attr}", imv_id=connection.imv_id,
                      attr=attribute.full_name)

    def batch_ending(self, connection):
        state = self.state_of(connection)
        if state.decided:
            return None
        heard, state.heard = state.heard, False
        if state.ports is not None:
            return self.decide(connection, state)
        if not state.started:
            state.started = True
            self.send(connection, [AttributeRequest(((PaVendor.IETF, IetfAttributeType.PORT_FILTER),))],
                      collector_id=ANY_IMC_ID, exclusive=False)
            return None
        if heard and state.reassembler.pending:
            return None
        return self.decide(connection, state)

    def restore_state(self, connection, last) -> ScannerState | None:
        """The state an assessment of the device had, rebuilt from the
        ``open-ports`` measurement of its last one (``last``:
        :class:`nac.db.reevaluation.LastAssessment`; blocked entries are
        not kept and count for nothing), for judging it again against a
        changed group policy; None without it."""
        payload = last.measurements.get((self.name, "open-ports"))
        if not isinstance(payload, dict) or not isinstance(payload.get("open"), list):
            return None
        numbers = {name: number for number, name in PROTOCOL_NAMES.items()}
        entries = []
        for entry in payload["open"]:
            try:
                protocol = entry["protocol"]
                entries.append(PortEntry(numbers.get(protocol, protocol), int(entry["port"])))
            except (KeyError, TypeError, ValueError):
                return None
        state = self.new_state(connection)
        state.received_any = state.started = True
        state.ports = tuple(entries)
        return state

    @defer.inlineCallbacks
    def judge(self, connection, state: ScannerState):
        policy = yield self.group_policy(connection, PORT_POLICIES)
        checks = policy.checks(PORT_POLICIES) if policy is not None else None
        if state.ports is None:
            if checks:
                outcomes = [(check, None) for check in checks]
                self.record_checks(connection, state, policy, outcomes)
                rec = checks_recommendation(outcomes)
                return Judgement(E.DONT_KNOW, rec, (REASON_NO_RESULT,) if rec is not A.ALLOW else (),
                                 summary="no port filter received")
            return self.no_result(REASON_NO_RESULT, "no port filter received")
        if checks is None:
            violations = violating_ports(state.ports, self.closed_port_policy, self.ports_policy)
            recommendation = None
        else:
            outcomes, violations = [], []
            for check in checks:
                protocol, closed = PORT_POLICIES[check.type]
                found = [v for v in violating_ports(state.ports, closed, {protocol: check.parameter})
                         if v[0] == protocol]
                outcomes.append((check, not found))
                violations += [v for v in found if v not in violations]
            violations.sort(key=lambda v: v[0] != TCP)
            self.record_checks(connection, state, policy, outcomes)
            recommendation = checks_recommendation(outcomes)
            log.debug("IMV {imv_id}: group policy of {groups}: {checks}", imv_id=connection.imv_id,
                      groups=", ".join(policy.groups),
                      checks=", ".join(f"'{c.name}' {'passed' if ok else 'failed'}" for c, ok in outcomes)
                      or "no port policy due")
        summary = []
        for protocol, name in PROTOCOL_NAMES.items():
            ports = [str(port) for proto, port in violations if proto == protocol]
            summary.append(f"violating {name} ports: {' '.join(ports)}" if ports
                           else f"no violating {name} ports")
        if recommendation is not None and policy is not None:
            summary.append(f"group policy of {', '.join(policy.groups)}")
        if not violations:
            judgement = Judgement(E.COMPLIANT, recommendation or self.policy.recommendation(E.COMPLIANT),
                                  summary="; ".join(summary))
        else:
            remediation = RemediationString(self.language(connection))
            remediation.add_instruction(PORTS_TITLE, PORTS_DESCRIPTION, PORTS_HEADER,
                                        [f"{PROTOCOL_NAMES[proto]}/{port}" for proto, port in violations])
            judgement = Judgement(E.NONCOMPLIANT_MINOR,
                                  recommendation or self.policy.recommendation(E.NONCOMPLIANT_MINOR),
                                  (REASON_OPEN_PORTS,), remediation, "; ".join(summary))
        open_ports = [{"protocol": PROTOCOL_NAMES.get(e.protocol, e.protocol), "port": e.port}
                      for e in state.ports if not e.blocked]
        self.measure(connection, state, "open-ports", {
            "open": open_ports,
            "violations": [f"{PROTOCOL_NAMES[proto]}/{port}" for proto, port in violations],
            "closed_port_policy": self.closed_port_policy,
            **({} if checks is None else {"groups": list(policy.groups), "policies": [c.name for c in checks]}),
        })
        return judgement
