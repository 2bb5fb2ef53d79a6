"""The OpenAPI 3 document of the HTTP API, served at ``/api/openapi.json``
and checked against the running server by schemathesis in the tests."""

from __future__ import annotations

from nac import __version__
from nac.db.manage import MAX_AGE_LIMIT
from nac.db.models import PolicyType

RECS = ["allow", "isolate", "block", "none"]


def _s(kind, **extra):
    return {"type": kind, **extra}


def _n(schema):
    return {**schema, "nullable": True}


STR, INT, BOOL = _s("string"), _s("integer"), _s("boolean")
TIME = _s("string", format="date-time")


#: the API refuses C0 control characters and DEL in names and texts
NO_CONTROL = r"^[^\u0000-\u001f\u007f]*$"
INT32 = 2**31 - 1


def _text(max_length: int, min_length: int = 0):
    return _s("string", minLength=min_length, maxLength=max_length, pattern=NO_CONTROL)


def _input(props: dict, required=()):
    """A request body: only the fields named (the API refuses others)."""
    schema = {"type": "object", "properties": props, "additionalProperties": False}
    return {**schema, "required": list(required)} if required else schema


def _obj(props: dict, required=None):
    return {"type": "object", "properties": props, "required": list(required if required is not None else props)}


ERROR = _obj({"error": _obj({"status": INT, "code": STR, "message": STR, "field": _n(STR)})})
DECISION = _n(_obj({"session": INT, "access": _n(STR), "time": TIME, "reason": STR}))
SESSION = _obj({"id": INT, "identity": _n(STR), "auth_method": STR, "transport": STR, "peer_address": STR,
                "peer_port": INT, "nas": _n(STR), "device": _n(STR), "started": TIME, "ended": _n(TIME),
                "recommendation": _n(STR), "evaluation": _n(STR), "access": _n(STR), "reason": STR})
ACCOUNTING = _obj({
    "id": INT, "nas": STR, "nas_address": STR, "acct_session_id": STR, "status": STR, "user_name": _n(STR),
    "calling_station_id": _n(STR), "called_station_id": _n(STR), "nas_port": _n(INT), "nas_port_id": _n(STR),
    "framed_ip_address": _n(STR), "nas_ip_address": _n(STR), "device": _n(STR), "assessment_id": _n(INT), "started": _n(TIME),
    "stopped": _n(TIME), "updated": TIME, "session_time": _n(INT), "input_octets": INT, "output_octets": INT,
    "terminate_cause": _n(STR), "coa_action": _n(STR), "coa_result": _n(STR), "coa_time": _n(TIME)})
#: the outcome of a CoA-Request / Disconnect-Request (RFC 5176) the server sent
COA_OUTCOME = _obj({"id": INT, "nas": STR, "action": _s("string", enum=["coa", "disconnect"]), "acked": BOOL,
                    "nak": BOOL, "error_cause": _n(INT), "attempts": INT, "result": STR})
COA_FAILED = {"allOf": [ERROR, {"type": "object", "properties": {"outcome": COA_OUTCOME}}]}
RESULT = _obj({"imv_id": INT, "imv": STR, "recommendation": STR, "evaluation": STR, "reason": STR,
               "remediation": STR, "forced": BOOL})
DEVICE = _obj({"id": INT, "device_id": STR, "description": STR, "trusted": BOOL, "product": _n(STR),
               "first_seen": TIME, "last_seen": TIME, "groups": _s("array", items=STR), "last_decision": DECISION})
DEVICE_DETAIL = {"allOf": [DEVICE, _obj({"history": _s("array", items=SESSION), "inventory": INT})]}
SESSION_DETAIL = {"allOf": [SESSION, _obj({"results": _s("array", items=RESULT)})]}
NETS = _n(_s("array", items=STR))
NETS_INPUT = _n({"anyOf": [_text(4096), _s("array", items=_text(4096))]})
#: a VLAN number (1-4094) or name
VLAN = _n({"anyOf": [_s("integer", minimum=1, maximum=4094), _s(
    "string", maxLength=64,
    pattern=r"^(?:0*(?:[1-9][0-9]{0,2}|[1-3][0-9]{3}|40[0-8][0-9]|409[0-4])|"
            r"[^\u0000-\u001f\u007f]*[^0-9\u0000-\u001f\u007f][^\u0000-\u001f\u007f]*)?$")]})
GROUP = _obj({"id": INT, "name": STR, "parent": _n(STR), "description": STR, "default": BOOL, "devices": INT,
              "products": _s("array", items=STR), "identities": _s("array", items=STR),
              "filter_id_allow": _n(STR), "filter_id_isolate": _n(STR), "vlan_allow": _n(STR),
              "vlan_isolate": _n(STR), "allow_ts": NETS, "isolate_ts": NETS, "session_timeout": _n(INT)})
GROUP_INPUT = _input({
    "name": _text(50, 1), "parent": _n(_text(50, 1)), "description": _n(_text(4096)),
    "products": _s("array", items=STR), "identities": _s("array", items=_text(1024, 1)),
    "filter_id_allow": _n(_text(253)), "filter_id_isolate": _n(_text(253)), "vlan_allow": VLAN,
    "vlan_isolate": VLAN, "allow_ts": NETS_INPUT, "isolate_ts": NETS_INPUT,
    "session_timeout": _n(_s("integer", minimum=0, maximum=INT32))})
POLICY = _obj({"id": INT, "name": STR, "type": STR, "argument": STR, "rec_fail": _s("string", enum=RECS),
               "rec_noresult": _s("string", enum=RECS)})
POLICY_INPUT = _input({
    "name": _text(100, 1), "type": _s("string", enum=[t.value for t in PolicyType]),
    "argument": _n(_text(65536)), "rec_fail": _s("string", enum=RECS), "rec_noresult": _s("string", enum=RECS)})
ENFORCEMENT = _obj({"id": INT, "policy": INT, "group": INT, "policy_name": STR, "group_name": STR,
                    "max_age": INT, "rec_fail": _n(_s("string", enum=RECS)), "rec_noresult": _n(_s("string", enum=RECS))})
ENFORCEMENT_INPUT = _input({
    "policy": _s("integer", minimum=1, maximum=INT32), "group": _s("integer", minimum=1, maximum=INT32),
    "max_age": _s("integer", minimum=0, maximum=MAX_AGE_LIMIT),
    "rec_fail": _n(_s("string", enum=RECS)), "rec_noresult": _n(_s("string", enum=RECS))})
#: what POST needs of each (PATCH changes what it names)
REQUIRED = {"groups": ["name"], "policies": ["name", "type"], "enforcements": ["policy", "group"]}
PRODUCT = _obj({"id": INT, "name": STR, "devices": INT, "default_groups": _s("array", items=STR)})
PACKAGE = _obj({"product": STR, "package": STR, "release": STR, "security": BOOL, "blacklisted": BOOL,
                "time": TIME})
AIK = _obj({"keyid": STR, "trusted": BOOL, "device": _n(STR), "product": _n(STR), "description": STR,
            "created": TIME, "last_seen": _n(TIME)})
ATTESTATION = _obj({"id": INT, "keyid": _n(STR), "device": _n(STR), "session": _n(INT), "time": TIME,
                    "evaluation": STR, "summary": STR, "details": {}})
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


def _coa_op(summary, body, required=True):
    """A CoA / Disconnect operation: 200 with the NAS's ACK; 409 with its NAK
    (or when nothing can be sent), 502 when it did not answer."""
    op = _op(summary, COA_OUTCOME, body=body, role="admin")
    op["requestBody"]["required"] = required
    op["responses"].update({
        "409": {"description": "the NAS sent a NAK (outcome: its Error-Cause), or no CoA can be sent for the "
                               "session (no RADIUS transport, its NAS is no client)", **_json(COA_FAILED)},
        "502": {"description": "the NAS did not answer any try", **_json(COA_FAILED)}})
    return op


def _q(name, schema=STR, description=""):
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name="pk"):
    return {"name": name, "in": "path", "required": True, "schema": _s("integer", minimum=1)}


def _operation_id(method: str, path: str) -> str:
    """``get_api_groups_pk`` for GET /api/groups/{pk}."""
    words = [w.strip("{}").replace("-", "_") for w in path.split("/") if w]
    return "_".join([method, *words])


#: (path, method, status) -> the operations its response leads to, and their
#: path parameters from the response (what the stateful phase of a tester follows)
_LINKS = [
    *[((f"/api/{name}", "post", "201"), [(m, f"/api/{name}/{{pk}}") for m in ("get", "patch", "delete")],
       {"pk": "$response.body#/id"}) for name in ("groups", "policies", "enforcements")],
    (("/api/devices", "get", "200"), [("get", "/api/devices/{pk}"), ("patch", "/api/devices/{pk}")],
     {"pk": "$response.body#/items/0/id"}),
    (("/api/sessions", "get", "200"), [("get", "/api/sessions/{pk}"),
                                       ("post", "/api/sessions/{pk}/swid-measurement/"),
                                       ("post", "/api/sessions/{pk}/swid-events/")],
     {"pk": "$response.body#/items/0/id"}),
    (("/api/accounting", "get", "200"), [("post", "/api/accounting/{pk}/coa"),
                                         ("post", "/api/accounting/{pk}/disconnect")],
     {"pk": "$response.body#/items/0/id"}),
    (("/api/users", "post", "201"), [("patch", "/api/users/{name}")], {"name": "$response.body#/name"}),
]


def _linked(paths: dict) -> dict:
    """``paths`` with an operationId for every operation and the links of :data:`_LINKS`."""
    for path, item in paths.items():
        for method, op in item.items():
            if method != "parameters":
                op["operationId"] = _operation_id(method, path)
    for (path, method, status), targets, parameters in _LINKS:
        response = paths[path][method]["responses"][status]
        response["links"] = {_operation_id(m, target): {"operationId": _operation_id(m, target),
                                                        "parameters": dict(parameters)}
                             for m, target in targets}
    return paths


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
                                "post": _op(f"create one of {name}", schema, "201",
                                            body={**body, "required": REQUIRED[name]}, role="admin")}
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
        "paths": _linked({
            "/api/devices": {"get": _op("devices", _page(DEVICE), params=[
                limit, offset, _q("group"), _q("product"), _q("decision", access, "the last decision"), _q("q")])},
            "/api/devices/{pk}": {"parameters": [_path()], "get": _op("a device with its history", DEVICE_DETAIL),
                                  "patch": _op("change a device (description, trusted, groups)", DEVICE_DETAIL,
                                               body=_input({"description": _n(_text(4096)), "trusted": BOOL,
                                                            "groups": _s("array", items=STR)}), role="admin")},
            "/api/sessions": {"get": _op("sessions, newest first", _page(SESSION), params=[
                limit, offset, _q("device"), _q("identity"), _q("access", access),
                _q("since", TIME), _q("until", TIME)])},
            "/api/accounting": {"get": _op("RADIUS accounting sessions, most recently updated first",
                                           _page(ACCOUNTING), params=[
                limit, offset, _q("nas"), _q("station"), _q("device"),
                _q("open", _s("string", enum=["true", "false"]), "only sessions not stopped")])},
            "/api/accounting/{pk}/coa": {"parameters": [_path()], "post": _coa_op(
                "send the session's NAS a CoA-Request with the enforcement of access (denied: a "
                "Disconnect-Request), and its answer", _input({"access": access}, ["access"]))},
            "/api/accounting/{pk}/disconnect": {"parameters": [_path()], "post": _coa_op(
                "send the session's NAS a Disconnect-Request, and its answer", _input({}), required=False)},
            "/api/sessions/{pk}": {"parameters": [_path()], "get": _op("a session and its IMV results",
                                                                        SESSION_DETAIL)},
            **crud,
            "/api/products": {"get": _op("products", _items(PRODUCT))},
            "/api/packages": {"get": _op("package releases", _page(PACKAGE), params=[
                limit, offset, _q("product"), _q("name"), _q("blacklisted", _s("string", enum=["true", "false"]))])},
            "/api/packages/blacklist": {"post": _op("blacklist (or not) a release or every release", PACKAGE, body=_input(
                {"product": _s("string", minLength=1), "package": _s("string", minLength=1),
                 "release": _n(_s("string", minLength=1)), "blacklisted": BOOL}, ["product", "package"]),
                role="admin")},
            "/api/users": {"get": _op("users", _items(USER)),
                           "post": _op("add a user", USER, "201", body=_input(
                               {"name": _text(255, 1), "password": _s("string", minLength=1, maxLength=1024),
                                "eap": BOOL}, ["name", "password"]), role="admin")},
            "/api/users/{name}": {"parameters": [{"name": "name", "in": "path", "required": True, "schema": STR}],
                                  "patch": _op("enable, disable or change the password of a user", USER,
                                               body=_input({"enabled": BOOL, "password": _s(
                                                   "string", minLength=1, maxLength=1024)}), role="admin")},
            "/api/settings": {"get": _op("server settings", SETTINGS),
                              "patch": _op("change settings", SETTINGS, body=_input({
                                  "default_group": _text(50, 1)}), role="admin")},
            "/api/swid-tags": {"get": _op("software identifiers", _page(SWID), params=[
                limit, offset, _q("software_id")])},
            "/api/attestation/aiks": {"get": _op("the TPMs' attestation identity keys", _items(AIK))},
            "/api/attestation/aiks/{keyid}": {
                "parameters": [{"name": "keyid", "in": "path", "required": True, "schema": STR}],
                "patch": _op("trust or distrust an AIK's quotes", AIK, body=_input({"trusted": BOOL}, ["trusted"]),
                             role="admin")},
            "/api/attestation/results": {"get": _op("the newest attestations", _items(ATTESTATION), params=[
                limit, _q("aik", description="of one AIK (key ID)"), _q("device", description="of one device's AIKs")])},
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
        }),
    }
