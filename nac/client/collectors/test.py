"""The ITA Test IMC (PA subtype ITA-HSR/Test): sends the verdict it is told
to ask for, as strongSwan's imc-test does, to test a deployment end to end.

First message (to any IMV): a Dummy of ``dummy_size`` bytes when set, then
the Command (``allow``, ``isolate``, ``block``, ``none``, ``retry`` or any
other word), both with NOSKIP.  Whenever an IMV sends a Command or a Dummy
and no assessment result for it yet (its ``repeat`` for another round, its
``retry``), the collector measures again, answering a Dummy from the
IMV with a Dummy of the same size unless it has its own size.  After a
handshake retry (a PB-TNC SRETRY, or the IMV's Command ``retry``) it sends
``retry_command`` instead of ``command``.
"""

from __future__ import annotations

from dataclasses import dataclass

from nac.client.imc import PaTncImc, ReceivedPaMessage
from nac.ifimv import ConnectionState
from nac.log import Logger
from nac.pa import PaAttribute, PaVendor
from nac.pa.ietf import AssessmentResult
from nac.pa.ita import ItaCommand, ItaDummy, ItaSubtype, TestCommand

__all__ = ["TestImc"]

log = Logger(namespace="nac.client.test")


@dataclass(slots=True)
class _TestImcState:
    handshakes: int = 0
    retrying: bool = False
    """A handshake retry happened: send the retry command."""
    assessed: frozenset[int] = frozenset()
    """IMVs that sent this collector an assessment result."""


class TestImc(PaTncImc):
    """strongSwan's Test IMC: an ITA Command and optional Dummy."""

    __test__ = False  # a collector, not a test class

    name = "Test"
    vendor = PaVendor.ITA_HSR
    subtype = ItaSubtype.TEST

    def __init__(self, command: str = TestCommand.NONE, *, retry_command: str | None = None,
                 dummy_size: int = 0):
        if dummy_size < 0:
            raise ValueError("the Dummy size cannot be negative")
        self.command = command
        self.retry_command = command if retry_command is None else retry_command
        self.dummy_size = dummy_size

    def _state(self, connection) -> _TestImcState:
        extra = self.state_of(connection).extra
        if "test" not in extra:
            extra["test"] = _TestImcState()
        return extra["test"]

    def notify_connection_change(self, connection, state) -> None:
        super().notify_connection_change(connection, state)
        if state == ConnectionState.HANDSHAKE:
            own = self._state(connection)
            own.handshakes += 1
            if own.handshakes > 1:
                own.retrying = True
                own.assessed = frozenset()

    def measurement(self, connection, dummy_size: int = 0) -> list[PaAttribute]:
        """Dummy (when a size is set or answered) and Command, both NOSKIP."""
        own = self._state(connection)
        command = self.retry_command if own.retrying else self.command
        size = self.dummy_size or dummy_size
        log.debug("IMC \"Test\" sends command {command!r}{dummy}", command=command,
                  dummy=f" after a {size}-byte Dummy" if size else "")
        attributes: list[PaAttribute] = [ItaDummy.of_size(size, noskip=True)] if size else []
        attributes.append(ItaCommand(command, noskip=True))
        return attributes

    def handshake_attributes(self, connection) -> list[PaAttribute]:
        return self.measurement(connection)

    def reply_attributes(self, connection, message: ReceivedPaMessage,
                         attributes: tuple[PaAttribute, ...]) -> list[PaAttribute]:
        own = self._state(connection)
        dummy = 0
        asked = False
        for attribute in attributes:
            if isinstance(attribute, ItaCommand):
                asked = True
                log.debug("IMC \"Test\" received command {command!r} from IMV {imv}",
                          command=attribute.text[:64], imv=message.validator_id)
                if attribute.text == TestCommand.RETRY:
                    own.retrying = True
            elif isinstance(attribute, ItaDummy):
                asked = True
                dummy = attribute.size
                log.debug("IMC \"Test\" received a Dummy attribute of {n} bytes", n=dummy)
            elif isinstance(attribute, AssessmentResult):
                own.assessed = own.assessed | {message.validator_id}
        if not asked or message.validator_id in own.assessed:
            # a PA-TNC error or a final verdict asks for nothing
            return []
        return self.measurement(connection, dummy)
