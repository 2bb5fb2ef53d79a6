"""A road warrior for tests against a real IKEv2 gateway: the scripted
initiator of tests.test_ikev2_sa (nac's IKEv2 codec and crypto) over a UDP
socket, with nac's EAP peer running EAP-TTLS and PT-EAP, whose PB-TNC client
runs the ITA Test collector asking for a given verdict.

Debian's strongSwan has no PT-EAP, so a charon road warrior cannot run a
posture exchange through a charon gateway; this one can.  Run inside the
test's network namespace:

    python -m tests.ikev2_road_warrior --ca CA --identity carol --password PW --command isolate

It prints one JSON object: whether the IKE SA and CHILD_SA were set up, the
traffic selectors the gateway narrowed to, the virtual IP, and the error
notify if any.
"""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path

from nac.client.collectors.test import TestImc
from tests.test_eap_ttls import TtlsPeer
from tests.test_ikev2_sa import ScriptedInitiator
from transports.ikev2.message import (
    Configuration,
    ConfigurationAttributeType,
    Eap,
    ExchangeType,
    IkeMessage,
    Notify,
    NotifyType,
    TSi,
    TSr,
)


class UdpPath:
    """Requests to the gateway and its responses, over one UDP socket."""

    def __init__(self, local: tuple[str, int], gateway: tuple[str, int], timeout: float):
        self.gateway = gateway
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(local)
        self.sock.settimeout(timeout)

    def exchange(self, initiator: ScriptedInitiator, datagrams: list[bytes]):
        """Send the request's datagrams; the inner payloads of the whole response."""
        for data in datagrams:
            self.sock.sendto(data, self.gateway)
        while True:
            data, _ = self.sock.recvfrom(65535)
            message = IkeMessage.parse(data)
            if not message.response or message.message_id != initiator.mid:
                continue  # a retransmission, or the gateway's own request
            inner = initiator.receive_one(data)
            if inner is not None:
                return inner

    def init(self, initiator: ScriptedInitiator) -> str:
        for _ in range(4):
            self.sock.sendto(initiator.ike_sa_init(), self.gateway)
            data, _ = self.sock.recvfrom(65535)
            status = initiator.receive_init(data)
            if status not in ("cookie", "invalid_ke"):
                return status
        return "no answer"


def connect(args) -> dict:
    collector = TestImc(args.command)
    peer = TtlsPeer(Path(args.ca), args.identity, args.password, tnc="pt-eap", imcs=(collector,),
                    tls_version="1.2")
    initiator = ScriptedInitiator(eap_peer=peer, identity=args.identity, address=("127.0.0.1", args.local_port),
                                  esp=args.esp)
    path = UdpPath(("127.0.0.1", args.local_port), (args.gateway, args.port), args.timeout)
    status = path.init(initiator)
    if status != "ok":
        return {"established": False, "error": status}
    inner = path.exchange(initiator, initiator.first_ike_auth())
    eap_request = initiator.check_first_response(inner)
    for _ in range(200):
        response = peer.respond(eap_request)
        inner = path.exchange(initiator, initiator.request(ExchangeType.IKE_AUTH, [Eap(response)]))
        eap = next((p for p in inner if isinstance(p, Eap)), None)
        if eap is None or eap.data[0] != 1:
            break
        eap_request = eap.data
    error = next((NotifyType(p.notify_type).name for p in inner if isinstance(p, Notify) and p.is_error), None)
    if eap is None or eap.data[0] != 3 or error:
        return {"established": False, "eap": None if eap is None else eap.data[0], "error": error}
    peer.respond(eap.data)  # EAP-Success
    initiator.msk = peer.keys()[0]
    inner = path.exchange(initiator, initiator.final_ike_auth())
    error = next((NotifyType(p.notify_type).name for p in inner if isinstance(p, Notify) and p.is_error), None)
    initiator.check_final_response(inner)
    tsr = next((p for p in inner if isinstance(p, TSr)), None)
    tsi = next((p for p in inner if isinstance(p, TSi)), None)
    cfg = next((p for p in inner if isinstance(p, Configuration)), None)
    vip = next((a.value for a in (cfg.attributes if cfg else ())
                if a.attribute_type == ConfigurationAttributeType.INTERNAL_IP4_ADDRESS and a.value), None)
    return {"established": True, "child_sa": tsr is not None and error is None, "error": error,
            "ts_r": [str(ts) for ts in tsr.selectors] if tsr else [],
            "ts_i": [str(ts) for ts in tsi.selectors] if tsi else [],
            "virtual_ip": ".".join(str(b) for b in vip) if vip else None,
            "recommendation": peer.peer.posture.recommendation_label if peer.peer.posture else None}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=500)
    parser.add_argument("--local-port", type=int, default=5600)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--command", default="allow", help="the verdict the Test collector asks for")
    parser.add_argument("--esp", default="aes256gcm16")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args(argv)
    print(json.dumps(connect(args)))


if __name__ == "__main__":
    main()
