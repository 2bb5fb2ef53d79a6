"""The HTTP API's resource without sockets: HTTP/1.1 bytes fed to
``ApiSite``'s protocol over a ``StringTransport``, the policy store on a
SQLite file.  Bad input found by fuzzing answers 4xx in the API's own
shapes (strongTNC's ``{"detail"}`` on the sw-collector endpoints), never
500; the rate limiter is driven by a ``Clock``.  The end-to-end tests over
TLS are in test_http_api.py."""

from __future__ import annotations

import json

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from nac.db import manage
from nac.db.store import PolicyStore
from tests.test_db import DatabaseMixin, SqliteBackend
from transports.http.api import ApiResource, ApiSettings, ApiSite, RateLimiter


TAG = ('<SoftwareIdentity xmlns="http://standards.iso.org/iso/19770/-2/2015/schema.xsd" name="bash" '
       'tagId="Debian_12-x86_64-bash-5.2.15-2+b8" version="5.2.15-2+b8"><Entity name="strongSwan Project" '
       'regid="strongswan.org" role="tagCreator"/></SoftwareIdentity>')
SOFTWARE_ID = "strongswan.org__Debian_12-x86_64-bash-5.2.15-2+b8"


class RecordingApi(ApiResource):
    """Keeps a Deferred per request that fires once its response is written."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.finished: list[defer.Deferred] = []

    def render(self, request):
        self.finished.append(request.notifyFinish())
        return super().render(request)


class ResourceTests(SqliteBackend, DatabaseMixin, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.store = PolicyStore(self.engine, inline=False)
        self.store.start()
        self.addCleanup(self.store.stop)
        self.api = RecordingApi(self.store, ApiSettings(max_body_size=2048, rate=0))
        self.site = ApiSite(self.api)
        _, self.token = self.store.db.run(manage.add_token, "admin", "admin")

    @defer.inlineCallbacks
    def request(self, method: str, path: str, body: bytes | None = None, auth: str | None = None):
        """(status, decoded body) of one request on a new connection."""
        channel = self.site.buildProtocol(IPv4Address("TCP", "192.0.2.1", 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 40000))
        channel.makeConnection(transport)
        head = [f"{method} {path} HTTP/1.1", "Host: nac.test", "Connection: close",
                f"Authorization: {auth or 'Bearer ' + self.token}"]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        channel.dataReceived(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
        self.assertEqual(len(self.api.finished), 1)
        yield self.api.finished.pop()
        status_line, _, rest = transport.value().partition(b"\r\n")
        payload = rest.partition(b"\r\n\r\n")[2]
        if b"Transfer-Encoding: chunked" in rest.partition(b"\r\n\r\n")[0]:
            payload = _unchunk(payload)
        return int(status_line.split()[1]), json.loads(payload)

    @defer.inlineCallbacks
    def test_ids_of_non_ascii_digits_are_not_found(self):
        # "²".isdigit() is true and int("²") fails: these were 500s
        status, body = yield self.request("GET", "/api/groups/%C2%B2")
        self.assertEqual((status, body["error"]["code"]), (404, "not_found"))
        status, _ = yield self.request("POST", "/api/swid/add-tags/", json.dumps({"data": [TAG]}).encode())
        self.assertEqual(status, 200)
        status, body = yield self.request("POST", "/api/sessions/%C2%B2/swid-measurement/", json.dumps(
            {"data": [SOFTWARE_ID]}).encode())
        self.assertEqual((status, body), (404, {"detail": 'Session with id "\u00b2" not found'}))
        status, body = yield self.request("POST", "/api/groups", json.dumps(
            {"name": "g", "vlan_allow": "\u00b2"}).encode())
        self.assertEqual((status, body["vlan_allow"]), (201, "\u00b2"))  # a VLAN name, not a number

    @defer.inlineCallbacks
    def test_sw_collector_endpoints_answer_bad_json_in_strongtncs_shape(self):
        for path in ("/api/swid/add-tags/", "/api/sessions/1/swid-measurement/", "/api/sessions/1/swid-events/"):
            status, body = yield self.request("POST", path, b"\x00")
            self.assertEqual(status, 400, path)
            self.assertTrue(body["detail"].startswith("JSON parse error - "), body)
        # the REST API's own resources keep their error object
        status, body = yield self.request("POST", "/api/groups", b"\x00")
        self.assertEqual((status, body["error"]["field"]), (400, "body"))

    @defer.inlineCallbacks
    def test_software_ids_must_be_strings(self):
        status, body = yield self.request("POST", "/api/sessions/1/swid-measurement/", b'{"data": [{}]}')
        self.assertEqual((status, body), (400, {"detail": "A software ID is not a string"}))

    @defer.inlineCallbacks
    def test_a_body_beyond_the_limit_is_413_before_authentication(self):
        status, body = yield self.request("POST", "/api/groups", b"{" + b" " * 2048 + b"}", auth="Bearer wrong")
        self.assertEqual((status, body["error"]["code"]), (413, "too_large"))
        status, body = yield self.request("POST", "/api/groups", b"{" + b" " * 2000 + b'"name": "g"}')
        self.assertEqual(status, 201, body)


class RateLimiterTests(unittest.TestCase):
    def test_a_burst_then_the_rate(self):
        clock = Clock()
        limiter = RateLimiter(rate=2.0, burst=3, clock=clock.seconds)
        self.assertEqual([limiter.allow("a") for _ in range(4)], [True, True, True, False])
        self.assertTrue(limiter.allow("b"))  # a bucket per client
        clock.advance(0.5)
        self.assertEqual([limiter.allow("a") for _ in range(2)], [True, False])
        clock.advance(10)
        self.assertEqual(sum(limiter.allow("a") for _ in range(10)), 3)  # never more than the burst

    def test_no_rate_no_limit(self):
        limiter = RateLimiter(rate=0, burst=1, clock=Clock().seconds)
        self.assertTrue(all(limiter.allow("a") for _ in range(100)))


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, data = out + data[:n], data[n + 2:]
    return out
