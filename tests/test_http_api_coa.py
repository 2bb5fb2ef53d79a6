"""RADIUS accounting and CoA / Disconnect (RFC 2866, RFC 5176) through the
real server (`twistd -n nac` with ``transports = pt-tls, radius, http``,
RADIUS in two processes): Accounting-Requests made with hashlib alone sent
over UDP to its accounting port, CoA-Requests and Disconnect-Requests the
server sends to a test NAS (its Dynamic Authorization Server on a loopback
port) when an operator asks through ``POST /api/accounting/{id}/coa`` and
``/disconnect`` or the web console's NAS sessions page; ``/metrics`` read
over HTTPS counts every one of them exactly."""

from __future__ import annotations

import re
import socket

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, threads
from twisted.trial import unittest

from tests.test_console_web import Browser
from tests.test_http_api import HttpApiServer
from tests.test_radius_accounting import acct_request, start, u32
from tests.nacserver import free_port
from tests.radius_nas import NasListener
from transports.radius.packet import Code

SECRET = "coa-api-secret"


def sample(text: str, name: str, **labels) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


class CoaApiTests(HttpApiServer, unittest.TestCase):
    timeout = 180

    def setUp(self):
        self.nas = NasListener(SECRET.encode())
        self.addCleanup(self.nas.stop)
        self.acct_port = free_port(socket.SOCK_DGRAM)
        self.other_sections = {
            "nac": {"transports": "pt-tls, radius, http", "imvs": "scanner"},
            "radius": {"listen": "127.0.0.1", "port": free_port(socket.SOCK_DGRAM), "acct_port": self.acct_port,
                       "coa_timeout": "0.2", "coa_attempts": "2", "workers": "2"},
            "radius-client:sw1": {"address": "127.0.0.1", "secret": SECRET, "coa_port": self.nas.port},
        }
        super().setUp()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(3.0)
        self.addCleanup(self.sock.close)

    # -- helpers -----------------------------------------------------------------------------

    def send(self, data: bytes, answered: bool = True) -> bytes | None:
        """Send one datagram to the accounting port; its answer (None if none came)."""
        self.sock.sendto(data, ("127.0.0.1", self.acct_port))
        try:
            reply, _ = self.sock.recvfrom(4096)
        except socket.timeout:
            reply = None
        if answered:
            self.assertIsNotNone(reply, self.server.log_text()[-3000:])
        else:
            self.assertIsNone(reply)
        return reply

    def account(self, session: bytes, status: int = 1, identifier: int = 1, station: bytes = b"02-00-00-00-00-09"):
        """An Accounting-Request for ``session`` as the NAS sends it; the id of its accounting session."""
        self.send(acct_request(start(session=session, status=status, station=station), identifier=identifier,
                               secret=SECRET.encode()))
        rows = self.admin("--json", "accounting", "list", "--limit", "100")
        [row] = [r for r in rows if r["acct_session_id"] == session.decode()]
        return row["id"]

    def coa(self, pk, body, token="admin"):
        return self.call("POST", f"/api/accounting/{pk}/coa", body, token=token)

    # -- tests -------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_metrics_count_accounting_and_coa_exactly(self):
        secret = SECRET.encode()
        yield threads.deferToThread(self.send, acct_request(u32(40, 7), identifier=1, secret=secret))  # On
        yield threads.deferToThread(self.send, acct_request(u32(40, 8), identifier=2, secret=secret))  # Off
        for n, status in enumerate((1, 3, 2), 3):  # Start, Interim-Update, Stop
            yield threads.deferToThread(self.account, b"m-1", status, n)
        row = yield threads.deferToThread(self.account, b"m-2", 1, 6)
        # the same datagram again: a retransmission, answered from the cache
        again = acct_request(start(session=b"m-2", station=b"02-00-00-00-00-09"), identifier=6, secret=secret)
        yield threads.deferToThread(self.send, again)
        # a wrong secret, and bytes that are no RADIUS packet: no answer
        yield threads.deferToThread(self.send, acct_request(start(session=b"m-3"), identifier=7, secret=b"wrong"),
                                    False)
        yield threads.deferToThread(self.send, b"\x04\x08\x00\x05x", False)

        status, body = yield self.coa(row, {"access": "isolate"})
        self.assertEqual(status, 200, body)
        self.nas.nak_cause = 501  # Administratively-Prohibited
        status, body = yield self.coa(row, {"access": "allowed"})
        self.assertEqual(status, 409, body)
        self.nas.nak_cause, self.nas.drop = None, 2
        status, body = yield self.call("POST", f"/api/accounting/{row}/disconnect")
        self.assertEqual(status, 502, body)

        status, text = yield self.call("GET", "/metrics", token=None)
        self.assertEqual(status, 200)
        expected = {
            # the retransmission and the Start with a wrong secret are requests too
            ("nac_radius_accounting_requests_total", (("type", "start"),)): 4,
            ("nac_radius_accounting_requests_total", (("type", "interim_update"),)): 1,
            ("nac_radius_accounting_requests_total", (("type", "stop"),)): 1,
            ("nac_radius_accounting_requests_total", (("type", "accounting_on"),)): 1,
            ("nac_radius_accounting_requests_total", (("type", "accounting_off"),)): 1,
            ("nac_radius_accounting_requests_total", (("type", "other"),)): 0,
            # the retransmission's answer is the cached one, not another response
            ("nac_radius_accounting_responses_total", ()): 6,
            ("nac_radius_accounting_duplicate_requests_total", ()): 1,
            ("nac_radius_accounting_status_servers_total", ()): 0,
            ("nac_radius_accounting_dropped_total", (("reason", "bad_authenticator"),)): 1,
            ("nac_radius_accounting_dropped_total", (("reason", "malformed"),)): 1,
            ("nac_radius_accounting_dropped_total", (("reason", "unknown_client"),)): 0,
            ("nac_radius_accounting_dropped_total", (("reason", "rate_limited"),)): 0,
            ("nac_radius_accounting_dropped_total", (("reason", "backlog"),)): 0,
            ("nac_radius_accounting_dropped_total", (("reason", "not_recorded"),)): 0,
            ("nac_radius_accounting_pending", ()): 0,
            ("nac_radius_coa_requests_total", (("kind", "coa"),)): 2,
            ("nac_radius_coa_requests_total", (("kind", "disconnect"),)): 1,
            ("nac_radius_coa_retransmissions_total", (("kind", "coa"),)): 0,
            ("nac_radius_coa_retransmissions_total", (("kind", "disconnect"),)): 1,
            ("nac_radius_coa_acks_total", (("kind", "coa"),)): 1,
            ("nac_radius_coa_acks_total", (("kind", "disconnect"),)): 0,
            ("nac_radius_coa_naks_total", (("error_cause", "administratively_prohibited"), ("kind", "coa"))): 1,
            ("nac_radius_coa_timeouts_total", (("kind", "coa"),)): 0,
            ("nac_radius_coa_timeouts_total", (("kind", "disconnect"),)): 1,
            ("nac_radius_coa_in_flight", ()): 0,
        }
        found = {key: sample(text, key[0], **dict(key[1])) for key in expected}
        self.assertEqual(found, expected, text)
        self.assertEqual(len(self.nas.received), 4)
        for family in ("nac_radius_accounting_requests_total", "nac_radius_accounting_dropped_total",
                       "nac_radius_coa_naks_total", "nac_radius_coa_in_flight"):
            self.assertEqual(len(re.findall(rf"^# TYPE {family} ", text, re.M)), 1, family)
            self.assertRegex(text, rf"(?m)^# HELP {family} \S")

    @defer.inlineCallbacks
    def test_coa_and_disconnect_through_the_api(self):
        row = yield threads.deferToThread(self.account, b"api-1")
        status, body = yield self.coa(row, {"access": "isolate"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body, {"id": row, "nas": "sw1", "action": "coa", "acked": True, "nak": False,
                                "error_cause": None, "attempts": 1, "result": "CoA-ACK"})
        [(_, _, packet)] = self.nas.received
        self.assertEqual((packet.code, packet.value(11), packet.value(44), packet.value(31), packet.value(1)),
                         (Code.COA_REQUEST, "isolate", "api-1", "02-00-00-00-00-09", "carol"))
        # recorded with the session, and in the audit log
        status, listing = yield self.call("GET", "/api/accounting", token="reader")
        [item] = [i for i in listing["items"] if i["id"] == row]
        self.assertEqual((item["coa_action"], item["coa_result"]), ("coa", "CoA-ACK"))
        status, audit = yield self.call("GET", "/api/audit", token="reader")
        entry = audit["items"][0]
        self.assertEqual((entry["actor"], entry["action"], entry["resource"], entry["target"]),
                         ("token:admin", "coa", "accounting", str(row)))
        self.assertEqual((entry["details"]["request"], entry["details"]["outcome"]["result"]),
                         ({"access": "isolate"}, "CoA-ACK"))

        # a read-only token is refused, and nothing is sent
        status, body = yield self.coa(row, {"access": "allowed"}, token="reader")
        self.assertEqual((status, body["error"]["code"]), (403, "forbidden"))
        status, body = yield self.call("POST", f"/api/accounting/{row}/disconnect", token="reader")
        self.assertEqual(status, 403)
        # bad input, an unknown session
        for bad in ({}, {"access": "open"}, {"access": "isolate", "vlan": 3}):
            status, body = yield self.coa(row, bad)
            self.assertEqual(status, 400, (bad, body))
        status, body = yield self.coa(999999, {"access": "isolate"})
        self.assertEqual(status, 404, body)
        status, body = yield self.call("POST", f"/api/accounting/{row}/disconnect", {"now": True})
        self.assertEqual((status, body["error"]["field"]), (400, "now"))
        self.assertEqual(len(self.nas.received), 1)

        # a NAK: 409 with the outcome
        self.nas.nak_cause = 501
        status, body = yield self.coa(row, {"access": "allowed"})
        self.assertEqual(status, 409, body)
        self.assertEqual((body["error"]["code"], body["outcome"]["nak"], body["outcome"]["error_cause"]),
                         ("nak", True, 501))
        self.assertEqual(self.nas.received[-1][2].value(11), "allow")
        # no answer: 502 after every try
        self.nas.nak_cause, self.nas.drop = None, 2
        status, body = yield self.call("POST", f"/api/accounting/{row}/disconnect")
        self.assertEqual(status, 502, body)
        self.assertEqual((body["error"]["code"], body["outcome"]["result"]), ("no_answer", "no answer after 2 tries"))
        # 'denied' ends the session: a Disconnect-Request, ACKed
        status, body = yield self.coa(row, {"access": "denied"})
        self.assertEqual((status, body["action"], body["acked"]), (200, "disconnect", True), body)
        self.assertEqual([p.code for _, _, p in self.nas.received[-3:]], [Code.DISCONNECT_REQUEST] * 3)
        status, listing = yield self.call("GET", "/api/accounting?open=true", token="reader")
        self.assertNotIn(row, [i["id"] for i in listing["items"]])
        status, audit = yield self.call("GET", "/api/audit", token="reader")
        self.assertEqual([e["action"] for e in audit["items"][:4]], ["disconnect", "disconnect", "coa", "coa"])

    @defer.inlineCallbacks
    def test_console_isolates_allows_and_disconnects(self):
        self.admin("console-user", "add", "alice", "--role", "admin", "--password", "alice-pw")
        self.admin("console-user", "add", "rita", "--role", "read", "--password", "rita-pw")
        row = yield threads.deferToThread(self.account, b"console-1")
        base = f"https://127.0.0.1:{self.http_port}"
        reader = Browser(self.agent, base)
        response, _ = yield reader.login("rita", "rita-pw")
        self.assertEqual(response.code, 303)
        response, page = yield reader.get("/console/accounting")
        self.assertEqual(response.code, 200, page)
        self.assertIn("console-1", page)
        self.assertNotIn('value="isolate"', page, "a read-only login is offered the actions")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        response, _ = yield reader.post(f"/console/accounting/{row}", {"csrf": csrf, "action": "isolate"})
        self.assertEqual(response.code, 403)

        admin = Browser(self.agent, base)
        response, _ = yield admin.login("alice", "alice-pw")
        self.assertEqual(response.code, 303)
        response, page = yield admin.get("/console/accounting")
        self.assertIn(f'action="/console/accounting/{row}"', page)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        # without the CSRF token: refused, nothing sent
        response, _ = yield admin.post(f"/console/accounting/{row}", {"action": "isolate"})
        self.assertEqual(response.code, 403)
        self.assertEqual(self.nas.received, [])
        response, page = yield admin.post(f"/console/accounting/{row}", {"csrf": csrf, "action": "isolate"})
        self.assertEqual(response.code, 200, page)
        self.assertRegex(page, r'id="outcome" data-acked="yes">coa for accounting session \d+ \(sw1\): CoA-ACK<')
        response, page = yield admin.post(f"/console/accounting/{row}", {"csrf": csrf, "action": "allow"})
        self.assertEqual(response.code, 200, page)
        response, page = yield admin.post(f"/console/accounting/{row}", {"csrf": csrf, "action": "disconnect"})
        self.assertEqual(response.code, 200, page)
        self.assertEqual([(p.code, p.value(11)) for _, _, p in self.nas.received],
                         [(Code.COA_REQUEST, "isolate"), (Code.COA_REQUEST, "allow"),
                          (Code.DISCONNECT_REQUEST, None)])
        self.assertNotIn(f"acct-{row}", page, "a disconnected session is still listed as open")
        response, _ = yield admin.post(f"/console/accounting/{row}", {"csrf": csrf, "action": "reboot"})
        self.assertEqual(response.code, 400)
        status, audit = yield self.call("GET", "/api/audit", token="reader")
        self.assertEqual([(e["actor"], e["action"], e["resource"]) for e in audit["items"][:3]],
                         [("console:alice", "disconnect", "accounting"), ("console:alice", "coa", "accounting"),
                          ("console:alice", "coa", "accounting")])
