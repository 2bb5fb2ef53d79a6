"""The REST API as one twisted.web resource: routing, authentication (API
tokens as ``Authorization: Bearer``, or HTTP basic with the token as the
password, as strongSwan's sw-collector sends), roles (``read``: every GET;
``collector``: the sw-collector endpoints; ``admin``: everything), limits
(request body size, page size, requests per second per token or peer),
consistent error objects ``{"error": {"status", "code", "message",
"field"}}``, and the audit log of every change.

Database work runs in the policy store's pool; the resource never blocks
the reactor.  Tokens are never logged; identities and paths in log lines
are escaped (:func:`nac.escape.printable`).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import unquote

from sqlalchemy import orm
from twisted.internet import defer
from twisted.web import resource, server

from nac.db import attestation as attest_db
from nac.db import manage
from nac.db.store import AlreadyExists, NotFound, StoreError
from nac.escape import printable
from nac.log import Logger
from transports.http import queries, swcollector
from transports.http.openapi import openapi_document
from transports.http.routes import Routes

log = Logger(namespace="nac.http")

ROLE_RANK = {"read": 0, "collector": 1, "admin": 2}
#: handlers whose POST may come without a body (taken as {})
EMPTY_BODY_OK = frozenset({"accounting_disconnect"})
#: what ``POST /api/accounting/{id}/coa`` may ask for ('denied': a Disconnect-Request)
COA_ACCESS = ("allowed", "isolate", "denied")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class ApiSettings:
    max_body_size: int = 4 * 1024 * 1024
    max_page_size: int = 500
    default_page_size: int = 50
    rate: float = 50.0
    burst: int = 100


class ApiRequest(server.Request):
    """A request whose body is not kept beyond the site's ``max_body_size``."""

    too_large = False
    received = 0

    def gotLength(self, length):
        limit = self.channel.site.max_body_size
        if length is not None and length > limit:
            self.too_large = True
            length = None
        super().gotLength(length)

    def handleContentChunk(self, data):
        self.received += len(data)
        if self.received > self.channel.site.max_body_size:
            self.too_large = True
        if not self.too_large:
            super().handleContentChunk(data)


class RateLimiter:
    """A token bucket per client (token name or peer address)."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        if self.rate <= 0:
            return True
        now = self.clock()
        tokens, then = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        if len(self._buckets) > 10000 and key not in self._buckets:
            self._buckets.clear()
        self._buckets[key] = (tokens - 1.0, now)
        return True


@dataclass(slots=True)
class Context:
    request: server.Request
    actor: str
    role: str
    peer: str
    query: dict
    body: object


route = Routes()


def _json_default(value):
    if isinstance(value, datetime.datetime):
        return manage.timestamp(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _orm(fn):
    """``fn(session, ...)`` of nac.db.attestation as a read of the store
    (which gives a plain Connection): an ORM session on that connection."""
    def read(connection, *args, **kwargs):
        with orm.Session(bind=connection) as session:
            return fn(session, *args, **kwargs)
    return read


def _aik(info: attest_db.AikInfo) -> dict:
    return {"keyid": info.keyid, "trusted": info.trusted, "device": info.device, "product": info.product,
            "description": info.description, "created": info.created, "last_seen": info.last_seen}


class ApiResource(resource.Resource):
    isLeaf = True

    def __init__(self, store, settings: ApiSettings, metrics=None, health=None, session_control=None):
        super().__init__()
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.health = health
        #: ``session_control()``: the running IRunningSessionControl (RADIUS CoA), or None
        self.session_control = session_control
        self.limiter = RateLimiter(settings.rate, settings.burst)
        self.requests = 0

    # -- plumbing ------------------------------------------------------------------------

    def render(self, request):
        self.requests += 1
        d = defer.ensureDeferred(self._handle(request))
        d.addErrback(lambda failure: log.failure("HTTP API request failed", failure))
        return server.NOT_DONE_YET

    def _send(self, request, status: int, payload, headers=None, content_type=b"application/json") -> None:
        if request._disconnected:
            return
        body = payload if isinstance(payload, bytes) else json.dumps(payload, default=_json_default).encode()
        request.setResponseCode(status)
        request.setHeader(b"content-type", content_type)
        request.setHeader(b"cache-control", b"no-store")
        for key, value in (headers or {}).items():
            request.setHeader(key.encode(), value.encode())
        request.write(body)
        request.finish()

    async def _handle(self, request) -> None:
        try:
            path = request.path.decode("utf-8", "replace")
            method = request.method.decode("ascii", "replace")
            if path == "/health" and method == "GET":
                status, payload = await self.health()
                return self._send(request, status, payload)
            if path == "/metrics" and method == "GET":
                return self._send(request, 200, await self.metrics(), content_type=b"text/plain; version=0.0.4")
            if path == "/api/openapi.json" and method == "GET":
                return self._send(request, 200, openapi_document(self.settings))
            matched, allowed = route.match(method, path)
            if matched is None:
                if allowed:
                    raise ApiError(405, "method_not_allowed", f"{method} is not allowed here",
                                   headers={"Allow": ", ".join(allowed)})
                raise ApiError(404, "not_found", "no such resource")
            role, name, found = matched.role, matched.name, matched.found
            if request.too_large:
                raise ApiError(413, "too_large", f"the request body exceeds {self.settings.max_body_size} bytes",
                               "body")
            actor, token_role = await self._authenticate(request, basic=name.startswith("sw_"))
            if not self.limiter.allow(actor):
                raise ApiError(429, "rate_limited", "too many requests", headers={"Retry-After": "1"})
            if ROLE_RANK[token_role] < ROLE_RANK[role] or (role == "collector" and token_role == "read") \
                    or (token_role == "collector" and role != "collector"):
                raise ApiError(403, "forbidden", f"this needs a token of role {role}")
            query = {k.decode("utf-8", "replace"): v[-1].decode("utf-8", "replace")
                     for k, v in request.args.items()}
            body = None
            if method in ("POST", "PATCH", "PUT"):
                raw = request.content.read() if request.content is not None else b""
                if not raw.strip() and name in EMPTY_BODY_OK:
                    raw = b"{}"
                try:
                    body = json.loads(raw or b"null")
                except ValueError as exc:
                    if name.startswith("sw_"):  # strongTNC's (Django REST framework's) shape
                        return self._send(request, 400, {"detail": f"JSON parse error - {exc}"})
                    raise ApiError(400, "invalid_json", "the request body is not JSON", "body") from None
                if not name.startswith("sw_") and not isinstance(body, dict):
                    raise ApiError(400, "invalid_body", "the request body must be a JSON object", "body")
            peer = getattr(request.getClientAddress(), "host", "")
            ctx = Context(request, actor, token_role, peer, query, body)
            status, payload = await getattr(self, name)(ctx, **{k: unquote(v) for k, v in found.groupdict().items()})
            self._send(request, status, payload)
        except ApiError as exc:
            self._error(request, exc)
        except manage.FieldError as exc:
            self._error(request, ApiError(400, "invalid_field", exc.detail, exc.field))
        except NotFound as exc:
            self._error(request, ApiError(404, "not_found", str(exc)))
        except AlreadyExists as exc:
            self._error(request, ApiError(409, "conflict", str(exc)))
        except StoreError as exc:
            self._error(request, ApiError(400, "invalid", str(exc)))
        except Exception:
            log.failure("HTTP API: {method} {path} failed", method=printable(request.method.decode("latin-1")),
                        path=printable(request.path.decode("latin-1")))
            self._error(request, ApiError(500, "internal", "the server failed; see its log"))

    def _error(self, request, exc: ApiError) -> None:
        if exc.status == 401:
            exc.headers.setdefault("WWW-Authenticate", 'Bearer realm="nac", Basic realm="nac"')
        self._send(request, exc.status, {"error": {"status": exc.status, "code": exc.code, "message": exc.message,
                                                   "field": exc.field}}, exc.headers)

    async def _authenticate(self, request, basic: bool) -> tuple[str, str]:
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        token = None
        if header[:7].lower() == "bearer ":
            token = header[7:].strip()
        elif header[:6].lower() == "basic ":
            try:
                user, _, token = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                token = None
        peer = getattr(request.getClientAddress(), "host", "?")
        if not token:
            if not self.limiter.allow(f"peer:{peer}"):
                raise ApiError(429, "rate_limited", "too many requests", headers={"Retry-After": "1"})
            raise ApiError(401, "unauthorized", "authentication credentials were not provided")
        found = await self.store.read(manage.check_token, token)
        if found is None:
            if not self.limiter.allow(f"peer:{peer}"):
                raise ApiError(429, "rate_limited", "too many requests", headers={"Retry-After": "1"})
            log.info("HTTP API: a request from {peer} with an unknown or revoked token was refused",
                     peer=printable(peer))
            raise ApiError(401, "unauthorized", "invalid token")
        name, role = found
        return f"token:{name}", role

    # -- helpers -------------------------------------------------------------------------------

    def _page(self, query: dict) -> tuple[int, int]:
        limit = self._int(query, "limit", self.settings.default_page_size, 1, self.settings.max_page_size)
        offset = self._int(query, "offset", 0, 0, 2**31 - 1)
        return limit, offset

    @staticmethod
    def _int(query: dict, key: str, default: int, low: int, high: int) -> int:
        raw = query.get(key)
        if raw is None:
            return default
        if not re.fullmatch(r"[0-9]{1,10}", raw) or not low <= int(raw) <= high:
            raise ApiError(400, "invalid_field", f"must be a whole number from {low} to {high}", key)
        return int(raw)

    @staticmethod
    def _choice(query: dict, key: str, values) -> str | None:
        raw = query.get(key)
        if raw is not None and raw not in values:
            raise ApiError(400, "invalid_field", f"must be one of {', '.join(values)}", key)
        return raw

    @staticmethod
    def _time(query: dict, key: str):
        raw = query.get(key)
        if raw is None:
            return None
        try:
            value = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(400, "invalid_field", "must be an ISO 8601 time (2026-12-14T08:00:00Z)", key) from None
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value

    @staticmethod
    def _pk(value: str, what: str) -> int:
        if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) > 2**31 - 1:
            raise NotFound(f"no {what} {value!r}")
        return int(value)

    def _change(self, ctx: Context, action: str, resource_name: str, fn, *args):
        """``fn(session, *args)`` and its audit entry in one transaction."""
        def run(session):
            result = fn(session, *args)
            target = result.get("id", result.get("name", "")) if isinstance(result, dict) else ""
            manage.audit(session, ctx.actor, action, resource_name, str(target),
                         {"request": ctx.body} if action != "delete" else {"deleted": result}, ctx.peer)
            return result
        log.info("HTTP API: {actor} {action}s a {resource}", actor=printable(ctx.actor), action=action,
                 resource=resource_name)
        return self.store.run(run)

    # -- resources -----------------------------------------------------------------------------

    @route("GET", "/api/devices", "read")
    async def devices(self, ctx):
        limit, offset = self._page(ctx.query)
        decision = self._choice(ctx.query, "decision", queries.ACCESS_VALUES)
        return 200, await self.store.read(queries.list_devices, limit, offset, group=ctx.query.get("group"),
                                          product=ctx.query.get("product"), decision=decision,
                                          q=ctx.query.get("q"))

    @route("GET", "/api/devices/(?P<pk>[^/]+)", "read")
    async def device(self, ctx, pk):
        return 200, await self.store.read(queries.device_detail, self._pk(pk, "device"))

    @route("PATCH", "/api/devices/(?P<pk>[^/]+)", "admin")
    async def device_patch(self, ctx, pk):
        pk = self._pk(pk, "device")

        def change(session):
            manage.set_device(session, pk, ctx.body)
            return {"id": pk}
        await self._change(ctx, "update", "device", change)
        return 200, await self.store.read(queries.device_detail, pk)

    @route("GET", "/api/sessions", "read")
    async def sessions(self, ctx):
        limit, offset = self._page(ctx.query)
        access = self._choice(ctx.query, "access", queries.ACCESS_VALUES)
        return 200, await self.store.read(queries.list_sessions, limit, offset, device=ctx.query.get("device"),
                                          identity=ctx.query.get("identity"), access=access,
                                          since=self._time(ctx.query, "since"), until=self._time(ctx.query, "until"))

    @route("GET", "/api/accounting", "read")
    async def accounting(self, ctx):
        limit, offset = self._page(ctx.query)
        status = self._choice(ctx.query, "open", ("true", "false"))
        return 200, await self.store.read(queries.list_accounting, limit, offset, nas=ctx.query.get("nas"),
                                          station=ctx.query.get("station"), device=ctx.query.get("device"),
                                          open_only=status == "true")

    @route("POST", "/api/accounting/(?P<pk>[^/]+)/coa", "admin")
    async def accounting_coa(self, ctx, pk):
        manage._unknown(ctx.body, {"access"})
        access = ctx.body.get("access")
        if access not in COA_ACCESS:
            raise ApiError(400, "invalid_field", f"is required: one of {', '.join(COA_ACCESS)}", "access")
        return await self._change_session(ctx, self._pk(pk, "accounting session"), access)

    @route("POST", "/api/accounting/(?P<pk>[^/]+)/disconnect", "admin")
    async def accounting_disconnect(self, ctx, pk):
        manage._unknown(ctx.body, set())
        return await self._change_session(ctx, self._pk(pk, "accounting session"), None)

    async def _change_session(self, ctx, pk: int, access: str | None):
        """A CoA-Request (``access``) or Disconnect-Request (None) for
        accounting session ``pk``, sent by the server's RADIUS transport and
        awaited; audited whatever its outcome.  200: acknowledged; 409: the
        NAS sent a NAK (or it cannot be sent); 502: the NAS did not answer."""
        control = self.session_control() if self.session_control is not None else None
        if control is None:
            raise ApiError(409, "unavailable", "no transport of this server sends CoA or Disconnect requests "
                                               "(the radius transport is not enabled)")
        try:
            acked, outcome, text = await control.change_session(pk, access)
        except (LookupError, ValueError) as exc:
            raise ApiError(409, "cannot_send", str(exc).strip("'\"")) from None
        action = outcome["action"]
        log.info("HTTP API: {actor} sent a {action} for accounting session {id}: {outcome}",
                 actor=printable(ctx.actor), action=action, id=pk, outcome=text)
        await self.store.run(manage.audit, ctx.actor, action, "accounting", str(pk),
                             {"request": ctx.body, "outcome": outcome}, ctx.peer)
        if acked:
            return 200, outcome
        status, code = (409, "nak") if outcome["nak"] else (502, "no_answer")
        return status, {"error": {"status": status, "code": code, "message": text, "field": None},
                        "outcome": outcome}

    @route("GET", "/api/sessions/(?P<pk>[^/]+)", "read")
    async def session(self, ctx, pk):
        return 200, await self.store.read(queries.session_detail, self._pk(pk, "session"))

    @route("GET", "/api/groups", "read")
    async def groups(self, ctx):
        return 200, {"items": await self.store.run(manage.list_groups)}

    @route("POST", "/api/groups", "admin")
    async def group_add(self, ctx):
        return 201, await self._change(ctx, "create", "group", manage.add_group, ctx.body)

    @route("GET", "/api/groups/(?P<pk>[^/]+)", "read")
    async def group(self, ctx, pk):
        pk = self._pk(pk, "group")
        return 200, await self.store.run(lambda s: manage.group_info(s, manage._get(s, manage.Group, pk, "group")))

    @route("PATCH", "/api/groups/(?P<pk>[^/]+)", "admin")
    async def group_patch(self, ctx, pk):
        return 200, await self._change(ctx, "update", "group", manage.update_group, self._pk(pk, "group"), ctx.body)

    @route("DELETE", "/api/groups/(?P<pk>[^/]+)", "admin")
    async def group_delete(self, ctx, pk):
        return 200, await self._change(ctx, "delete", "group", manage.delete_group, self._pk(pk, "group"))

    @route("GET", "/api/policies", "read")
    async def policies(self, ctx):
        return 200, {"items": await self.store.run(manage.list_policies)}

    @route("POST", "/api/policies", "admin")
    async def policy_add(self, ctx):
        return 201, await self._change(ctx, "create", "policy", manage.add_policy, ctx.body)

    @route("GET", "/api/policies/(?P<pk>[^/]+)", "read")
    async def policy(self, ctx, pk):
        pk = self._pk(pk, "policy")
        return 200, await self.store.run(lambda s: manage.policy_info(manage._get(s, manage.Policy, pk, "policy")))

    @route("PATCH", "/api/policies/(?P<pk>[^/]+)", "admin")
    async def policy_patch(self, ctx, pk):
        return 200, await self._change(ctx, "update", "policy", manage.update_policy, self._pk(pk, "policy"),
                                       ctx.body)

    @route("DELETE", "/api/policies/(?P<pk>[^/]+)", "admin")
    async def policy_delete(self, ctx, pk):
        return 200, await self._change(ctx, "delete", "policy", manage.delete_policy, self._pk(pk, "policy"))

    @route("GET", "/api/enforcements", "read")
    async def enforcements(self, ctx):
        group = self._int(ctx.query, "group", 0, 1, 2**31 - 1) if "group" in ctx.query else None
        policy = self._int(ctx.query, "policy", 0, 1, 2**31 - 1) if "policy" in ctx.query else None
        return 200, {"items": await self.store.run(manage.list_enforcements, group, policy)}

    @route("POST", "/api/enforcements", "admin")
    async def enforcement_add(self, ctx):
        return 201, await self._change(ctx, "create", "enforcement", manage.add_enforcement, ctx.body)

    @route("GET", "/api/enforcements/(?P<pk>[^/]+)", "read")
    async def enforcement(self, ctx, pk):
        pk = self._pk(pk, "enforcement")
        return 200, await self.store.run(
            lambda s: manage.enforcement_info(s, manage._get(s, manage.Enforcement, pk, "enforcement")))

    @route("PATCH", "/api/enforcements/(?P<pk>[^/]+)", "admin")
    async def enforcement_patch(self, ctx, pk):
        return 200, await self._change(ctx, "update", "enforcement", manage.update_enforcement,
                                       self._pk(pk, "enforcement"), ctx.body)

    @route("DELETE", "/api/enforcements/(?P<pk>[^/]+)", "admin")
    async def enforcement_delete(self, ctx, pk):
        return 200, await self._change(ctx, "delete", "enforcement", manage.delete_enforcement,
                                       self._pk(pk, "enforcement"))

    @route("GET", "/api/products", "read")
    async def products(self, ctx):
        return 200, {"items": await self.store.read(queries.list_products)}

    @route("GET", "/api/packages", "read")
    async def packages(self, ctx):
        limit, offset = self._page(ctx.query)
        flag = self._choice(ctx.query, "blacklisted", ("true", "false"))
        return 200, await self.store.read(queries.list_packages, limit, offset, product=ctx.query.get("product"),
                                          name=ctx.query.get("name"),
                                          blacklisted=None if flag is None else flag == "true")

    @route("POST", "/api/packages/blacklist", "admin")
    async def blacklist(self, ctx):
        body = ctx.body
        manage._unknown(body, {"product", "package", "release", "blacklisted"})
        for key in ("product", "package"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise ApiError(400, "invalid_field", "is required (a string)", key)
        release = body.get("release")
        if release is not None and (not isinstance(release, str) or not release):
            raise ApiError(400, "invalid_field", "must be a release, or absent for every release", "release")
        flag = body.get("blacklisted", True)
        if not isinstance(flag, bool):
            raise ApiError(400, "invalid_field", "must be true or false", "blacklisted")
        info = await self.store.blacklist_package(body["product"], body["package"], release, blacklisted=flag)
        await self.store.run(manage.audit, ctx.actor, "update", "package", f"{body['product']}/{body['package']}",
                             {"request": body}, ctx.peer)
        return 200, {"product": info.product, "package": info.package, "release": info.release,
                     "security": info.security, "blacklisted": info.blacklisted, "time": info.time}

    @route("GET", "/api/users", "read")
    async def users(self, ctx):
        return 200, {"items": await self.store.read(queries.list_users)}

    @route("POST", "/api/users", "admin")
    async def user_add(self, ctx):
        body = ctx.body
        manage._unknown(body, {"name", "password", "eap"})
        name = manage._text("name", body.get("name"), 255)
        password = body.get("password")
        if not isinstance(password, str) or not password or len(password) > 1024:
            raise ApiError(400, "invalid_field", "is required: 1-1024 characters", "password")
        eap = body.get("eap", False)
        if not isinstance(eap, bool):
            raise ApiError(400, "invalid_field", "must be true or false", "eap")
        info = await self.store._defer(self.store.db.add_user, name, password, eap=eap)
        await self.store.run(manage.audit, ctx.actor, "create", "user", name, {"eap": eap}, ctx.peer)
        return 201, {"name": info.name, "enabled": info.enabled, "created": info.created, "eap": info.eap}

    @route("PATCH", "/api/users/(?P<name>[^/]+)", "admin")
    async def user_patch(self, ctx, name):
        body = ctx.body
        manage._unknown(body, {"enabled", "password"})
        if "enabled" in body and not isinstance(body["enabled"], bool):
            raise ApiError(400, "invalid_field", "must be true or false", "enabled")
        if "password" in body and (not isinstance(body["password"], str) or not body["password"]
                                   or len(body["password"]) > 1024):
            raise ApiError(400, "invalid_field", "must be 1-1024 characters", "password")
        info = await self.store._defer(self.store.db.user, name)
        if "password" in body:
            info = await self.store._defer(self.store.db.set_password, name, body["password"])
        if "enabled" in body:
            info = await self.store._defer(self.store.db.set_enabled, name, body["enabled"])
        changed = {k: (v if k != "password" else "(changed)") for k, v in body.items()}
        await self.store.run(manage.audit, ctx.actor, "update", "user", name, changed, ctx.peer)
        return 200, {"name": info.name, "enabled": info.enabled, "created": info.created, "eap": info.eap}

    @route("GET", "/api/settings", "read")
    async def settings_get(self, ctx):
        return 200, await self.store.run(manage.settings)

    @route("PATCH", "/api/settings", "admin")
    async def settings_patch(self, ctx):
        return 200, await self._change(ctx, "update", "settings", manage.update_settings, ctx.body)

    @route("GET", "/api/swid-tags", "read")
    async def swid_tags(self, ctx):
        limit, offset = self._page(ctx.query)
        return 200, await self.store.read(queries.list_swid_tags, limit, offset,
                                          software_id=ctx.query.get("software_id"))

    @route("GET", "/api/audit", "read")
    async def audit_log(self, ctx):
        limit, offset = self._page(ctx.query)
        return 200, await self.store.read(queries.list_audit, limit, offset)

    # -- strongSwan's sw-collector (strongTNC's shapes) -------------------------------------------

    @route("GET", "/api/attestation/aiks", "read")
    async def aiks(self, ctx):
        return 200, {"items": [_aik(info) for info in await self.store.read(_orm(attest_db.list_aiks))]}

    @route("PATCH", "/api/attestation/aiks/(?P<keyid>[^/]+)", "admin")
    async def aik_patch(self, ctx, keyid):
        body = ctx.body
        manage._unknown(body, {"trusted"})
        if not isinstance(body.get("trusted"), bool):
            raise ApiError(400, "invalid_field", "is required (true or false)", "trusted")

        def change(session):
            info = attest_db.set_aik_trusted(session, keyid, body["trusted"])
            return {"id": info.keyid, "aik": _aik(info)}
        return 200, (await self._change(ctx, "update", "aik", change))["aik"]

    @route("GET", "/api/attestation/results", "read")
    async def attestations(self, ctx):
        limit, _offset = self._page(ctx.query)
        found = await self.store.read(_orm(attest_db.list_attestations), keyid=ctx.query.get("aik"),
                                      device=ctx.query.get("device"), limit=limit)
        return 200, {"items": [{"id": a.id, "keyid": a.keyid, "device": a.device, "session": a.session_id,
                                "time": a.created, "evaluation": a.evaluation.label, "summary": a.summary,
                                "details": a.details} for a in found]}

    @route("POST", "/api/swid/add-tags/?", "collector")
    async def sw_add_tags(self, ctx):
        return await self.store.run(swcollector.add_tags, ctx.body)

    @route("POST", "/api/sessions/(?P<pk>[^/]+)/swid-measurement/?", "collector")
    async def sw_measurement(self, ctx, pk):
        return await self.store.run(swcollector.swid_measurement, pk, ctx.body)

    @route("POST", "/api/sessions/(?P<pk>[^/]+)/swid-events/?", "collector")
    async def sw_events(self, ctx, pk):
        return await self.store.run(swcollector.swid_events, pk, ctx.body)


class HttpRoot(resource.Resource):
    """Every request of the HTTP service: the web console's under
    ``/console`` (when it is served), the API's otherwise."""

    isLeaf = True

    def __init__(self, api: ApiResource, console=None):
        super().__init__()
        self.api, self.console = api, console

    def render(self, request):
        if self.console is not None:
            if request.path == b"/" and request.method in (b"GET", b"HEAD"):
                request.redirect(b"/console/")
                return b""
            if request.path == b"/console" or request.path.startswith(b"/console/"):
                return self.console.render(request)
        return self.api.render(request)


class ApiSite(server.Site):
    requestFactory = ApiRequest

    def __init__(self, api: ApiResource, console=None):
        super().__init__(HttpRoot(api, console))
        self.max_body_size = api.settings.max_body_size
        self.noisy = False

    def log(self, request):
        # the access log line, without headers (tokens); the path escaped
        log.debug("HTTP {method} {path} {code} from {peer}", method=printable(request.method.decode("latin-1")),
                  path=printable(request.path.decode("latin-1")[:200]), code=request.code,
                  peer=getattr(request.getClientAddress(), "host", "?"))
