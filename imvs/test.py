"""The ITA Test IMV (PA subtype ITA-HSR/Test): the verdict the endpoint
asks for, to test a deployment end to end.

What strongSwan's imv-test does (read for facts, written anew): the test
collector sends an ITA Command attribute, optionally after a Dummy of
chosen size, and the IMV turns the command into its recommendation:

* ``allow``: allow, compliant; ``isolate``: isolate, non-compliant minor;
  ``block``: no access, non-compliant major;
* ``none``: no recommendation, don't know (strongSwan's imv-test blocks
  here; nac leaves the decision to the other IMVs, as "none" says);
* ``retry``: a handshake retry (IF-IMV RequestHandshakeRetry), granted at
  most ``retries`` times per connection, after which the IMV gives its
  ``no_result`` recommendation; the IMV also sends ``retry`` to the
  collector, so that it starts its measurements over (with its retry
  command) whether or not the transport restarts the PB-TNC handshake;
* any other word: no recommendation, error.

Before deciding, the IMV asks each collector ``rounds`` times for another
measurement (Command ``repeat``, with a Dummy of ``dummy_size`` bytes when
set, to test large messages towards the endpoint).  Every assessment ends
within ``rounds`` + 1 round trips per handshake and ``retries`` + 1
handshakes, and the TNCS core's ``max_rounds`` bounds each handshake anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from imvs.policy import RECOMMENDATIONS, ImvState, Judgement, LangText, PaTncImv, VerdictPolicy
from nac.config import Option, choice, int_range
from nac.ifimv import ActionRecommendation, ConnectionState, EvaluationResult
from nac.log import Logger
from nac.pa import PaAttribute, PaVendor
from nac.pa.ita import ItaCommand, ItaDummy, ItaSubtype, TestCommand

__all__ = ["COMMAND_VERDICTS", "TestImv", "TestState"]

log = Logger(namespace="nac.imv.test")

A = ActionRecommendation
E = EvaluationResult
C = TestCommand

#: The verdict each command of the collector asks for.
COMMAND_VERDICTS: dict[str, tuple[EvaluationResult, ActionRecommendation]] = {
    C.ALLOW: (E.COMPLIANT, A.ALLOW),
    C.ISOLATE: (E.NONCOMPLIANT_MINOR, A.ISOLATE),
    C.BLOCK: (E.NONCOMPLIANT_MAJOR, A.NO_ACCESS),
    C.NONE: (E.DONT_KNOW, A.NO_RECOMMENDATION),
}

#: Commands longer than this are shown cut short in logs and measurements.
SHOWN_COMMAND = 64
#: The largest Dummy the IMV sends (a PA-TNC message never carries more).
MAX_DUMMY_SIZE = 16 * 1024 * 1024

REASON_NOT_ALLOW: LangText = {
    "en": "The test collector did not send the command 'allow'",
    "de": "Der Test-Kollektor hat nicht das Kommando 'allow' gesendet",
}
REASON_NO_COMMAND: LangText = {
    "en": "No command was received from the test collector",
    "de": "Vom Test-Kollektor wurde kein Kommando empfangen",
}
REASON_RETRIES: LangText = {
    "en": "The test collector asked for more handshake retries than allowed",
    "de": "Der Test-Kollektor verlangte mehr Wiederholungen als erlaubt",
}


def shown(command: str) -> str:
    """A command from the network as logs and measurements show it."""
    return repr(command if len(command) <= SHOWN_COMMAND else command[:SHOWN_COMMAND] + "...")


@dataclass(slots=True)
class TestState(ImvState):
    """What the Test IMV knows about one connection (one handshake)."""

    __test__ = False  # a state, not a test class

    command: str | None = None
    """The last command received in this handshake."""
    rounds_left: dict[int, int] = field(default_factory=dict)
    """Collector id -> extra measurement rounds still to ask for."""
    rounds_done: int = 0
    dummy_sizes: list[int] = field(default_factory=list)
    retries: int = 0
    """Handshake retries granted on this connection (kept across retries)."""
    exhausted: bool = False
    """The collector asked for a retry beyond ``retries``."""


class TestImv(PaTncImv):
    """ITA-HSR Test (PA subtype 1) verifier, strongSwan's imv-test."""

    __test__ = False  # an IMV, not a test class

    name = "test"
    label = "Test"
    vendor = PaVendor.ITA_HSR
    subtype = ItaSubtype.TEST
    subtype_name = "Test"
    state_class = TestState
    LANGUAGES = ("en", "de")

    CONFIG_HELP = (
        "The ITA Test IMV (strongSwan's imv-test), to test a deployment end to end: the endpoint's "
        "test collector (nac-pt-tls-client --test-command) sends the verdict it wants: allow "
        "(compliant), isolate (non-compliant minor), block (no access, non-compliant major), none (no "
        "recommendation; strongSwan's imv-test blocks here) or retry (a handshake retry); any other "
        "word is no recommendation with an error. Load with `imvs = ..., test`.")

    OPTIONS = [
        Option("rounds", int_range(0, 100), 0,
               "Extra measurement rounds asked of each test collector (Command 'repeat') before "
               "the IMV decides on the last command received ([nac] max_rounds bounds them anyway)."),
        Option("retries", int_range(0, 10), 1,
               "Handshake retries granted per connection when the collector sends 'retry'; one "
               "more 'retry' gets the no_result recommendation."),
        Option("dummy_size", int_range(0, MAX_DUMMY_SIZE), 0,
               "Bytes of ITA Dummy attribute sent with each 'repeat' and 'retry' to the "
               "collector, to test large messages (0: none; a message larger than the transport "
               "carries is not sent)."),
        Option("no_result", choice(*RECOMMENDATIONS), "no-recommendation",
               "Recommendation when no command arrives, or a retry beyond 'retries': allow, "
               "isolate, no-access or no-recommendation (the other IMVs decide)."),
    ]

    def __init__(self, options: Mapping | None = None):
        # the collector's command is the verdict: of the IMV policy only
        # what no command (or too many retries) gets is configurable
        values = {option.name: option.default for option in self.OPTIONS}
        values.update(options or {})
        super().__init__({**values, "non_compliant_minor": "no-access", "non_compliant_major": "no-access"})
        self.options = values
        self.policy = VerdictPolicy(no_result=RECOMMENDATIONS[values["no_result"]])
        self.rounds: int = self.options["rounds"]
        self.retries: int = self.options["retries"]
        self.dummy_size: int = self.options["dummy_size"]

    @property
    def message_type_name(self) -> str:
        return "ITA-HSR/Test"

    # -- IImv ----------------------------------------------------------------------------

    def notify_connection_change(self, connection, state) -> None:
        previous = connection.state
        super().notify_connection_change(connection, state)
        if state == ConnectionState.HANDSHAKE and isinstance(previous, TestState) \
                and connection.state is not previous:
            # the retries granted bound the whole connection, not one handshake
            connection.state.retries = previous.retries

    def receive_message(self, connection, message):
        if message.vendor_id != self.vendor or message.subtype != self.subtype:
            return None
        state = self.state_of(connection)
        if state.decided:
            return None
        imc = message.collector_id
        log.debug("IMV {imv_id} \"Test\" received message for Connection ID {cid} from IMC {imc}",
                  imv_id=connection.imv_id, cid=connection.connection_id, imc=imc)
        if state.imc_id is None:
            state.imc_id = imc
        state.heard = state.received_any = state.started = True
        reply: list[PaAttribute] = []
        command = None
        for attribute in message.pa.attributes:
            for whole in self._unwrap(connection, state, imc, attribute, reply):
                if isinstance(whole, ItaCommand):
                    command = whole.text
                elif isinstance(whole, ItaDummy):
                    state.dummy_sizes.append(whole.size)
                    log.debug("IMV {imv_id} received a Dummy attribute of {n} bytes",
                              imv_id=connection.imv_id, n=whole.size)
        if reply:
            self.send(connection, reply, collector_id=imc, exclusive=True)
        if command is None:
            return None
        state.command = command
        log.info("IMV {imv_id} \"Test\" received command {command} from IMC {imc}",
                 imv_id=connection.imv_id, command=shown(command), imc=imc)
        if command == C.RETRY:
            if state.retries < self.retries:
                state.retries += 1
                connection.request_handshake_retry("the test collector asked for a handshake retry")
                self.send(connection, [*self._dummy(), ItaCommand(C.RETRY)], collector_id=imc, exclusive=True)
                return None
            state.exhausted = True
            return self.decide(connection, state)
        left = state.rounds_left.setdefault(imc, self.rounds)
        if left > 0:
            state.rounds_left[imc] = left - 1
            state.rounds_done += 1
            self.send(connection, [*self._dummy(), ItaCommand(C.REPEAT)], collector_id=imc, exclusive=True)
            return None
        return self.decide(connection, state)

    def batch_ending(self, connection):
        # decisions follow the collector's messages; a silent collector is
        # solicited by the TNCS within its bounded rounds
        return None

    def _dummy(self) -> list[PaAttribute]:
        return [ItaDummy.of_size(self.dummy_size)] if self.dummy_size else []

    # -- judging -------------------------------------------------------------------------

    def judge(self, connection, state: TestState) -> Judgement:
        command = state.command
        self.measure(connection, state, "test", {
            "command": None if command is None else command[:SHOWN_COMMAND],
            "rounds": state.rounds_done,
            "retries": state.retries,
            "dummy_sizes": state.dummy_sizes,
        })
        if state.exhausted:
            return self.no_result(REASON_RETRIES, f"more than {self.retries} handshake retries asked for")
        if command is None:
            return self.no_result(REASON_NO_COMMAND, "no command received")
        if command == C.RETRY:
            return self.no_result(REASON_RETRIES, "the handshake retry did not take place")
        verdict = COMMAND_VERDICTS.get(command)
        if verdict is None:
            log.warn("IMV {imv_id} \"Test\": unsupported ITA Command {command}",
                     imv_id=connection.imv_id, command=shown(command))
            return Judgement(E.ERROR, A.NO_RECOMMENDATION, summary=f"unsupported command {shown(command)}")
        evaluation, recommendation = verdict
        reasons = (REASON_NOT_ALLOW,) if recommendation in (A.ISOLATE, A.NO_ACCESS) else ()
        return Judgement(evaluation, recommendation, reasons, None, f"command {shown(command)}")
