"""Picking the TNCCS protocol from the endpoint's first batch.

EAP-TNC (type 38) carries either IF-TNCCS 1.1 (XML) or PB-TNC, and nothing
in the EAP layer says which.  TCG IF-TNCCS TLV Binding 2.0 §3.5
("Interoperability with older IF-TNCCS versions") tells them apart by the
first byte of the client's first batch, as strongSwan's tnccs-dynamic does:
0x02 is the PB-TNC version, an XML document starts with '<' or whitespace,
0x00 is Microsoft's IF-TNCCS-SOH (not supported here).
"""

from __future__ import annotations

import enum

from twisted.internet import defer
from zope.interface import implementer

from nac.interfaces import ITnccsConnection
from nac.log import Logger
from nac.pb.messages import PB_TNC_VERSION
from nac.tnccs.assessment import BatchOutcome
from nac.tnccs.pb_server import PbTncServerConnection
from nac.tnccs.tnccs11 import Tnccs11ServerConnection, looks_like_tnccs11

log = Logger(namespace="nac.tnccs")


class TnccsProtocol(enum.Enum):
    """The IF-TNCCS protocols, named as strongSwan logs them."""

    UNKNOWN = "unknown TNCCS"
    TNCCS_1_1 = "TNCCS 1.1"
    SOH = "TNCCS SOH"
    TNCCS_2_0 = "TNCCS 2.0"


def detect_protocol(first_batch: bytes) -> TnccsProtocol:
    """The protocol of a client's first batch, from its first byte(s)."""
    if not first_batch:
        return TnccsProtocol.UNKNOWN
    if first_batch[0] == PB_TNC_VERSION:
        return TnccsProtocol.TNCCS_2_0
    if looks_like_tnccs11(first_batch):
        return TnccsProtocol.TNCCS_1_1
    if first_batch[0] == 0x00:
        return TnccsProtocol.SOH
    return TnccsProtocol.UNKNOWN


_SERVERS = {
    TnccsProtocol.TNCCS_2_0: PbTncServerConnection,
    TnccsProtocol.TNCCS_1_1: Tnccs11ServerConnection,
}


@implementer(ITnccsConnection)
class DynamicTnccsConnection:
    """A TNCCS connection that becomes PB-TNC or IF-TNCCS 1.1 on the first
    batch and hands everything to that connection from then on."""

    def __init__(self, core, connection_id: int, peer, limits):
        self.core = core
        self.connection_id = connection_id
        self.peer = peer
        self.limits = limits
        self.protocol: TnccsProtocol | None = None
        self.delegate = None
        """The PbTncServerConnection or Tnccs11ServerConnection once chosen."""
        self._closed = False

    @property
    def decision(self):
        return self.delegate.decision if self.delegate is not None else None

    @property
    def finished(self) -> bool:
        return self.delegate.finished if self.delegate is not None else self._closed

    def receive_batch(self, data: bytes) -> defer.Deferred:
        if self.delegate is None:
            if self._closed:
                return defer.succeed(BatchOutcome(close=True))
            self.protocol = detect_protocol(bytes(data[:4]))
            server = _SERVERS.get(self.protocol)
            if self.protocol is TnccsProtocol.TNCCS_2_0:
                # PB-TNC as the core speaks it (mutual PB-TNC, when enabled)
                server = self.core.connection_classes.get("pb-tnc", server)
            if server is None:
                # no protocol to answer in: the transport fails the exchange
                log.warn("{protocol} protocol not supported (first byte 0x{byte:02x}) on "
                         "Connection ID {cid} from {peer}", protocol=self.protocol.value,
                         byte=data[0] if data else 0, cid=self.connection_id,
                         peer=self.peer.address, log_limit=("unknown TNCCS protocol", self.peer.address))
                self._close()
                return defer.succeed(BatchOutcome(close=True))
            log.info("{protocol} protocol detected dynamically", protocol=self.protocol.value)
            self.delegate = server(self.core, self.connection_id, self.peer, self.limits)
        return self.delegate.receive_batch(data)

    def receive_acknowledgement(self) -> defer.Deferred | None:
        # before the first batch there is no protocol that has acknowledgements
        return self.delegate.receive_acknowledgement() if self.delegate is not None else None

    def abort(self, reason: str) -> None:
        if self.delegate is not None:
            self.delegate.abort(reason)
        elif not self._closed:
            log.info("Connection ID {cid} aborted: {reason}", cid=self.connection_id, reason=reason)
            self._close()

    def _close(self) -> None:
        self._closed = True
        self.core.connection_closed(self.connection_id)
