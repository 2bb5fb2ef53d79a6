"""The web console for network operators under ``/console/``: the
overview, devices, sessions, NAS sessions (RADIUS accounting, with the CoA
and Disconnect the server's RADIUS transport sends), the group policy,
packages, users and tokens, as pages rendered on the server (jinja2,
autoescaped: every identity an endpoint sent is text, never markup), a few
lines of inline script (its nonce in the Content-Security-Policy), no
build step.

People log in with a name and password (``nac-admin console-user add``,
the ``console_users`` table, scrypt); their session is a random id in a
cookie (``Secure``, ``HttpOnly``, ``SameSite=Strict``, path ``/console``)
kept in this process's memory, with a CSRF token every POST form carries.
Failed logins are throttled and locked out by :mod:`nac.auth_throttle`
(the ``[http] console_*`` options).  ``read`` users see every page; only
``admin`` users change anything (a POST of a read user is a 403), and only
they see users and tokens.  Changes go through :mod:`nac.db.manage` (the
API's checks, errors shown by field) and into the audit log as
``console:NAME``.

:class:`ConsoleSessions` is sans-IO (the time is passed in);
:class:`ConsoleResource` is the twisted.web side, reached from the HTTP
service's root for paths under ``/console``.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode

import jinja2
from twisted.internet import defer, threads
from twisted.web import server

from nac import metrics
from nac.auth_throttle import FailureThrottle, LoginOutcome, Logins, LoginSource, PasswordChecks, address_source
from nac.client.remediation import parse_instructions
from nac.db import manage
from nac.db.models import PolicyType
from nac.db.store import AlreadyExists, NotFound, StoreError, StoreUnavailable, check_against
from nac.escape import printable
from nac.log import Logger
from nac.package_list import PackageListError, read_package_list
from transports.http import queries
from transports.http.routes import Routes

log = Logger(namespace="nac.http.console")

HERE = Path(__file__).parent
PREFIX = "/console"
SESSION_COOKIE = b"nac_console"
LOGIN_COOKIE = b"nac_console_login"
PAGE_SIZE = 50
MAX_PAGE = 100000
MAX_FILTER = 200
MAX_FIELDS = 2000
RECOMMENDATIONS = tuple(manage.RECOMMENDATION_NAMES)
#: form fields that are files (bytes, not text)
UPLOADS = frozenset({"file"})


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    max_failures: int = 3
    lockout: float = 300.0
    idle_timeout: float = 1800.0
    failure_delay: float = 0.25
    max_sessions: int = 10000


# -- sessions (sans-IO) --------------------------------------------------------------------------------


@dataclass(slots=True)
class ConsoleLogin:
    """A logged-in person: name, role when last checked, the CSRF token of
    their forms, when the session runs out unless used."""

    name: str
    role: str
    csrf: str
    expires: float


class ConsoleSessions:
    """The console's sessions of one process, by session id: they end
    after ``idle`` seconds unused, at logout, or when more than ``limit``
    are open (the least recently used first)."""

    def __init__(self, idle: float, limit: int = 10000):
        self.idle, self.limit = idle, limit
        self._open: OrderedDict[str, ConsoleLogin] = OrderedDict()

    def open(self, name: str, role: str, now: float) -> str:
        sid = secrets.token_urlsafe(32)
        self._open[sid] = ConsoleLogin(name, role, secrets.token_urlsafe(32), now + self.idle)
        while len(self._open) > self.limit:
            self._open.popitem(last=False)
        return sid

    def find(self, sid: str | None, now: float) -> ConsoleLogin | None:
        login = self._open.get(sid) if sid else None
        if login is None:
            return None
        if login.expires <= now:
            del self._open[sid]
            return None
        login.expires = now + self.idle
        self._open.move_to_end(sid)
        return login

    def close(self, sid: str | None) -> None:
        self._open.pop(sid, None)

    def close_user(self, name: str) -> None:
        for sid in [sid for sid, login in self._open.items() if login.name == name]:
            del self._open[sid]

    def __len__(self) -> int:
        return len(self._open)


# -- requests ------------------------------------------------------------------------------------------


class Refused(Exception):
    """A request answered with an error page (``status``, ``message``)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Redirect(Exception):
    def __init__(self, location: str):
        super().__init__(location)
        self.location = location


class FormErrors(Exception):
    """A form refused: ``errors`` by field, shown beside the fields."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(", ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(slots=True)
class Page:
    """What one request is about: the person, their session, the query
    and (for a POST) the form."""

    request: server.Request
    login: ConsoleLogin | None
    query: dict[str, str]
    form: dict[str, list[str]]
    peer: str

    @property
    def admin(self) -> bool:
        return self.login is not None and self.login.role == "admin"

    def value(self, key: str, default: str = "") -> str:
        values = self.form.get(key)
        return values[-1] if values else default

    def values(self, key: str) -> list[str]:
        return [v for v in self.form.get(key, []) if v != ""]


PAGES = Routes()


def route(method: str, pattern: str, role: str | None = "read"):
    """A page: ``role`` None needs no login, ``read`` any login, ``admin`` an admin."""
    return PAGES(method, pattern, role)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _pk(value: str, what: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) > 2**31 - 1:
        raise Refused(404, f"no {what} {value}")
    return int(value)


def _whole(field: str, value: str) -> int | str | None:
    """A form's number: an int for digits, None for nothing, else the
    text itself (which manage's check refuses, naming the field)."""
    value = value.strip()
    if value == "":
        return None
    return int(value) if value.isascii() and value.isdigit() and len(value) < 12 else value


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.replace(",", "\n").splitlines() if line.strip()]


class ConsoleResource:
    """The console's pages; :meth:`render` takes every request under ``/console``."""

    def __init__(self, store, settings: ConsoleSettings | None = None, *, clock=None, secret: bytes | None = None,
                 session_control=None):
        self.store = store
        #: ``session_control()``: the running IRunningSessionControl (RADIUS CoA), or None
        self.session_control = session_control
        self.settings = settings or ConsoleSettings()
        self._clock = clock
        self.sessions = ConsoleSessions(self.settings.idle_timeout, self.settings.max_sessions)
        self.secret = secret or secrets.token_bytes(32)
        throttle = FailureThrottle(failure_delay=self.settings.failure_delay,
                                   max_failure_delay=max(self.settings.failure_delay, 2.0),
                                   max_failures_per_source=max(10, 3 * self.settings.max_failures),
                                   max_failures_per_user=self.settings.max_failures,
                                   lockout=self.settings.lockout, failure_window=max(900.0, self.settings.lockout))
        self.logins = Logins(self._check_password, throttle=throttle,
                             checks=PasswordChecks(self._check_password, max_pending=16, max_pending_per_source=2,
                                                   concurrency=1),
                             clock=clock, known_for=0.0)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.templates.globals.update(prefix=PREFIX, recommendations=RECOMMENDATIONS,
                                      policy_types=[t.value for t in PolicyType], instructions=parse_instructions)
        self.templates.filters["when"] = _when
        self.templates.filters["q"] = lambda value: quote(str(value), safe="")
        self.stylesheet = (HERE / "static" / "console.css").read_bytes()

    @property
    def clock(self):
        if self._clock is None:
            from twisted.internet import reactor
            self._clock = reactor
        return self._clock

    # -- plumbing ---------------------------------------------------------------------------------------

    def render(self, request):
        d = defer.ensureDeferred(self._handle(request))
        d.addErrback(lambda failure: log.failure("console request failed", failure))
        return server.NOT_DONE_YET

    async def _handle(self, request) -> None:
        nonce = secrets.token_urlsafe(16)
        try:
            path = request.path.decode("utf-8", "replace")
            method = request.method.decode("ascii", "replace")
            if path in (PREFIX, PREFIX + "/"):
                path = PREFIX + "/overview"
            if path == PREFIX + "/static/console.css" and method == "GET":
                return self._send(request, 200, self.stylesheet, b"text/css; charset=utf-8", cache=True)
            matched, allowed = PAGES.match(method, path[len(PREFIX):]) if path.startswith(PREFIX + "/") \
                else (None, [])
            if matched is None:
                if allowed:
                    request.setHeader(b"allow", ", ".join(allowed).encode())
                    raise Refused(405, f"{method} is not allowed here")
                raise Refused(404, "There is no such page.")
            role, name, found = matched.role, matched.name, matched.found
            login = await self._login(request)
            if role is not None and login is None:
                if method == "GET":
                    raise Redirect(f"{PREFIX}/login?" + urlencode({"next": path}))
                raise Refused(401, "Your session has ended: log in again.")
            form: dict[str, list[str]] = {}
            if method == "POST":
                form = self._form(request)
                self._check_csrf(request, login, form)
            if role == "admin" and login.role != "admin":
                raise Refused(403, "This needs an admin login; yours is read-only.")
            query = {k.decode("utf-8", "replace"): v[-1].decode("utf-8", "replace")[:MAX_FILTER]
                     for k, v in request.args.items()} if method == "GET" else {}
            page = Page(request, login, query, form, getattr(request.getClientAddress(), "host", ""))
            status, template, values = await getattr(self, name)(page, **found.groupdict())
            self._page(request, status, template, values, page, nonce)
        except Redirect as where:
            request.setResponseCode(303)
            request.setHeader(b"location", where.location.encode())
            self._send(request, 303, b"", b"text/plain")
        except Refused as exc:
            self._error(request, exc.status, exc.message, nonce)
        except StoreUnavailable:
            self._error(request, 503, "The policy database does not answer; try again shortly.", nonce)
        except Exception:
            log.failure("console: {method} {path} failed", method=printable(request.method.decode("latin-1")),
                        path=printable(request.path.decode("latin-1")[:200]))
            self._error(request, 500, "The server failed; see its log.", nonce)

    def _send(self, request, status: int, body: bytes, content_type: bytes, nonce: str | None = None,
              cache: bool = False) -> None:
        if request._disconnected:
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", content_type)
        request.setHeader(b"cache-control", b"max-age=3600" if cache else b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"x-frame-options", b"DENY")
        request.setHeader(b"referrer-policy", b"same-origin")
        script = f"'nonce-{nonce}'" if nonce else "'none'"
        request.setHeader(b"content-security-policy", (
            f"default-src 'none'; style-src 'self'; img-src 'self'; script-src {script}; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'").encode())
        request.write(body)
        request.finish()

    def _page(self, request, status: int, template: str, values: dict, page: Page, nonce: str) -> None:
        login = page.login
        body = self.templates.get_template(template).render(
            user=login, admin=page.admin, csrf=login.csrf if login else "", nonce=nonce, query=page.query,
            **values)
        self._send(request, status, body.encode("utf-8"), b"text/html; charset=utf-8", nonce)

    def _error(self, request, status: int, message: str, nonce: str) -> None:
        body = self.templates.get_template("error.html").render(
            user=None, admin=False, csrf="", nonce=nonce, status=status, message=message, query={})
        self._send(request, status, body.encode("utf-8"), b"text/html; charset=utf-8", nonce)

    def _form(self, request) -> dict[str, list[str]]:
        if getattr(request, "too_large", False):
            raise Refused(413, f"The form is larger than {request.channel.site.max_body_size} bytes.")
        kind = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if kind == b"multipart/form-data":  # twisted.web has parsed it into request.args
            form: dict[str, list] = {}
            try:
                for key, values in request.args.items():
                    name = key.decode("utf-8")
                    form[name] = list(values) if name in UPLOADS else [v.decode("utf-8") for v in values]
            except UnicodeDecodeError:
                raise Refused(400, "The form is not valid UTF-8 form data.") from None
            if sum(len(v) for v in form.values()) > MAX_FIELDS:
                raise Refused(400, f"The form has more than {MAX_FIELDS} fields.")
            return form
        if kind != b"application/x-www-form-urlencoded":
            raise Refused(415, "Forms are sent as application/x-www-form-urlencoded or multipart/form-data.")
        raw = request.content.read() if request.content is not None else b""
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                              max_num_fields=MAX_FIELDS)
        except (UnicodeDecodeError, ValueError):
            raise Refused(400, "The form is not valid UTF-8 form data.") from None
        form: dict[str, list[str]] = {}
        for key, value in pairs:
            form.setdefault(key, []).append(value)
        return form

    def _check_csrf(self, request, login: ConsoleLogin | None, form: dict) -> None:
        sent = (form.get("csrf") or [""])[-1]
        if not isinstance(sent, str):
            sent = ""
        if login is not None:
            expected = login.csrf
        else:  # the login form: tied to its own cookie
            cookie = request.getCookie(LOGIN_COOKIE)
            expected = self._login_csrf(cookie.decode("latin-1")) if cookie else None
        if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Refused(403, "The form's security token is missing or stale: reload the page and try again.")

    def _login_csrf(self, cookie: str) -> str:
        return hmac.new(self.secret, b"login\0" + cookie.encode("latin-1"), hashlib.sha256).hexdigest()

    def _set_cookie(self, request, name: bytes, value: str, max_age: int | None = None) -> None:
        request.addCookie(name, value.encode(), path=PREFIX.encode(), secure=True, httpOnly=True,
                          sameSite="strict", max_age=None if max_age is None else str(max_age).encode())

    async def _login(self, request) -> ConsoleLogin | None:
        cookie = request.getCookie(SESSION_COOKIE)
        sid = cookie.decode("latin-1") if cookie else None
        login = self.sessions.find(sid, self.clock.seconds())
        if login is None:
            return None
        row = await self.store.read(manage.console_login_row, login.name)
        if row is None or not row[1]:
            self.sessions.close(sid)
            return None
        login.role = row[2]
        return login

    def _check_password(self, name: str, password: str):
        def check(row):
            return threads.deferToThreadPool(self.clock, self._pool(), check_against, None, name, password,
                                             None if row is None else (row[0], row[1]))
        return self.store.read(manage.console_login_row, name).addCallback(check)

    def _pool(self):
        pool = getattr(self.store, "auth_pool", None)
        if pool is None:
            from twisted.internet import reactor
            pool = reactor.getThreadPool()
        return pool

    async def _change(self, page: Page, action: str, resource: str, fn, *args):
        """``fn(session, *args)`` and its audit entry in one transaction;
        a refused value becomes :class:`FormErrors`."""
        def run(session):
            result = fn(session, *args)
            target = result.get("id", result.get("name", "")) if isinstance(result, dict) else ""
            manage.audit(session, f"console:{page.login.name}", action, resource, str(target),
                         {"form": {k: v for k, v in page.form.items() if k not in ("csrf", "password")}},
                         page.peer)
            return result
        try:
            result = await self.store.run(run)
        except manage.FieldError as exc:
            raise FormErrors({exc.field: exc.detail}) from None
        except AlreadyExists as exc:
            raise FormErrors({"name": str(exc)}) from None
        except NotFound as exc:
            raise Refused(404, str(exc)) from None
        except StoreError as exc:
            if isinstance(exc, StoreUnavailable):
                raise
            raise FormErrors({"form": str(exc)}) from None
        log.info("console: {actor} {action}s a {resource}", actor=printable(page.login.name), action=action,
                 resource=resource)
        return result

    @staticmethod
    def _page_number(page: Page) -> int:
        raw = page.query.get("page", "1")
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:
            raise Refused(400, f"page must be a whole number from 1 to {MAX_PAGE}")
        return int(raw)

    # -- logging in and out ------------------------------------------------------------------------------

    @route("GET", "/login", None)
    async def login_form(self, page: Page):
        if page.login is not None:
            raise Redirect(_next(page.query.get("next")))
        cookie = secrets.token_urlsafe(24)
        self._set_cookie(page.request, LOGIN_COOKIE, cookie)
        return 200, "login.html", {"login_csrf": self._login_csrf(cookie), "next": _next(page.query.get("next")),
                                   "error": "", "name": ""}

    @route("POST", "/login", None)
    async def login(self, page: Page):
        name, password = page.value("name")[:64], page.value("password")[:manage.MAX_PASSWORD]
        source = LoginSource(address_source(page.peer), True)
        outcome = LoginOutcome.REJECTED
        if name and password:
            outcome = await self.logins.check_password(source, name, password)
        if outcome is LoginOutcome.ACCEPTED:
            row = await self.store.read(manage.console_login_row, name)
            sid = self.sessions.open(name, row[2], self.clock.seconds())
            self._set_cookie(page.request, SESSION_COOKIE, sid)
            self._set_cookie(page.request, LOGIN_COOKIE, "", max_age=0)
            log.info("console: {user} logged in from {peer}", user=printable(name), peer=printable(page.peer))
            raise Redirect(_next(page.value("next")))
        if outcome is LoginOutcome.LOCKED_OUT:
            error, status = ("Too many failed logins: this login is locked for a while. "
                             "Ask an administrator or try again later."), 429
        elif outcome is LoginOutcome.BUSY:
            error, status = "The server is busy checking other logins; try again shortly.", 503
        else:
            error, status = "Wrong user name or password.", 401
            log.info("console: a failed login as {user} from {peer}", user=printable(name), peer=printable(page.peer))
        cookie = page.request.getCookie(LOGIN_COOKIE).decode("latin-1")
        return status, "login.html", {"login_csrf": self._login_csrf(cookie), "next": _next(page.value("next")),
                                      "error": error, "name": name}

    @route("POST", "/logout")
    async def logout(self, page: Page):
        cookie = page.request.getCookie(SESSION_COOKIE)
        self.sessions.close(cookie.decode("latin-1") if cookie else None)
        self._set_cookie(page.request, SESSION_COOKIE, "", max_age=0)
        raise Redirect(f"{PREFIX}/login")

    # -- overview, devices, sessions ----------------------------------------------------------------------

    @route("GET", "/overview")
    async def overview(self, page: Page):
        info = await self.store.read(queries.overview, _now())
        peak = max([sum(h[k] for k in ("allowed", "isolate", "denied", "other")) for h in info["hours"]] + [1])
        return 200, "overview.html", {"info": info, "peak": peak, "workers": _worker_processes()}

    @route("GET", "/devices")
    async def devices(self, page: Page):
        number = self._page_number(page)
        decision = _choice(page, "decision", queries.ACCESS_VALUES)
        found = await self.store.read(queries.list_devices, PAGE_SIZE, (number - 1) * PAGE_SIZE,
                                      group=page.query.get("group") or None,
                                      product=page.query.get("product") or None, decision=decision,
                                      q=page.query.get("q") or None)
        return 200, "devices.html", {**_listing(page, number, found, ("q", "group", "product", "decision")),
                                     "groups": await self.store.read(queries.group_names),
                                     "products": await self.store.read(queries.product_names)}

    async def _device_values(self, pk: int) -> dict:
        device = await self.store.read(queries.device_detail, pk)
        last = device["last_decision"]
        results = (await self.store.read(queries.session_detail, last["session"]))["results"] if last else []
        inventory = await self.store.read(queries.device_inventory, pk)
        ports = await self.store.read(queries.open_ports, pk)
        groups = await self.store.read(queries.group_names)
        return {"device": device, "results": results, "inventory": inventory, "ports": ports, "all_groups": groups,
                "errors": {}}

    @route("GET", "/devices/(?P<pk>[^/]+)")
    async def device(self, page: Page, pk: str):
        pk = _pk(pk, "device")
        try:
            return 200, "device.html", await self._device_values(pk)
        except NotFound:
            raise Refused(404, f"There is no device {pk}.") from None

    @route("POST", "/devices/(?P<pk>[^/]+)", "admin")
    async def device_change(self, page: Page, pk: str):
        pk = _pk(pk, "device")
        body: dict = {"groups": page.values("groups")}
        if page.value("action") == "trust":
            body = {"trusted": page.value("trusted") == "yes"}

        def change(session):
            manage.set_device(session, pk, body)
            return {"id": pk}
        try:
            await self._change(page, "update", "device", change)
        except FormErrors as exc:
            values = await self._device_values(pk)
            return 400, "device.html", {**values, "errors": exc.errors}
        raise Redirect(f"{PREFIX}/devices/{pk}")

    @route("GET", "/sessions")
    async def sessions_list(self, page: Page):
        number = self._page_number(page)
        access = _choice(page, "access", queries.ACCESS_VALUES)
        found = await self.store.read(queries.list_sessions, PAGE_SIZE, (number - 1) * PAGE_SIZE,
                                      device=page.query.get("device") or None,
                                      identity=page.query.get("identity") or None, access=access)
        return 200, "sessions.html", _listing(page, number, found, ("device", "identity", "access"))

    @route("GET", "/sessions/(?P<pk>[^/]+)")
    async def session(self, page: Page, pk: str):
        pk = _pk(pk, "session")
        try:
            info = await self.store.read(queries.session_detail, pk)
        except NotFound:
            raise Refused(404, f"There is no session {pk}.") from None
        if info["started"] and info["ended"]:
            took = datetime.datetime.fromisoformat(info["ended"].replace("Z", "+00:00")) - \
                datetime.datetime.fromisoformat(info["started"].replace("Z", "+00:00"))
            info["duration"] = f"{took.total_seconds():.3f} s"
        device_pk = None if info["device"] is None else await self.store.read(queries.device_pk, info["device"])
        return 200, "session.html", {"session": info, "device_pk": device_pk}

    # -- accounting sessions, CoA and Disconnect ---------------------------------------------------------

    async def _accounting_values(self, page: Page, number: int = 1) -> dict:
        only = _choice(page, "open", ("yes", "no")) if page.request.method == b"GET" else None
        found = await self.store.read(queries.list_accounting, PAGE_SIZE, (number - 1) * PAGE_SIZE,
                                      nas=page.query.get("nas") or None, station=page.query.get("station") or None,
                                      device=page.query.get("device") or None, open_only=only != "no")
        return {**_listing(page, number, found, ("nas", "station", "device", "open")),
                "coa": self.session_control is not None and self.session_control() is not None,
                "outcome": None}

    @route("GET", "/accounting")
    async def accounting(self, page: Page):
        return 200, "accounting.html", await self._accounting_values(page, self._page_number(page))

    @route("POST", "/accounting/(?P<pk>[^/]+)", "admin")
    async def accounting_action(self, page: Page, pk: str):
        """Isolate, Allow (a CoA-Request) or Disconnect the NAS session, sent
        by the server's RADIUS transport as for ``POST /api/accounting/ID/coa``."""
        pk = _pk(pk, "accounting session")
        action = page.value("action")
        access = {"isolate": "isolate", "allow": "allowed", "disconnect": None}.get(action, "")
        if access == "":
            raise Refused(400, "action must be isolate, allow or disconnect")
        control = self.session_control() if self.session_control is not None else None
        if control is None:
            raise Refused(409, "No transport of this server sends CoA or Disconnect requests (the radius "
                               "transport is not enabled).")
        try:
            acked, outcome, text = await control.change_session(pk, access)
        except NotFound:
            raise Refused(404, f"There is no accounting session {pk}.") from None
        except (LookupError, ValueError) as exc:
            raise Refused(409, str(exc).strip("'\"")) from None
        log.info("console: {actor} sent a {action} for accounting session {id}: {outcome}",
                 actor=printable(page.login.name), action=outcome["action"], id=pk, outcome=text)
        await self.store.run(manage.audit, f"console:{page.login.name}", outcome["action"], "accounting", str(pk),
                             {"form": {"action": action}, "outcome": outcome}, page.peer)
        values = await self._accounting_values(page)
        values["outcome"] = {**outcome, "text": text}
        return (200 if acked else 409 if outcome["nak"] else 502), "accounting.html", values

    # -- the group policy --------------------------------------------------------------------------------

    async def _policy_values(self) -> dict:
        groups = await self.store.run(manage.list_groups)
        children: dict = {}
        for group in groups:
            children.setdefault(group["parent"], []).append(group)
        tree: list[tuple[int, dict]] = []

        def walk(parent, depth, seen):
            for group in children.get(parent, []):
                if group["name"] not in seen:
                    tree.append((depth, group))
                    walk(group["name"], depth + 1, seen | {group["name"]})
        walk(None, 0, frozenset())
        return {"tree": tree, "groups": groups, "policies": await self.store.run(manage.list_policies),
                "enforcements": await self.store.run(manage.list_enforcements),
                "products": await self.store.read(queries.product_names),
                "errors": {}, "failed": None}

    @route("GET", "/policies")
    async def policies(self, page: Page):
        return 200, "policies.html", await self._policy_values()

    async def _policy_change(self, page: Page, what: str, action: str, fn, *args):
        try:
            await self._change(page, action, what, fn, *args)
        except FormErrors as exc:
            values = await self._policy_values()
            failed = f"{what}-{args[0] if args and action != 'create' else 'new'}"
            return 400, "policies.html", {**values, "errors": exc.errors, "failed": failed}
        raise Redirect(f"{PREFIX}/policies#{what}s")

    @route("POST", "/(?P<kind>groups|policies|enforcements)", "admin")
    async def policy_add(self, page: Page, kind: str):
        what, add, _, _, body = EDITABLE[kind]
        return await self._policy_change(page, what, "create", add, body(page))

    @route("POST", "/(?P<kind>groups|policies|enforcements)/(?P<pk>[^/]+)", "admin")
    async def policy_edit(self, page: Page, kind: str, pk: str):
        what, _, update, delete, body = EDITABLE[kind]
        pk = _pk(pk, what)
        if page.value("action") == "delete":
            return await self._policy_change(page, what, "delete", delete, pk)
        return await self._policy_change(page, what, "update", update, pk, body(page))

    # -- packages -----------------------------------------------------------------------------------------

    async def _package_values(self, page: Page) -> dict:
        number = self._page_number(page)
        flag = _choice(page, "blacklisted", ("yes", "no"))
        found = await self.store.read(queries.list_packages, PAGE_SIZE, (number - 1) * PAGE_SIZE,
                                      product=page.query.get("product") or None,
                                      name=page.query.get("name") or None,
                                      blacklisted=None if flag is None else flag == "yes")
        return {**_listing(page, number, found, ("product", "name", "blacklisted")),
                "products": await self.store.read(queries.product_names), "errors": {}, "imported": None}

    @route("GET", "/packages")
    async def packages(self, page: Page):
        return 200, "packages.html", await self._package_values(page)

    async def _package_error(self, page: Page, errors: dict[str, str]):
        return 400, "packages.html", {**await self._package_values(page), "errors": errors}

    @route("POST", "/packages/blacklist", "admin")
    async def package_blacklist(self, page: Page):
        product, name = page.value("product").strip(), page.value("package").strip()
        release = page.value("release").strip() or None
        flag = page.value("blacklisted", "yes") == "yes"
        try:
            info = await self.store.blacklist_package(product, name, release, blacklisted=flag)
        except (NotFound, StoreError) as exc:
            if isinstance(exc, StoreUnavailable):
                raise
            return await self._package_error(page, {"package": str(exc)})
        await self.store.run(manage.audit, f"console:{page.login.name}", "update", "package",
                             f"{product}/{name}", {"release": info.release, "blacklisted": flag}, page.peer)
        raise Redirect(f"{PREFIX}/packages?" + urlencode({"product": product, "name": name}))

    @route("POST", "/packages/import", "admin")
    async def package_import(self, page: Page):
        product = page.value("product").strip()
        uploads = page.form.get("file") or []
        data = uploads[-1] if uploads and isinstance(uploads[-1], bytes) else b""
        if not product:
            return await self._package_error(page, {"product": "is required"})
        if not data:
            return await self._package_error(page, {"file": "choose a Packages file or a dpkg-query -W listing"})
        try:
            releases = await threads.deferToThreadPool(self.clock, self._pool(), read_package_list, data, "file")
        except PackageListError as exc:
            return await self._package_error(page, {"file": str(exc)})
        if not releases:
            return await self._package_error(page, {"file": "no packages found"})
        security = page.value("security") == "yes"
        try:
            done = await self.store.import_packages(product, releases, security=security)
        except StoreError as exc:
            if isinstance(exc, StoreUnavailable):
                raise
            return await self._package_error(page, {"product": str(exc)})
        await self.store.run(manage.audit, f"console:{page.login.name}", "create", "packages", product,
                             {"releases": done.releases, "security": security}, page.peer)
        log.info("console: {actor} imported {n} releases for {product}", actor=printable(page.login.name),
                 n=done.releases, product=printable(product))
        return 200, "packages.html", {**await self._package_values(page), "imported": done, "product": product}

    # -- users and tokens (admin) ---------------------------------------------------------------------------

    async def _admin_values(self) -> dict:
        return {"users": await self.store.run(manage.list_console_users),
                "tokens": await self.store.run(manage.list_tokens), "errors": {}, "new_token": None}

    @route("GET", "/admin", "admin")
    async def admin(self, page: Page):
        return 200, "admin.html", await self._admin_values()

    async def _admin_change(self, page: Page, what: str, action: str, fn, *args):
        try:
            result = await self._change(page, action, what, fn, *args)
        except FormErrors as exc:
            return 400, "admin.html", {**await self._admin_values(), "errors": exc.errors}
        return result

    @route("POST", "/admin/users", "admin")
    async def console_user_add(self, page: Page):
        answer = await self._admin_change(page, "console-user", "create", manage.add_console_user,
                                          page.value("name").strip(), page.value("password"), page.value("role"))
        if isinstance(answer, tuple):
            return answer
        raise Redirect(f"{PREFIX}/admin#users")

    @route("POST", "/admin/users/(?P<name>[^/]+)", "admin")
    async def console_user_change(self, page: Page, name: str):
        name = unquote(name)
        action = page.value("action")
        if action == "delete":
            answer = await self._admin_change(page, "console-user", "delete", manage.delete_console_user, name)
        elif action in ("enable", "disable"):
            answer = await self._admin_change(page, "console-user", "update", manage.update_console_user, name,
                                              {"enabled": action == "enable"})
        elif action == "role":
            answer = await self._admin_change(page, "console-user", "update", manage.update_console_user, name,
                                              {"role": page.value("role")})
        else:
            raise Refused(400, "action must be delete, enable, disable or role")
        if isinstance(answer, tuple):
            return answer
        if action in ("delete", "disable"):
            self.sessions.close_user(name)
        raise Redirect(f"{PREFIX}/admin#users")

    @route("POST", "/admin/tokens", "admin")
    async def token_add(self, page: Page):
        answer = await self._admin_change(page, "token", "create", _token_pair, page.value("name").strip(),
                                          page.value("role"))
        if isinstance(answer, tuple):
            return answer
        values = await self._admin_values()
        return 201, "admin.html", {**values, "new_token": answer}

    @route("POST", "/admin/tokens/(?P<name>[^/]+)", "admin")
    async def token_revoke(self, page: Page, name: str):
        answer = await self._admin_change(page, "token", "update", manage.revoke_token, unquote(name))
        if isinstance(answer, tuple):
            return answer
        raise Redirect(f"{PREFIX}/admin#tokens")


def _group_body(page: Page) -> dict:
    return {"name": page.value("name").strip(), "parent": page.value("parent") or None,
            "description": page.value("description"),
            **{k: page.value(k).strip() or None for k in ("filter_id_allow", "filter_id_isolate", "vlan_allow",
                                                          "vlan_isolate", "allow_ts", "isolate_ts")},
            "session_timeout": _whole("session_timeout", page.value("session_timeout")),
            "products": page.values("products"), "identities": _lines(page.value("identities"))}


def _policy_body(page: Page) -> dict:
    return {"name": page.value("name").strip(), "type": page.value("type"), "argument": page.value("argument"),
            "rec_fail": page.value("rec_fail"), "rec_noresult": page.value("rec_noresult")}


def _enforcement_body(page: Page) -> dict:
    return {"policy": _whole("policy", page.value("policy")), "group": _whole("group", page.value("group")),
            "max_age": _whole("max_age", page.value("max_age")) or 0,
            "rec_fail": page.value("rec_fail") or None, "rec_noresult": page.value("rec_noresult") or None}


#: the group policy's rows the forms edit, by path: (the name the pages and the audit log give
#: one, add, update, delete, its values from a form)
EDITABLE = {
    "groups": ("group", manage.add_group, manage.update_group, manage.delete_group, _group_body),
    "policies": ("policy", manage.add_policy, manage.update_policy, manage.delete_policy, _policy_body),
    "enforcements": ("enforcement", manage.add_enforcement, manage.update_enforcement, manage.delete_enforcement,
                     _enforcement_body),
}


def _token_pair(session, name: str, role: str) -> dict:
    info, token = manage.add_token(session, name, role)
    return {**info, "token": token}


_NEXT = re.compile(re.escape(PREFIX) + r"/[A-Za-z0-9/_.~%-]*")


def _next(value: str | None) -> str:
    """Where to go after logging in: a console page, never elsewhere."""
    if value and len(value) <= 512 and _NEXT.fullmatch(value) and not value.startswith(PREFIX + "/login"):
        return value
    return PREFIX + "/"


def _worker_processes() -> dict | None:
    """This nac's worker processes as its metrics count them (running,
    configured, restarts), None when it runs none."""
    get = metrics.REGISTRY.get_sample_value
    configured = get("nac_worker_processes_configured")
    if configured is None:
        return None
    return {"running": int(get("nac_worker_processes") or 0), "configured": int(configured),
            "restarts": int(get("nac_worker_restarts_total") or 0)}


def _choice(page: Page, key: str, values) -> str | None:
    """The query's ``key``, one of ``values``, or None when not given."""
    value = page.query.get(key) or None
    if value is not None and value not in values:
        raise Refused(400, f"{key} must be one of {', '.join(values)}")
    return value


def _listing(page: Page, number: int, found: dict, filters) -> dict:
    """What a list page shows of a page of ``found`` and its ``filters``."""
    return {"found": found, "number": number, "pages": max(1, (found["total"] + PAGE_SIZE - 1) // PAGE_SIZE),
            "filters": {k: page.query.get(k, "") for k in filters}}


def _when(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
