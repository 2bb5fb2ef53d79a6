"""The web console through real HTTPS: the HTTP service of nac (API and
console) listening with TLS in this process, the policy store on a SQLite
file, requests by Twisted's Agent trusting the demo CA.  A test for every
protection, which fails without it: the CSRF token, the login lock-out,
the admin role for changes, the session cookie's flags, HTML escaping of
what endpoints send, body and page limits.  The browser tests are in
test_console_browser.py."""

from __future__ import annotations

import datetime
import gzip
import re
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import sqlalchemy as sa
from twisted.internet import defer, reactor, ssl
from twisted.trial import unittest
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, readBody
from twisted.web.http_headers import Headers

from nac import metrics
from nac.certs import ensure_demo_pki
from nac.db import manage
from nac.db.models import AssessmentSession, Device, ImvResult, Measurement, Product
from nac.db.store import PolicyStore
from nac.ifimv import ActionRecommendation as A, EvaluationResult as E
from nac.tls import server_context
from tests.test_db import DatabaseMixin, SqliteBackend
from tests.test_http_api import Body
from transports.http.api import ApiSettings
from transports.http.console import ConsoleResource, ConsoleSessions, ConsoleSettings
from transports.http.plugin import HttpService

EVIL = '<script>alert("pwned")</script>'


class Browser:
    """A client with a cookie jar of its own (name → value) that keeps
    the raw Set-Cookie headers it received."""

    def __init__(self, agent: Agent, base: str):
        self.agent, self.base = agent, base
        self.cookies: dict[str, str] = {}
        self.set_cookies: list[str] = []

    @defer.inlineCallbacks
    def request(self, method: str, path: str, form: dict | None = None, raw: bytes | None = None,
                content_type: str = "application/x-www-form-urlencoded", cookies: bool = True):
        headers = {}
        if cookies and self.cookies:
            headers[b"cookie"] = ["; ".join(f"{k}={v}" for k, v in self.cookies.items()).encode()]
        data = raw if raw is not None else (None if form is None else urlencode(form, doseq=True).encode())
        if data is not None:
            headers[b"content-type"] = [content_type.encode()]
        response = yield self.agent.request(method.encode(), (self.base + path).encode(), Headers(headers),
                                            Body(data) if data is not None else None)
        body = (yield readBody(response)).decode("utf-8", "replace")
        for line in response.headers.getRawHeaders(b"set-cookie", []):
            text = line.decode("latin-1")
            self.set_cookies.append(text)
            jar = SimpleCookie()
            jar.load(text)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response, body

    def get(self, path: str):
        return self.request("GET", path)

    def post(self, path: str, form: dict):
        return self.request("POST", path, form)

    @defer.inlineCallbacks
    def csrf(self, path: str) -> str:
        response, body = yield self.get(path)
        found = re.search(r'name="csrf" value="([^"]+)"', body)
        if found is None:
            raise AssertionError(f"no CSRF token on {path}: {response.code} {body[:500]}")
        return found.group(1)

    @defer.inlineCallbacks
    def login(self, name: str, password: str):
        token = yield self.csrf("/console/login")
        response, body = yield self.post("/console/login", {"csrf": token, "name": name, "password": password,
                                                             "next": "/console/"})
        return response, body


class ConsoleServerMixin(SqliteBackend, DatabaseMixin):
    """nac's HTTP service with the console on a free port of 127.0.0.1,
    console users ``alice`` (admin) and ``rita`` (read)."""

    max_body_size = 64 * 1024
    console = ConsoleSettings(max_failures=3, lockout=60.0, failure_delay=0.01)

    def setUp(self):
        super().setUp()
        # a loaded test machine may take seconds for what takes milliseconds
        self.store = PolicyStore(self.engine, inline=False, timeout=60.0)
        self.store.start()
        self.addCleanup(self.store.stop)
        pki = ensure_demo_pki(Path(self.mktemp()))
        context = server_context(cert=pki.server_cert, key=pki.server_key, ca=None, client_cert="none",
                                 min_tls_version="1.2", ciphers=None, origin="test", section="http")
        self.service = HttpService(None, self.store, ApiSettings(max_body_size=self.max_body_size, rate=0),
                                   context, 0, "127.0.0.1", console=self.console)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        port = self.service.listener.getHost().port
        self.agent = Agent(reactor, BrowserLikePolicyForHTTPS(
            trustRoot=ssl.Certificate.loadPEM(pki.ca_cert.read_bytes())))
        self.base = f"https://127.0.0.1:{port}"
        self.store.db.run(manage.add_console_user, "alice", "alice-pw", "admin")
        self.store.db.run(manage.add_console_user, "rita", "rita-pw", "read")

    def browser(self) -> Browser:
        return Browser(self.agent, self.base)

    @defer.inlineCallbacks
    def logged_in(self, name: str = "alice") -> Browser:
        browser = self.browser()
        response, body = yield browser.login(name, f"{name}-pw")
        self.assertEqual(response.code, 303, body)
        return browser

    def add_session(self, device_id: str, access: str = "isolate", reason: str = "port 22 is open",
                    identity: str = "carol", product: str = "Debian 12 x86_64",
                    age: float = 0.0) -> tuple[int, int]:
        """A device and a decided session of it with two IMV results, straight into the database."""
        def write(session):
            found = session.scalar(sa.select(Product).where(Product.name == product))
            if found is None:
                found = Product(name=product)
                session.add(found)
                session.flush()
            device = session.scalar(sa.select(Device).where(Device.device_id == device_id))
            if device is None:
                device = Device(device_id=device_id, product_id=found.id)
                session.add(device)
                session.flush()
            rec = {"allowed": A.ALLOW, "isolate": A.ISOLATE, "denied": A.NO_ACCESS}[access]
            ended = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=age)
            row = AssessmentSession(connection_id=1, identity=identity, device_id=device.id, transport="pt-tls",
                                    peer_address="192.0.2.9", peer_port=40000,
                                    started=ended - datetime.timedelta(seconds=1.5), ended=ended, recommendation=rec,
                                    evaluation=E.NONCOMPLIANT_MINOR, access=access, reason=reason)
            session.add(row)
            session.flush()
            session.add_all([ImvResult(session_id=row.id, imv_id=1, imv_name="scanner", recommendation=rec,
                                       evaluation=E.NONCOMPLIANT_MINOR, reason=reason,
                                       remediation="close the port"),
                             ImvResult(session_id=row.id, imv_id=2, imv_name="os", recommendation=A.ALLOW,
                                       evaluation=E.COMPLIANT)])
            return device.id, row.id
        return self.store.db.run(write)


class LoginTests(ConsoleServerMixin, unittest.TestCase):

    @defer.inlineCallbacks
    def test_pages_need_a_login_and_a_login_opens_them(self):
        browser = self.browser()
        response, _ = yield browser.get("/console/devices")
        self.assertEqual(response.code, 303)
        self.assertEqual(response.headers.getRawHeaders(b"location"), [b"/console/login?next=%2Fconsole%2Fdevices"])
        response, body = yield browser.login("alice", "alice-pw")
        self.assertEqual(response.code, 303, body)
        response, body = yield browser.get("/console/devices")
        self.assertEqual(response.code, 200)
        self.assertIn("alice (admin)", body)
        # logging out ends the session on the server, not only in the browser
        session = browser.cookies["nac_console"]
        token = yield browser.csrf("/console/overview")
        response, _ = yield browser.post("/console/logout", {"csrf": token})
        self.assertEqual(response.code, 303)
        browser.cookies["nac_console"] = session
        response, _ = yield browser.get("/console/devices")
        self.assertEqual(response.code, 303)

    @defer.inlineCallbacks
    def test_the_session_cookie_is_secure_http_only_and_same_site_strict(self):
        browser = yield self.logged_in()
        [line] = [c for c in browser.set_cookies if c.startswith("nac_console=")]
        attributes = {part.strip().split("=")[0].lower(): part.strip() for part in line.split(";")[1:]}
        self.assertIn("secure", attributes)
        self.assertIn("httponly", attributes)
        self.assertEqual(attributes["samesite"].lower(), "samesite=strict")
        self.assertEqual(attributes["path"], "Path=/console")
        # the session id is long and random
        self.assertGreaterEqual(len(browser.cookies["nac_console"]), 40)

    @defer.inlineCallbacks
    def test_a_wrong_password_three_times_locks_the_login(self):
        browser = self.browser()
        for _ in range(3):
            response, body = yield browser.login("alice", "guess")
            self.assertEqual(response.code, 401)
            self.assertIn("Wrong user name or password", body)
        response, body = yield browser.login("alice", "alice-pw")
        self.assertEqual(response.code, 429, body)
        self.assertIn("locked", body)
        self.assertNotIn("nac_console", browser.cookies)
        # the lock-out is of that user name from this source: another user still logs in
        response, _ = yield browser.login("rita", "rita-pw")
        self.assertEqual(response.code, 303)

    @defer.inlineCallbacks
    def test_the_lock_out_ends(self):
        console = self.service.console
        now = [1000.0]
        console.logins.throttle.lockout = 60.0
        console.logins._clock = _FakeClock(now, console.clock)
        browser = self.browser()
        for _ in range(3):
            yield browser.login("rita", "nope")
        response, _ = yield browser.login("rita", "rita-pw")
        self.assertEqual(response.code, 429)
        now[0] += 61
        response, _ = yield browser.login("rita", "rita-pw")
        self.assertEqual(response.code, 303)

    @defer.inlineCallbacks
    def test_a_disabled_user_is_logged_out_and_cannot_log_in(self):
        browser = yield self.logged_in("rita")
        self.store.db.run(manage.update_console_user, "rita", {"enabled": False})
        response, _ = yield browser.get("/console/overview")
        self.assertEqual(response.code, 303)
        response, _ = yield self.browser().login("rita", "rita-pw")
        self.assertEqual(response.code, 401)

    @defer.inlineCallbacks
    def test_the_login_form_needs_its_csrf_token(self):
        browser = self.browser()
        yield browser.get("/console/login")
        response, body = yield browser.post("/console/login", {"name": "alice", "password": "alice-pw"})
        self.assertEqual(response.code, 403)
        self.assertNotIn("nac_console", browser.cookies)
        response, _ = yield browser.post("/console/login", {"name": "alice", "password": "alice-pw",
                                                            "csrf": "0" * 64})
        self.assertEqual(response.code, 403)

    @defer.inlineCallbacks
    def test_after_login_only_console_pages_are_next(self):
        for wanted, location in (("//evil.example/", b"/console/"), ("https://evil.example/", b"/console/"),
                                 ("/console/\r\nSet-Cookie: x=y", b"/console/"), ("/console/login", b"/console/"),
                                 ("/console/devices/7", b"/console/devices/7")):
            browser = self.browser()
            token = yield browser.csrf("/console/login")
            response, _ = yield browser.post("/console/login", {"csrf": token, "name": "alice",
                                                                "password": "alice-pw", "next": wanted})
            self.assertEqual(response.headers.getRawHeaders(b"location"), [location], wanted)


class WithoutConsoleTests(ConsoleServerMixin, unittest.TestCase):
    """``[http] console = no``: the API alone."""

    console = None

    @defer.inlineCallbacks
    def test_there_is_no_console_and_the_root_is_the_apis(self):
        browser = self.browser()
        for path in ("/console/", "/console/login", "/"):
            response, body = yield browser.get(path)
            self.assertEqual(response.code, 404, path)
            self.assertIn('"code": "not_found"', body)

    @defer.inlineCallbacks
    def test_with_the_console_the_root_leads_to_it(self):
        self.service.site.resource.console = self.service.console = ConsoleResource(self.store)
        response, _ = yield self.browser().get("/")
        self.assertEqual((response.code, response.headers.getRawHeaders(b"location")), (302, [b"/console/"]))


class ConfigurationTests(SqliteBackend, DatabaseMixin, unittest.TestCase):
    """The ``[http] console*`` options as the plugin reads them."""

    def service(self, **options):
        from nac import config as nac_config
        from transports.http.plugin import transport

        transport.declare_options()
        state = Path(self.mktemp())
        overrides = {("nac", "state_dir"): str(state), ("nac", "transports"): "pt-tls, http",
                     **{("http", k): v for k, v in options.items()}}
        cfg = nac_config.load(None, overrides)
        return transport.make_service(cfg, None, PolicyStore(self.engine, inline=False), None)

    def test_the_console_is_on_by_default_and_its_options_apply(self):
        console = self.service().console
        self.assertEqual((console.settings.max_failures, console.settings.lockout, console.settings.idle_timeout),
                         (3, 300.0, 1800.0))
        console = self.service(console_max_failures="5", console_lockout="1m", console_idle_timeout="2h").console
        self.assertEqual((console.settings.max_failures, console.settings.lockout, console.settings.idle_timeout),
                         (5, 60.0, 7200.0))
        self.assertEqual(console.logins.throttle.max_failures_per_user, 5)
        self.assertEqual(console.sessions.idle, 7200.0)

    def test_console_no_serves_the_api_alone(self):
        self.assertIsNone(self.service(console="no").console)


class _FakeClock:
    """``seconds()`` from a list, everything else from the reactor."""

    def __init__(self, now: list, reactor):
        self.now, self.reactor = now, reactor

    def seconds(self) -> float:
        return self.now[0]

    def __getattr__(self, name):
        return getattr(self.reactor, name)


class ProtectionTests(ConsoleServerMixin, unittest.TestCase):

    @defer.inlineCallbacks
    def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(self):
        browser = yield self.logged_in()
        for token in (None, "", "x" * 43):
            form = {"name": "lab"} if token is None else {"name": "lab", "csrf": token}
            response, body = yield browser.post("/console/groups", form)
            self.assertEqual(response.code, 403, body)
            self.assertIn("security token", body)
        self.assertEqual([g["name"] for g in self.store.db.run(manage.list_groups)], ["default"])
        # another session's token is not this one's
        other = yield self.logged_in()
        theirs = yield other.csrf("/console/policies")
        response, _ = yield browser.post("/console/groups", {"name": "lab", "csrf": theirs})
        self.assertEqual(response.code, 403)
        mine = yield browser.csrf("/console/policies")
        response, _ = yield browser.post("/console/groups", {"name": "lab", "csrf": mine})
        self.assertEqual(response.code, 303)
        self.assertEqual([g["name"] for g in self.store.db.run(manage.list_groups)], ["default", "lab"])

    @defer.inlineCallbacks
    def test_a_read_only_user_sees_no_edit_forms_and_a_post_is_403(self):
        pk, _ = self.add_session("device-1")
        policy = self.store.db.run(manage.add_policy, {"name": "ports", "type": "blocked-tcp-ports",
                                                       "argument": "22"})
        browser = yield self.logged_in("rita")
        for path in ("/console/policies", f"/console/devices/{pk}"):
            response, body = yield browser.get(path)
            self.assertEqual(response.code, 200)
            self.assertNotIn('class="row edit"', body)
            self.assertNotIn("edit\"", body)
            self.assertNotIn("<button type=\"submit\" name=\"action\"", body)
        token = yield browser.csrf("/console/policies")
        for path, form in ((f"/console/policies/{policy['id']}", {"name": "ports", "type": "blocked-tcp-ports",
                                                                  "argument": "23", "rec_fail": "block",
                                                                  "rec_noresult": "none"}),
                           ("/console/groups", {"name": "lab"}),
                           (f"/console/devices/{pk}", {"groups": "default"}),
                           ("/console/admin/users", {"name": "x", "password": "y", "role": "admin"})):
            response, body = yield browser.post(path, {**form, "csrf": token})
            self.assertEqual(response.code, 403, path)
        self.assertEqual(self.store.db.run(manage.list_policies)[0]["argument"], "22")
        self.assertEqual([u["name"] for u in self.store.db.run(manage.list_console_users)], ["alice", "rita"])
        response, _ = yield browser.get("/console/admin")
        self.assertEqual(response.code, 403)
        # the same requests as an admin do change
        admin = yield self.logged_in("alice")
        token = yield admin.csrf("/console/policies")
        response, body = yield admin.post(f"/console/policies/{policy['id']}", {
            "name": "ports", "type": "blocked-tcp-ports", "argument": "23", "rec_fail": "block",
            "rec_noresult": "none", "csrf": token, "action": "save"})
        self.assertEqual(response.code, 303, body)
        self.assertEqual(self.store.db.run(manage.list_policies)[0]["argument"], "23")

    @defer.inlineCallbacks
    def test_what_endpoints_send_is_escaped(self):
        pk, sid = self.add_session(EVIL, reason=f"bad {EVIL}", identity=EVIL, product=EVIL)
        browser = yield self.logged_in("rita")
        for path in ("/console/devices", f"/console/devices/{pk}", f"/console/sessions/{sid}", "/console/sessions",
                     "/console/overview", "/console/devices?q=" + "%3Cscript%3E"):
            response, body = yield browser.get(path)
            self.assertEqual(response.code, 200, path)
            self.assertNotIn("<script>alert", body, path)
            self.assertIn("&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;", body, path)
        # and no inline script may run but the page's own (nonce)
        csp = response.headers.getRawHeaders(b"content-security-policy")[0].decode()
        self.assertIn("script-src 'nonce-", csp)
        self.assertNotIn("unsafe-inline", csp)

    @defer.inlineCallbacks
    def test_bad_input_is_a_4xx_never_a_500(self):
        browser = yield self.logged_in()
        for path, code in (("/console/devices/abc", 404), ("/console/devices/%C2%B2", 404),
                           ("/console/devices/99999", 404), ("/console/sessions/1", 404),
                           ("/console/devices?page=0", 400), ("/console/devices?page=x", 400),
                           ("/console/devices?decision=maybe", 400), ("/console/nowhere", 404),
                           ("/console/sessions?access=x", 400)):
            response, body = yield browser.get(path)
            self.assertEqual(response.code, code, path)
        token = yield browser.csrf("/console/policies")
        response, _ = yield browser.request("POST", "/console/groups", raw=b'{"name": "x"}',
                                            content_type="application/json")
        self.assertEqual(response.code, 415)
        response, _ = yield browser.request("POST", "/console/groups", raw=b"csrf=" + token.encode() + b"&name=\xff")
        self.assertEqual(response.code, 400)
        response, _ = yield browser.request("GET", "/console/groups")
        self.assertEqual(response.code, 405)

    @defer.inlineCallbacks
    def test_form_bodies_are_limited(self):
        browser = yield self.logged_in()
        token = yield browser.csrf("/console/policies")
        response, body = yield browser.post("/console/groups", {"csrf": token, "name": "big",
                                                                "description": "x" * (self.max_body_size + 1)})
        self.assertEqual(response.code, 413, body)
        self.assertEqual(len(self.store.db.run(manage.list_groups)), 1)


class PageTests(ConsoleServerMixin, unittest.TestCase):

    @defer.inlineCallbacks
    def test_overview_counts_decisions_and_lists_restricted_devices(self):
        self.add_session("laptop-1", "isolate", "port 22 is open")
        self.add_session("laptop-2", "denied", "port 22 is open")
        self.add_session("laptop-3", "allowed", "")
        self.add_session("laptop-4", "allowed", "", age=3.5 * 3600)
        self.add_session("laptop-5", "allowed", "", age=25 * 3600)
        browser = yield self.logged_in("rita")
        response, body = yield browser.get("/console/")
        self.assertEqual(response.code, 200)
        hour = body[body.index('id="totals-hour"'):body.index('id="totals-day"')]
        self.assertRegex(hour, r"(?s)allowed</span> <b>1</b>.*isolate</span> <b>1</b>.*denied</span> <b>1</b>")
        day = body[body.index('id="totals-day"'):]
        self.assertRegex(day, r"(?s)allowed</span> <b>2</b>.*isolate</span> <b>1</b>.*denied</span> <b>1</b>")
        restricted = body[body.index("Isolated and denied now"):body.index("Commonest reasons")]
        self.assertIn("laptop-1", restricted)
        self.assertIn("laptop-2", restricted)
        self.assertNotIn("laptop-3", restricted)
        self.assertRegex(body, r"port 22 is open</td><td>2</td>")
        self.assertIn("(no worker processes)", body)
        # the last hour's bar has three parts, the one of 3-4 hours ago one
        self.assertEqual(body.count('<rect class="seg'), 4)
        self.assertEqual(body.count('<rect class="seg allowed" x="231"'), 1)
        self.assertEqual(body.count('<rect class="seg allowed" x="201"'), 1)

    @defer.inlineCallbacks
    def test_overview_tells_the_worker_processes_running(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def families():
            yield GaugeMetricFamily("nac_worker_processes", "running", value=2)
            yield GaugeMetricFamily("nac_worker_processes_configured", "configured", value=3)
            yield CounterMetricFamily("nac_worker_restarts", "restarts", value=1)
        metrics.add_source(self, families)
        self.addCleanup(metrics.remove_source, self)
        browser = yield self.logged_in("rita")
        response, body = yield browser.get("/console/overview")
        self.assertIn("The main process and 2 of 3 worker processes running; 1 restarted.", body)

    @defer.inlineCallbacks
    def test_devices_are_filtered_and_paged(self):
        def many(session):
            session.execute(sa.insert(Device), [{"device_id": f"host-{n:05d}", "description": ""}
                                                for n in range(120)])
        self.store.db.run(many)
        self.add_session("laptop-9", "isolate")
        browser = yield self.logged_in("rita")
        response, body = yield browser.get("/console/devices?page=3")
        self.assertIn("page 3 of 3", body)
        self.assertIn("host-00100", body)
        self.assertNotIn("host-00099", body)
        response, body = yield browser.get("/console/devices?decision=isolate")
        self.assertIn("laptop-9", body)
        self.assertNotIn("host-00000", body)
        response, body = yield browser.get("/console/devices?q=host-0011")
        self.assertEqual(body.count('href="/console/devices/'), 10)
        # the next page keeps the filters
        response, body = yield browser.get("/console/devices?q=host-00")
        self.assertIn("page 1 of 3", body)
        self.assertIn('href="?q=host-00&amp;group=&amp;product=&amp;decision=&amp;page=2"', body)
        response, body = yield browser.get("/console/devices?product=Debian+12+x86_64")
        self.assertIn("laptop-9", body)
        self.assertNotIn("host-00000", body)

    @defer.inlineCallbacks
    def test_device_and_session_pages_show_reasons_and_the_move_to_a_group(self):
        pk, sid = self.add_session("laptop-1", "isolate", "port 22 is open")
        self.store.db.run(manage.add_group, {"name": "lab"})
        browser = yield self.logged_in()
        response, body = yield browser.get(f"/console/devices/{pk}")
        self.assertIn("The Scanner IMV has not measured this device", body)
        self.store.db.run(lambda s: s.add(Measurement(session_id=sid, imv_name="scanner", kind="open-ports", payload={
            "open": [{"protocol": "tcp", "port": 22}, {"protocol": "udp", "port": 53}], "violations": ["tcp/22"]})))
        response, body = yield browser.get(f"/console/devices/{pk}")
        self.assertIn('<span class="port violation">tcp/22</span> <span class="port">udp/53</span>', body)
        self.assertIn("port 22 is open", body)
        self.assertIn('Remediation: <span class="remediation-text">close the port</span>', body)
        self.assertIn(f'href="/console/sessions/{sid}"', body)
        response, body = yield browser.get(f"/console/sessions/{sid}")
        self.assertIn("192.0.2.9 port 40000", body)
        self.assertIn("(took 1.500 s)", body)
        self.assertRegex(body, r"<td>scanner</td><td>isolate</td>")
        token = yield browser.csrf(f"/console/devices/{pk}")
        response, _ = yield browser.post(f"/console/devices/{pk}", {"csrf": token, "action": "groups",
                                                                    "groups": ["lab"]})
        self.assertEqual(response.code, 303)
        response, _ = yield browser.post(f"/console/devices/{pk}", {"csrf": token, "action": "trust",
                                                                    "trusted": "yes"})
        device = self.store.db.run(lambda s: s.get(Device, pk))
        self.assertTrue(device.trusted)
        response, body = yield browser.get(f"/console/devices/{pk}")
        self.assertIn("<p>lab</p>", body)
        response, body = yield browser.post(f"/console/devices/{pk}", {"csrf": token, "action": "groups",
                                                                       "groups": ["nosuch"]})
        self.assertEqual(response.code, 400)
        self.assertIn("there is no group", body)
        audit = self.store.db.run(lambda s: s.execute(sa.text("SELECT actor, resource FROM audit_log")).all())
        self.assertIn(("console:alice", "device"), [tuple(a) for a in audit])

    @defer.inlineCallbacks
    def test_policy_forms_show_errors_by_field(self):
        browser = yield self.logged_in()
        token = yield browser.csrf("/console/policies")
        response, body = yield browser.post("/console/policies", {
            "csrf": token, "name": "ports", "type": "blocked-tcp-ports", "argument": "22 99999",
            "rec_fail": "isolate", "rec_noresult": "none"})
        self.assertEqual(response.code, 400)
        self.assertIn('data-field="argument"', body)
        response, body = yield browser.post("/console/policies", {
            "csrf": token, "name": "ports", "type": "blocked-tcp-ports", "argument": "22",
            "rec_fail": "isolate", "rec_noresult": "none"})
        self.assertEqual(response.code, 303)
        [policy] = self.store.db.run(manage.list_policies)
        group = self.store.db.run(manage.add_group, {"name": "lab"})
        response, body = yield browser.post("/console/enforcements", {
            "csrf": token, "policy": str(policy["id"]), "group": str(group["id"]), "max_age": "soon"})
        self.assertEqual(response.code, 400)
        self.assertIn('data-field="max_age"', body)
        response, body = yield browser.post("/console/enforcements", {
            "csrf": token, "policy": str(policy["id"]), "group": str(group["id"]), "max_age": "60",
            "rec_fail": "block"})
        self.assertEqual(response.code, 303, body)
        [enforcement] = self.store.db.run(manage.list_enforcements)
        self.assertEqual((enforcement["max_age"], enforcement["rec_fail"]), (60, "block"))
        response, body = yield browser.post(f"/console/groups/{group['id']}", {
            "csrf": token, "name": "lab", "vlan_isolate": "5000", "action": "save"})
        self.assertEqual(response.code, 400)
        self.assertIn('data-field="vlan_isolate"', body)
        response, body = yield browser.post(f"/console/groups/{group['id']}", {
            "csrf": token, "name": "lab", "vlan_isolate": "66", "identities": "dave\nerin", "action": "save"})
        self.assertEqual(response.code, 303, body)
        info = self.store.db.run(manage.list_groups)[1]
        self.assertEqual((info["vlan_isolate"], info["identities"]), ("66", ["dave", "erin"]))

    @defer.inlineCallbacks
    def test_admins_manage_console_users_and_tokens(self):
        browser = yield self.logged_in()
        token = yield browser.csrf("/console/admin")
        response, body = yield browser.post("/console/admin/users", {"csrf": token, "name": "olga",
                                                                      "password": "olga-pw", "role": "superuser"})
        self.assertEqual(response.code, 400)
        self.assertIn('data-field="role"', body)
        response, _ = yield browser.post("/console/admin/users", {"csrf": token, "name": "olga",
                                                                   "password": "olga-pw", "role": "read"})
        self.assertEqual(response.code, 303)
        olga = yield self.logged_in("olga")
        response, body = yield browser.post("/console/admin/tokens", {"csrf": token, "name": "ci", "role": "read"})
        self.assertEqual(response.code, 201)
        made = re.search(r"<code>(nac_[^<]+)</code>", body).group(1)
        self.assertEqual(self.store.db.read(manage.check_token, made), ("ci", "read"))
        response, _ = yield browser.post("/console/admin/users/olga", {"csrf": token, "action": "disable"})
        self.assertEqual(response.code, 303)
        response, _ = yield olga.get("/console/overview")
        self.assertEqual(response.code, 303)
        response, _ = yield browser.post("/console/admin/tokens/ci", {"csrf": token})
        self.assertIsNone(self.store.db.read(manage.check_token, made))


def multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = "nac-console-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{k}.txt"\r\n'
              f"Content-Type: application/octet-stream\r\n\r\n".encode() + v + b"\r\n" for k, v in files.items()]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class PackageTests(ConsoleServerMixin, unittest.TestCase):

    @defer.inlineCallbacks
    def test_an_admin_imports_a_listing_and_blacklists_a_release(self):
        browser = yield self.logged_in()
        token = yield browser.csrf("/console/packages")
        body, kind = multipart({"csrf": token, "product": "Debian 12 x86_64"},
                               {"file": gzip.compress(b"bash\t5.2.15-2+b8\nopenssl\t3.0.15-1~deb12u1\n")})
        response, page = yield browser.request("POST", "/console/packages/import", raw=body, content_type=kind)
        self.assertEqual(response.code, 200, page)
        self.assertIn("2 releases read; 2 new packages", page)
        response, page = yield browser.get("/console/packages?product=Debian+12+x86_64")
        self.assertIn("3.0.15-1~deb12u1", page)
        response, _ = yield browser.post("/console/packages/blacklist", {
            "csrf": token, "product": "Debian 12 x86_64", "package": "openssl", "release": "3.0.15-1~deb12u1"})
        self.assertEqual(response.code, 303)
        response, page = yield browser.get("/console/packages?blacklisted=yes")
        self.assertIn("openssl", page)
        self.assertNotIn("<td>bash</td>", page)
        # a malformed listing names its line; nothing is imported
        body, kind = multipart({"csrf": token, "product": "Debian 12 x86_64"}, {"file": b"zsh 5.9\nnot a line at all\n"})
        response, page = yield browser.request("POST", "/console/packages/import", raw=body, content_type=kind)
        self.assertEqual(response.code, 400)
        self.assertIn("file:2: expected", page)
        response, page = yield browser.get("/console/packages")
        self.assertNotIn("<td>zsh</td>", page)

    @defer.inlineCallbacks
    def test_an_upload_needs_the_csrf_token_and_an_admin(self):
        browser = yield self.logged_in()
        body, kind = multipart({"product": "Debian 12 x86_64"}, {"file": b"bash 5.2\n"})
        response, _ = yield browser.request("POST", "/console/packages/import", raw=body, content_type=kind)
        self.assertEqual(response.code, 403)
        reader = yield self.logged_in("rita")
        token = yield reader.csrf("/console/packages")
        body, kind = multipart({"csrf": token, "product": "Debian 12 x86_64"}, {"file": b"bash 5.2\n"})
        response, _ = yield reader.request("POST", "/console/packages/import", raw=body, content_type=kind)
        self.assertEqual(response.code, 403)
        response, page = yield reader.get("/console/packages")
        self.assertIn("No packages match", page)
        self.assertNotIn("package-import", page)


class SessionTableTests(unittest.TestCase):
    """The in-memory sessions, with the time passed in."""

    def test_sessions_end_when_idle_and_when_too_many(self):
        table = ConsoleSessions(idle=10.0, limit=2)
        first = table.open("alice", "admin", 0.0)
        self.assertEqual(table.find(first, 9.0).name, "alice")
        self.assertIsNotNone(table.find(first, 18.0))  # used at 9: good until 19
        self.assertIsNone(table.find(first, 28.5))
        a, b, c = (table.open(n, "read", 30.0) for n in "abc")
        self.assertIsNone(table.find(a, 31.0))
        self.assertEqual(len(table), 2)
        table.close_user("b")
        self.assertIsNone(table.find(b, 31.0))
        self.assertIsNotNone(table.find(c, 31.0))
