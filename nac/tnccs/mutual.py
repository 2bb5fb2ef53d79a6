"""Mutual PB-TNC: two half-duplex TNC exchanges over one PB-TNC connection,
each side the server of one and the client of the other, as strongSwan's
tnccs-20 runs them (its ITA-HSR PB-Mutual-Capability message, "half
duplex"; read for the facts, written anew here).

- The endpoint announces it with a PB-Mutual-Capability (ITA-HSR vendor
  0x00902a, PB message type 1, half-duplex bit 1 << 31) in its first CDATA
  batch; a server that takes part answers with its own in its next batch.
  Without both announcements nothing changes.
- From then on the D bit of each batch says which exchange it belongs to: a
  batch with D clear comes from the endpoint's TNC client and goes to the
  TNCS (nac's IMVs judging the endpoint, as without mutual); a batch with D
  set comes from the endpoint's TNCS (its IMVs judging nac) and goes to
  nac's TNC client role, whose collectors answer.  Each batch is answered
  in its own exchange; the endpoint alternates between its two roles.
- The second exchange's server speaks first: an SDATA received in Init
  (strongSwan's state machine allows it; RFC 5793 §3.2 has only CDATA
  there).  nac's client role then begins its handshake: Language-Preference
  and the collectors' first messages in its first CDATA.
- nac's client role answers the endpoint's RESULT with a CLOSE that ends
  only its own exchange.  The connection ends with a CLOSE of the
  endpoint's TNC client, which it sends once both exchanges are over, with
  a CLOSE of the endpoint's TNCS, or with a fatal error in either exchange.

Both exchanges end within ``[nac] max_rounds``: the TNCS decides as it
does without mutual, and the client role gives up (a CLOSE with a fatal
Local Error, which ends the connection) after as many batches of the
endpoint's TNCS without a result.  The decision the transport enforces is
the TNCS's; the endpoint's verdict on nac is only logged.

:class:`MutualPbTncServerConnection` is nac's server side.  The TNCS of the
side that opened the connection as a client (nac's own TNC client asked for
mutual, :mod:`nac.client.mutual`) is :class:`EndpointTncsConnection`.  The
client role is an :class:`nac.interfaces.IPbTncClientRole` the core's
:class:`nac.interfaces.IMutualClientFactory` makes; this module knows no
collector.  Sans-IO like the rest of the package.
"""

from __future__ import annotations

from zope.interface import implementer
from zope.interface.verify import verifyObject

from nac.interfaces import IPbTncClientRole, ITnccsConnection
from nac.log import Logger
from nac.pb.batch import BatchType
from nac.pb.messages import ItaMutualCapability, MutualProtocol, PbTncError
from nac.tnccs.assessment import BatchOutcome
from nac.tnccs.pb_server import PbState, PbTncServerConnection

__all__ = ["EndpointTncsConnection", "MutualPbTncServerConnection", "from_a_server"]

log = Logger(namespace="nac.tnccs.mutual")

_D_BIT = 0x80
_ANNOUNCEMENT = ItaMutualCapability(MutualProtocol.HALF_DUPLEX)


def from_a_server(batch: bytes) -> bool:
    """Whether a batch's D bit says a PB-TNC server sent it (RFC 5793 §4.1);
    False for anything too short to have one (the TNCS reports that)."""
    return len(batch) > 1 and bool(batch[1] & _D_BIT)


class _Announcing(PbTncServerConnection):
    """A TNCS that puts its PB-Mutual-Capability into the next batch it
    builds, room for it kept when filling the batch."""

    def __init__(self, core, connection_id: int, peer, limits):
        super().__init__(core, connection_id, peer, limits)
        self._announce = False

    def _take_fitting(self, queue: list, reserve: int) -> list:
        return super()._take_fitting(queue, reserve + (_ANNOUNCEMENT.size if self._announce else 0))

    def _build(self, btype: BatchType, messages) -> bytes:
        if self._announce:
            self._announce = False
            messages = [_ANNOUNCEMENT, *messages]
        return super()._build(btype, messages)


@implementer(ITnccsConnection)
class MutualPbTncServerConnection(_Announcing):
    """A PB-TNC server connection that takes part in mutual PB-TNC when the
    client announces it: the TNCS as in :class:`PbTncServerConnection`,
    and a client role from ``core.mutual`` for the endpoint's TNCS."""

    def __init__(self, core, connection_id: int, peer, limits):
        super().__init__(core, connection_id, peer, limits)
        self.mutual = False
        """Whether both sides announced mutual PB-TNC."""
        self.client = None
        """The IPbTncClientRole answering the endpoint's TNCS, once it spoke."""

    def _mutual_capability(self, msg: ItaMutualCapability) -> None:
        if self.core.mutual is None:  # a core without a client role
            super()._mutual_capability(msg)
            return
        if self.mutual:
            return
        if not msg.protocols & MutualProtocol.HALF_DUPLEX:
            log.info("client offers mutual PB-TNC protocol 0x{p:08x} without half duplex on Connection ID "
                     "{cid}; not mutual", p=msg.protocols, cid=self.connection_id)
            return
        log.info("activating mutual PB-TNC half duplex protocol on Connection ID {cid}", cid=self.connection_id)
        self.mutual = True
        self._announce = True

    async def _process(self, data: bytes) -> BatchOutcome:
        if self.mutual and not self.finished and from_a_server(data):
            return await self._from_endpoint_tncs(data)
        return await super()._process(data)

    async def _from_endpoint_tncs(self, data: bytes) -> BatchOutcome:
        client = self.client
        if client is None:
            client = self.client = self.core.mutual.open_client(self.connection_id, self.limits,
                                                                self.core.max_rounds)
            verifyObject(IPbTncClientRole, client)
            log.info("TNC client with collectors {names} answers the IMVs of {peer} on Connection ID {cid}",
                     names=", ".join(self.core.mutual.collectors) or "none",
                     peer=self.peer.identity or self.peer.address, cid=self.connection_id)
        elif client.finished:
            log.warn("PB-TNC batch of the endpoint's TNCS after its exchange ended on Connection ID {cid}",
                     cid=self.connection_id)
            return await self._send_close(PbTncError.unexpected_batch_type().to_message())
        step = client.receive_batch(data)
        batches = [step.batch] if step.batch is not None else []
        if not step.close:
            return BatchOutcome(batches=batches)
        outcome = step.outcome or client.outcome
        if step.answers_result:
            # the RESULT is answered; the endpoint's TNC client closes the connection
            log.info("the IMVs of {peer} recommend '{rec}' (assessment '{ev}') for this server on Connection "
                     "ID {cid}", peer=self.peer.identity or self.peer.address, rec=outcome.recommendation_label,
                     ev=outcome.assessment_label or "none", cid=self.connection_id)
            return BatchOutcome(batches=batches)
        if step.close:
            # the endpoint's TNCS closed, or this exchange broke: so does the connection
            log.info("mutual PB-TNC exchange of the endpoint's TNCS ended on Connection ID {cid}: {why}",
                     cid=self.connection_id, why=outcome.error or "CLOSE received")
            self._transition(PbState.END)
            self._end()
            return BatchOutcome(batches=batches, close=True, decision=self.decision)

    def _can_retry(self) -> bool:
        # the endpoint's TNCS may be in its own exchange: no retry in mutual PB-TNC
        return not self.mutual and super()._can_retry()

    def _end(self) -> None:
        if self.client is not None and not self.client.finished:
            self.client.abort("the PB-TNC connection ended")
        super()._end()


class EndpointTncsConnection(PbTncServerConnection):
    """The TNCS of the side that opened the PB-TNC connection as its client,
    judging the PB-TNC server with its own IMVs (nac's TNC client asked for
    mutual PB-TNC).  It speaks first: :meth:`open` gives its first SDATA,
    and from then on every batch of the server's client role goes to
    :meth:`receive_batch` as on any TNCS.
    """

    def open(self):
        """Tell the IMVs of the connection and send the first SDATA (with
        whatever they queued); a Deferred of its BatchOutcome."""
        if self._started or self.finished:
            raise RuntimeError("the TNCS of this mutual PB-TNC exchange has already begun")
        return self._in_turn(self._open)

    async def _open(self) -> BatchOutcome:
        await self._begin()
        return self._send_sdata()
