"""The OpenAPI 3 document of the HTTP API, served at ``/api/openapi.json``
and checked against the running server by schemathesis in the tests."""

from __future__ import annotations

from nac import __version__
from nac.db.models import PolicyType

RECS = ["allow", "isolate", "block", "none"]


def _s(kind, **extra):
    return {"type": kind, **extra}


def _n(schema):
    return {**schema, "nullable": True}


STR, INT, BOOL = _s("string"), _s("integer"), _s("boolean")
TIME = _s("string", format="date-time")


def _obj(props: dict, required=None):
    return {"type": "object", "properties": props, "required": list(required if required is not None else props)}


ERROR = _obj({"error": _obj({"status": INT, "code": STR, "message": STR, "field": _n(STR)})})
DECISION = _n(_obj({"session": INT, "access": _n(STR), "time": TIME, "reason": STR}))
SESSION = _obj({"id": INT, "identity": _n(STR), "auth_method": STR, "transport": STR, "peer_address": STR,
                "peer_port": INT, "nas": _n(STR), "device": _n(STR), "started": TIME, "ended": _n(TIME),
                "recommendation": _n(STR), "evaluation": _n(STR), "access": _n(STR), "reason": STR})
RESULT = _obj({"imv_id": INT, "imv": STR, "recommendation": STR, "evaluation": STR, "reason": STR,
               "remediation": STR, "forced": BOOL})
DEVICE = _obj({"id": INT, "device_id": STR, "description": STR, "trusted": BOOL, "product": _n(STR),
               "first_seen": TIME, "last_seen": TIME, "groups": _s("array", items=STR), "last_decision": DECISION})
DEVICE_DETAIL = {"allOf": [DEVICE, _obj({"history": _s("array", items=SESSION), "inventory": INT})]}
SESSION_DETAIL = {"allOf": [SESSION, _obj({"results": _s("array", items=RESULT)})]}
NETS = _n(_s("array", items=STR))
GROUP = _obj({"id": INT, "name": STR, "parent": _n(STR), "description": STR, "default": BOOL, "devices": INT,
              "products": _s("array", items=STR), "identities": _s("array", items=STR),
              "filter_id_allow": _n(STR), "filter_id_isolate": _n(STR), "vlan_allow": _n(STR),
              "vlan_isolate": _n(STR), "allow_ts": NETS, "isolate_ts": NETS, "session_timeout": _n(INT)})
GROUP_INPUT = {"type": "object", "properties": {
    "name": _s("string", minLength=1, maxLength=50), "parent": _n(STR), "description": STR,
    "products": _s("array", items=STR), "identities": _s("array", items=STR),
    "filter_id_allow": _n(STR), "filter_id_isolate": _n(STR), "vlan_allow": _n(STR), "vlan_isolate": _n(STR),
    "allow_ts": _n(STR), "isolate_ts": _n(STR), "session_timeout": _n(_s("integer", minimum=0))}}
POLICY = _obj({"id": INT, "name": STR, "type": STR, "argument": STR, "rec_fail": _s("string", enum=RECS),
               "rec_noresult": _s("string", enum=RECS)})
POLICY_INPUT = {"type": "object", "properties": {
    "name": _s("string", minLength=1, maxLength=100), "type": _s("string", enum=[t.value for t in PolicyType]),
    "argument": STR, "rec_fail": _s("string", enum=RECS), "rec_noresult": _s("string", enum=RECS)}}
ENFORCEMENT = _obj({"id": INT, "policy": INT, "group": INT, "policy_name": STR, "group_name": STR,
                    "max_age": INT, "rec_fail": _n(_s("string", enum=RECS)), "rec_noresult": _n(_s("string", enum=RECS))})
ENFORCEMENT_INPUT = {"type": "object", "properties": {
    "policy": _s("integer", minimum=1), "group": _s("integer", minimum=1), "max_age": _s("integer", minimum=0),
    "rec_fail": _n(_s("string", enum=RECS)), "rec_noresult": _n(_s("string", enum=RECS))}}
PRODUCT = _obj({"id": INT, "name": STR, "devices": INT, "default_groups": _s("array", items=STR)})
PACKAGE = _obj({"product": STR, "package": STR, "release": STR, "security": BOOL, "blacklisted": BOOL,
                "time": TIME})
USER = _obj({"name": STR, "enabled": BOOL, "created": TIME, "eap": BOOL})
SWID = _obj({"id": INT, "software_id": STR, "has_tag": BOOL})
AUDIT = _obj({"id": INT, "time": TIME, "actor": STR, "action": STR, "resource": STR, "target": STR,
              "details": {}, "peer": STR})
SETTINGS = _obj({"default_group": _n(STR)})
DETAIL = _obj({"detail": STR})


def _page(item):
    return _obj({"items": _s("array", items=item), "total": INT, "limit": INT, "offset": INT})


def _items(item):
    return _obj({"items": _s("array", items=item)})


def _json(schema):
    return {"content": {"application/json": {"schema": schema}}}


def _op(summary, schema, status="200", params=(), body=None, role="read"):
    op = {"summary": f"{summary} (role: {role})", "parameters": list(params),
          "responses": {status: {"description": "OK", **_json(schema)},
                        "default": {"description": "an error", **_json(ERROR)}}}
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    return op


def _q(name, schema=STR, description=""):
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name="pk"):
    return {"name": name, "in": "path", "required": True, "schema": _s("integer", minimum=1)}


def openapi_document(settings) -> dict:
    limit = _q("limit", _s("integer", minimum=1, maximum=settings.max_page_size), "page size")
    offset = _q("offset", _s("integer", minimum=0), "items skipped")
    access = _s("string", enum=["allowed", "isolate", "denied"])
    sw_list = _obj({"data": _s("array", items=STR)})
    sw_response = {"description": "OK", **_json(_s("array", items=STR))}
    sw_error = {"description": "strongTNC's error", **_json(DETAIL)}
    sw = {"responses": {"200": sw_response, "412": {"description": "software ids without a tag",
                                                    **_json(_s("array", items=STR))},
                        "400": sw_error, "404": sw_error, "default": {"description": "an error", **_json(ERROR)}}}
    crud = {}
    for name, schema, body in (("groups", GROUP, GROUP_INPUT), ("policies", POLICY, POLICY_INPUT),
                               ("enforcements", ENFORCEMENT, ENFORCEMENT_INPUT)):
        params = [_q("group", _s("integer", minimum=1)), _q("policy", _s("integer", minimum=1))] \
            if name == "enforcements" else []
        crud[f"/api/{name}"] = {"get": _op(f"list {name}", _items(schema), params=params),
                                "post": _op(f"create one of {name}", schema, "201", body=body, role="admin")}
        crud[f"/api/{name}/{{pk}}"] = {"parameters": [_path()], "get": _op(f"one of {name}", schema),
                                       "patch": _op(f"change one of {name}", schema, body=body, role="admin"),
                                       "delete": _op(f"delete one of {name}", schema, role="admin")}
    return {
        "openapi": "3.0.3",
        "info": {"title": "nac HTTP API", "version": __version__,
                 "description": "Devices, sessions and the group policy of a nac server. Authenticate with "
                                "`Authorization: Bearer TOKEN` (nac-admin token add); roles read, collector, admin."},
        "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"},
                                           "basic": {"type": "http", "scheme": "basic"}}},
        "security": [{"token": []}, {"basic": []}],
        "paths": {
            "/api/devices": {"get": _op("devices", _page(DEVICE), params=[
                limit, offset, _q("group"), _q("product"), _q("decision", access, "the last decision"), _q("q")])},
            "/api/devices/{pk}": {"parameters": [_path()], "get": _op("a device with its history", DEVICE_DETAIL),
                                  "patch": _op("change a device (description, trusted, groups)", DEVICE_DETAIL,
                                               body={"type": "object", "properties": {
                                                   "description": STR, "trusted": BOOL,
                                                   "groups": _s("array", items=STR)}}, role="admin")},
            "/api/sessions": {"get": _op("sessions, newest first", _page(SESSION), params=[
                limit, offset, _q("device"), _q("identity"), _q("access", access),
                _q("since", TIME), _q("until", TIME)])},
            "/api/sessions/{pk}": {"parameters": [_path()], "get": _op("a session and its IMV results",
                                                                        SESSION_DETAIL)},
            **crud,
            "/api/products": {"get": _op("products", _items(PRODUCT))},
            "/api/packages": {"get": _op("package releases", _page(PACKAGE), params=[
                limit, offset, _q("product"), _q("name"), _q("blacklisted", _s("string", enum=["true", "false"]))])},
            "/api/packages/blacklist": {"post": _op("blacklist (or not) a release or every release", PACKAGE, body=_obj(
                {"product": _s("string", minLength=1), "package": _s("string", minLength=1), "release": STR,
                 "blacklisted": BOOL}, ["product", "package"]), role="admin")},
            "/api/users": {"get": _op("users", _items(USER)),
                           "post": _op("add a user", USER, "201", body=_obj(
                               {"name": _s("string", minLength=1), "password": _s("string", minLength=1),
                                "eap": BOOL}, ["name", "password"]), role="admin")},
            "/api/users/{name}": {"parameters": [{"name": "name", "in": "path", "required": True, "schema": STR}],
                                  "patch": _op("enable, disable or change the password of a user", USER,
                                               body={"type": "object", "properties": {
                                                   "enabled": BOOL, "password": _s("string", minLength=1)}},
                                               role="admin")},
            "/api/settings": {"get": _op("server settings", SETTINGS),
                              "patch": _op("change settings", SETTINGS, body={"type": "object", "properties": {
                                  "default_group": STR}}, role="admin")},
            "/api/swid-tags": {"get": _op("software identifiers", _page(SWID), params=[
                limit, offset, _q("software_id")])},
            "/api/audit": {"get": _op("the audit log, newest first", _page(AUDIT), params=[limit, offset])},
            "/api/swid/add-tags/": {"post": {"summary": "sw-collector: store SWID tags (role: collector)",
                                             "requestBody": {"required": True, **_json(sw_list)},
                                             "responses": {"200": {"description": "OK", **_json(DETAIL)},
                                                           "400": sw_error,
                                                           "default": {"description": "an error",
                                                                       **_json(ERROR)}}}},
            "/api/sessions/{pk}/swid-measurement/": {
                "parameters": [_path()],
                "post": {"summary": "sw-collector: the session's software ids (role: collector)",
                         "requestBody": {"required": True, **_json(sw_list)}, **sw}},
            "/api/sessions/{pk}/swid-events/": {
                "parameters": [_path()],
                "post": {"summary": "sw-collector: software events (role: collector)",
                         "requestBody": {"required": True, **_json(_obj({
                             "epoch": INT, "lastEid": INT, "events": _s("array", items=_obj({
                                 "eid": INT, "timestamp": STR, "recordId": INT, "sourceId": INT,
                                 "action": _s("integer", enum=[1, 2]), "softwareId": STR}))}))}, **sw}},
        },
    }
