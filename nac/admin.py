"""``nac-admin``: set up and inspect nac's policy database.

::

    nac-admin [--config FILE] [--db URL] [--json] COMMAND
    nac-admin --version

    check-config                 check the configuration as `twistd nac` would start it
    config sample                print the documented sample configuration
    init                         create the schema or upgrade it to this nac's
    user add NAME [--password PW | --password-file F | --password-stdin] [--eap]
    user passwd NAME [--password PW | --password-file F | --password-stdin]
    user disable NAME | user enable NAME
    user del NAME
    user list
    sessions list [--limit N]
    accounting list [--limit N] [--open] [--nas NAS] [--station ID] [--device DEVICE_ID]
    coa ACCT_ID --access allowed|isolate   (RFC 5176 CoA-Request with that decision's enforcement)
    disconnect ACCT_ID                     (RFC 5176 Disconnect-Request)
    devices list
    results show SESSION_ID
    packages import --product PRODUCT [--security] FILE
    packages blacklist NAME [VERSION] --product PRODUCT [--remove]
    packages list [--product PRODUCT] [--name NAME] [--blacklisted] [--limit N]
    group add NAME [--parent GROUP]
    group del NAME
    group list
    group member add|del GROUP (--device DEVICE_ID | --identity NAME)
    group member list GROUP
    cert issue NAME [--ca-cert F --ca-key F] [--out DIR] [--days N] [--san NAME]... [--force]
    token add NAME [--role read|collector|admin]   (prints the token once; only its hash is kept)
    token list
    token revoke NAME
    console-user add NAME [--role read|admin] [--password PW | --password-file F | --password-stdin]
    console-user passwd NAME [--password PW | --password-file F | --password-stdin]
    console-user role NAME read|admin
    console-user disable NAME | console-user enable NAME
    console-user del NAME
    console-user list

``packages import`` reads a Debian archive's ``Packages`` file (plain, gzip,
xz or bzip2; a dpkg ``status`` file too) or a ``dpkg-query -W`` listing
(``-`` is standard input) and records every release for the product, the
name the OS IMV gives a host (``Debian 12 x86_64``); ``--security`` marks
them as security releases (from a security archive), which makes older
releases outdated.  Nothing is written when any line is malformed.

The database is ``--db``, else ``[nac] db`` of the configuration file (or
its default, SQLite in the state directory).  Each command is one
transaction.  Exit status 0 on success, 1 with one ``nac-admin: error:``
line otherwise.  Passwords are never printed.
"""

from __future__ import annotations

import argparse
import datetime
import enum
import getpass
import json
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import sqlalchemy as sa

from nac import package_list
from nac.certs import KEY_TYPES
from nac.console import print_output
from nac.db.engine import (
    DatabaseUnavailable,
    SchemaError,
    check_schema,
    current_revision,
    display_url,
    make_engine,
    sqlite_path,
    upgrade,
)
from nac.db.store import PolicyDb, StoreError
from nac.package_list import MAX_PACKAGE_LIST_SIZE

PROG = "nac-admin"
DEFAULT_SESSION_LIMIT = 20


class AdminError(Exception):
    """A command failed; the message is shown after ``nac-admin: error:``."""


class _UsageError(AdminError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise _UsageError(f"{message} (see `{self.prog} --help`)")


@dataclass(frozen=True)
class Output:
    """What a command prints: ``data`` as JSON with ``--json``, else ``text``."""

    data: Any
    text: str


# -- formatting --------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return getattr(value, "label", value.name.lower())
    return value


def _record(obj) -> dict[str, Any]:
    return {key: _json_value(value) for key, value in asdict(obj).items()}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, enum.Enum):
        return getattr(value, "label", value.name.lower())
    # one line per row: lines joined with "; ", runs of blanks collapsed
    lines = (" ".join(line.split()) for line in str(value).splitlines())
    return "; ".join(line for line in lines if line) or "-"


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], empty: str) -> str:
    """``rows`` aligned under ``columns`` (key, heading); times are UTC."""
    if not rows:
        return empty
    cells = [[heading for _key, heading in columns]]
    cells += [[_cell(row[key]) for key, _heading in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
        for line in cells)


# -- commands ----------------------------------------------------------------------------


def cmd_init(url: str, args) -> Output:
    engine = make_engine(url)
    try:
        before = current_revision(engine)
        revision = upgrade(engine)
    finally:
        engine.dispose()
    where = display_url(url)
    if before == revision:
        text = f"{where}: schema already at revision {revision}"
    elif before is None:
        text = f"{where}: schema created at revision {revision}"
    else:
        text = f"{where}: schema upgraded from revision {before} to {revision}"
    return Output({"database": where, "revision": revision, "previous": before}, text)


def _read_password(args) -> str:
    """The password of ``--password``, ``--password-file`` or
    ``--password-stdin`` (their first line), else asked for twice."""
    if args.password is not None:
        password = args.password
    elif args.password_file is not None:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                password = f.readline().rstrip("\r\n")
        except OSError as exc:
            raise AdminError(f"cannot read {args.password_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise AdminError(f"{args.password_file}: not UTF-8 text") from None
    elif args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise AdminError("no password on standard input")
        password = line.rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Repeat the password: ") != password:
            raise AdminError("the passwords do not match")
    if not password:
        raise AdminError("the password must not be empty")
    return password


def cmd_user_add(db: PolicyDb, args) -> Output:
    if args.eap:
        db.secrets = _secret_box(args)
    user = db.add_user(args.name, _read_password(args), eap=args.eap)
    return Output(_record(user), f"user {user.name!r} added" + (" (also for EAP)" if args.eap else ""))


def _secret_box(args):
    """The SecretBox of ``[nac] secret_key_file`` (created when absent, as the server does)."""
    from nac import config as nac_config
    from nac.db.secrets import SecretBox, SecretKeyError, load_or_create_key

    try:
        path = nac_config.load(getattr(args, "config", None)).get("nac", "secret_key_file")
        return SecretBox(load_or_create_key(path, strict_owner=False))
    except nac_config.ConfigError as exc:
        raise AdminError("; ".join(exc.problems) or str(exc)) from None
    except SecretKeyError as exc:
        raise AdminError(str(exc)) from None


def cmd_user_del(db: PolicyDb, args) -> Output:
    db.delete_user(args.name)
    return Output({"name": args.name, "deleted": True}, f"user {args.name!r} deleted")


def cmd_user_passwd(db: PolicyDb, args) -> Output:
    # an unknown user is said before the password is asked for; the key is
    # only needed (and only created) for a user with an EAP secret
    if db.user(args.name).eap:
        db.secrets = _secret_box(args)
    password = _read_password(args)
    user = db.set_password(args.name, password)
    also = " (and its EAP secret)" if user.eap else ""
    return Output(_record(user), f"password of user {user.name!r}{also} changed")


def cmd_user_enable(db: PolicyDb, args) -> Output:
    user = db.set_enabled(args.name, True)
    return Output(_record(user), f"user {user.name!r} enabled")


def cmd_user_disable(db: PolicyDb, args) -> Output:
    user = db.set_enabled(args.name, False)
    return Output(_record(user), f"user {user.name!r} disabled: its logins are refused")


def cmd_user_list(db: PolicyDb, args) -> Output:
    users = db.list_users()
    rows = [{**asdict(u), "state": "enabled" if u.enabled else "disabled"} for u in users]
    columns = [("name", "NAME"), ("state", "STATE"), ("eap", "EAP"), ("created", "CREATED (UTC)")]
    return Output([_record(u) for u in users], _table(rows, columns, "no users"))


_SESSION_COLUMNS = [
    ("id", "SESSION"), ("started", "STARTED (UTC)"), ("ended", "ENDED (UTC)"),
    ("transport", "TRANSPORT"), ("nas", "NAS"), ("peer_address", "PEER"), ("identity", "IDENTITY"),
    ("device", "DEVICE"), ("recommendation", "RECOMMENDATION"),
    ("evaluation", "EVALUATION"), ("access", "ACCESS"),
    # the nac instance and its Connection ID, which its log lines name
    ("instance", "INSTANCE"), ("connection_id", "CONNECTION ID"),
]


def cmd_sessions_list(db: PolicyDb, args) -> Output:
    sessions = db.list_sessions(args.limit)
    return Output([_record(s) for s in sessions],
                  _table([asdict(s) for s in sessions], _SESSION_COLUMNS, "no sessions"))


_ACCOUNTING_COLUMNS = [
    ("id", "ID"), ("nas", "NAS"), ("acct_session_id", "ACCT-SESSION-ID"), ("status", "STATUS"),
    ("user_name", "USER"), ("calling_station_id", "STATION"), ("nas_port_id", "PORT"),
    ("framed_ip_address", "ADDRESS"), ("device", "DEVICE"), ("started", "STARTED (UTC)"),
    ("stopped", "STOPPED (UTC)"), ("input_octets", "IN"), ("output_octets", "OUT"),
    ("terminate_cause", "CAUSE"), ("coa_result", "LAST COA"),
]


def cmd_accounting_list(db: PolicyDb, args) -> Output:
    from nac.db.accounting import list_accounting

    rows, _total = db.read(list_accounting, args.limit, 0, nas=args.nas, station=args.station,
                           device=args.device, open_only=args.open)
    return Output([_record(r) for r in rows],
                  _table([asdict(r) for r in rows], _ACCOUNTING_COLUMNS, "no accounting sessions"))


def _send_dynamic(db: PolicyDb, args, access: str | None) -> Output:
    """A CoA-Request (``access``) or Disconnect-Request (None) for accounting
    session ``args.id``, sent from here by the RADIUS transport with the
    NAS's secret and ``coa_port`` of the configuration."""
    from nac import config as nac_config
    from nac.interfaces import ISessionControl
    from nac.plugins import TransportPluginError, transport_plugin

    try:
        cfg = nac_config.load(getattr(args, "config", None))
        plugin = transport_plugin("radius")
    except nac_config.ConfigError as exc:
        raise AdminError("; ".join(exc.problems) or str(exc)) from None
    except TransportPluginError as exc:
        raise AdminError(str(exc)) from None
    if not ISessionControl.providedBy(plugin):
        raise AdminError("the installed RADIUS transport cannot send CoA or Disconnect requests")
    try:
        acked, data, text = plugin.change_session(cfg, db, args.id, access)
    except nac_config.ConfigError as exc:
        raise AdminError("; ".join(exc.problems) or str(exc)) from None
    except (LookupError, ValueError) as exc:
        raise AdminError(str(exc).strip("'\"")) from None
    if not acked:
        raise AdminError(text)
    return Output(data, text)


def cmd_coa(db: PolicyDb, args) -> Output:
    return _send_dynamic(db, args, args.access)


def cmd_disconnect(db: PolicyDb, args) -> Output:
    return _send_dynamic(db, args, None)


def cmd_devices_list(db: PolicyDb, args) -> Output:
    devices = db.list_devices()
    columns = [("id", "ID"), ("device_id", "DEVICE ID"), ("product", "PRODUCT"),
               ("trusted", "TRUSTED"), ("first_seen", "FIRST SEEN (UTC)"),
               ("last_seen", "LAST SEEN (UTC)"), ("description", "DESCRIPTION")]
    return Output([_record(d) for d in devices],
                  _table([asdict(d) for d in devices], columns, "no devices"))


def cmd_results_show(db: PolicyDb, args) -> Output:
    session, results = db.session_results(args.session_id)
    fields = [
        ("session", session.id), ("instance", session.instance), ("process", session.process),
        ("connection id", session.connection_id),
        ("started (UTC)", session.started), ("ended (UTC)", session.ended),
        ("transport", session.transport), ("nas", session.nas),
        ("peer", f"{session.peer_address} port {session.peer_port}"),
        ("identity", session.identity), ("auth method", session.auth_method),
        ("device", session.device), ("recommendation", session.recommendation),
        ("evaluation", session.evaluation), ("access", session.access),
        ("reason", session.reason or None),
    ]
    head = [f"{name}: {_cell(value)}" for name, value in fields]
    columns = [("imv_id", "IMV ID"), ("imv_name", "IMV"), ("recommendation", "RECOMMENDATION"),
               ("evaluation", "EVALUATION"), ("forced", "FORCED"), ("reason", "REASON"),
               ("remediation", "REMEDIATION")]
    table = _table([asdict(r) for r in results], columns, "no IMV results")
    data = {"session": _record(session), "results": [_record(r) for r in results]}
    return Output(data, "\n".join(head) + "\n\n" + table)


# -- packages ----------------------------------------------------------------------------

def _read_input(path: str) -> bytes:
    if path == "-":
        stream = getattr(sys.stdin, "buffer", None)
        return stream.read() if stream is not None else sys.stdin.read().encode()
    try:
        with open(path, "rb") as f:
            return f.read(MAX_PACKAGE_LIST_SIZE + 1)
    except OSError as exc:
        raise AdminError(f"cannot read {path}: {exc.strerror}") from None


def read_package_list(data: bytes, source: str = "-") -> list[tuple[str, str]]:
    """:func:`nac.package_list.read_package_list`, its errors as AdminError."""
    try:
        return package_list.read_package_list(data, source)
    except package_list.PackageListError as exc:
        raise AdminError(str(exc)) from None


def cmd_packages_import(db: PolicyDb, args) -> Output:
    releases = read_package_list(_read_input(args.file), args.file)
    if not releases:
        raise AdminError(f"{args.file}: no packages found")
    done = db.import_packages(args.product, releases, security=args.security)
    kind = "security releases" if args.security else "releases"
    text = (f"{args.product!r}: {done.releases} {kind} read; {done.packages_added} new package(s), "
            f"{done.versions_added} new release(s), {done.versions_marked} marked as security "
            f"release(s), {done.unchanged} already known")
    return Output(_record(done), text)


def cmd_packages_blacklist(db: PolicyDb, args) -> Output:
    info = db.blacklist_package(args.product, args.name, args.version, blacklisted=not args.remove)
    what = "every release" if info.release == "*" else f"release {info.release!r}"
    state = "no longer blacklisted" if args.remove else "blacklisted"
    return Output(_record(info), f"package {info.package!r} ({what}) {state} on {info.product!r}")


def cmd_packages_list(db: PolicyDb, args) -> Output:
    versions = db.list_packages(args.product, args.name, blacklisted_only=args.blacklisted,
                                limit=args.limit)
    columns = [("product", "PRODUCT"), ("package", "PACKAGE"), ("release", "RELEASE"),
               ("security", "SECURITY"), ("blacklisted", "BLACKLISTED"), ("time", "ADDED (UTC)")]
    return Output([_record(v) for v in versions],
                  _table([asdict(v) for v in versions], columns, "no packages"))


# -- attestation -------------------------------------------------------------------------

#: Files hashed from one directory tree, and IMA entries read from one list.
MAX_REFERENCE_FILES = 1_000_000
_HASH_NAMES = ("sha1", "sha256", "sha384", "sha512")


def _read_public_key(path: str) -> bytes:
    """An AIK's public key (PEM or DER SubjectPublicKeyInfo, or the
    certificate holding it) as DER."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from nac.pts.tpm2 import load_public_key

    data = _read_input(path)
    try:
        key = load_public_key(data)
    except ValueError:
        try:
            certificate = (x509.load_pem_x509_certificate(data) if data.lstrip().startswith(b"-----BEGIN")
                           else x509.load_der_x509_certificate(data))
            key = load_public_key(certificate.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        except ValueError as err:
            raise AdminError(f"{path}: not an RSA or EC public key or certificate ({_one_line(str(err))})") from None
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def read_reference_tree(directory: str, root: str, algorithm: str) -> list[tuple[str, str, str]]:
    """(path, algorithm, hex digest) of every regular file below
    ``directory`` (symbolic links not followed), named as on the endpoint:
    ``root`` standing for ``directory`` (a known-good image mounted at
    /mnt/image is ``--root /``)."""
    import hashlib

    base = Path(directory)
    if not base.is_dir():
        raise AdminError(f"{directory}: not a directory")
    found = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            if len(found) >= MAX_REFERENCE_FILES:
                raise AdminError(f"{directory}: more than {MAX_REFERENCE_FILES} files")
            digest = hashlib.new(algorithm)
            try:
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        digest.update(chunk)
            except OSError as err:
                raise AdminError(f"{path}: {err.strerror}") from None
            endpoint_path = "/" + "/".join(filter(None, (root.strip("/"), *path.relative_to(base).parts)))
            found.append((endpoint_path, algorithm, digest.hexdigest()))
    return found


def read_ima_references(path: str) -> list[tuple[str, str, str]]:
    """(path, algorithm, hex digest) of the files an IMA measurement list of a
    known-good host measured: the binary list (binary_runtime_measurements)
    or its text form (ascii_runtime_measurements).  The boot aggregate and
    measurement violations are left out."""
    from nac.pts.ima import BOOT_AGGREGATE, ImaLogError, parse_ima_log

    data = _read_input(path)
    found = []
    if re.match(rb"\d+ [0-9a-f]{40,128} ", data) is None:  # not the text form: the binary list
        try:
            entries = parse_ima_log(data, max_entries=MAX_REFERENCE_FILES)
        except ImaLogError as err:
            raise AdminError(f"{path}: {err}") from None
        for entry in entries:
            if entry.violation or not entry.digest_algorithm or entry.filename == BOOT_AGGREGATE:
                continue
            if entry.digest_algorithm in _HASH_NAMES:
                found.append((entry.filename, entry.digest_algorithm, entry.file_digest.hex()))
        return found
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        fields = line.split(" ", 4)
        if len(fields) < 5:
            if line.strip():
                raise AdminError(f"{path}: line {number} is not an IMA measurement")
            continue
        _pcr, template_hash, template, digest, name = fields
        if template not in ("ima", "ima-ng", "ima-sig") or set(template_hash) == {"0"}:
            continue
        if template == "ima-sig" and " " in name:
            name = name.rsplit(" ", 1)[0]  # the signature follows the name
        algorithm, colon, value = digest.partition(":")
        if not colon:
            algorithm, value = "sha1", digest
        if name != BOOT_AGGREGATE and algorithm in _HASH_NAMES:
            found.append((name, algorithm, value))
        if len(found) > MAX_REFERENCE_FILES:
            raise AdminError(f"{path}: more than {MAX_REFERENCE_FILES} entries")
    return found


def _aik_row(info) -> dict:
    return _record(info)


def cmd_attest_aik_add(db: PolicyDb, args) -> Output:
    from nac.db import attestation as attest_db

    info = db.run(attest_db.register_aik, _read_public_key(args.file), device=args.device, product=args.product,
                  trusted=args.trusted, description=args.description)
    state = "trusted" if info.trusted else "registered, not trusted (`nac-admin attest aik trust KEYID`)"
    return Output(_aik_row(info), f"AIK {info.keyid}: {state}"
                  + (f", device {info.device!r}" if info.device else "")
                  + (f", product {info.product!r}" if info.product else ""))


def _cmd_attest_trust(trusted: bool):
    def command(db: PolicyDb, args) -> Output:
        from nac.db import attestation as attest_db

        info = db.run(attest_db.set_aik_trusted, args.keyid, trusted)
        return Output(_aik_row(info), f"AIK {info.keyid}: {'trusted' if trusted else 'not trusted'}")
    return command


cmd_attest_aik_trust = _cmd_attest_trust(True)
cmd_attest_aik_untrust = _cmd_attest_trust(False)


def cmd_attest_aik_del(db: PolicyDb, args) -> Output:
    from nac.db import attestation as attest_db

    db.run(attest_db.delete_aik, args.keyid)
    return Output({"keyid": args.keyid, "deleted": True}, f"AIK {args.keyid} deleted")


def cmd_attest_aik_list(db: PolicyDb, args) -> Output:
    from nac.db import attestation as attest_db

    aiks = db.run(attest_db.list_aiks)
    columns = [("keyid", "KEY ID"), ("trusted", "TRUSTED"), ("device", "DEVICE"), ("product", "PRODUCT"),
               ("last_seen", "LAST SEEN (UTC)"), ("description", "DESCRIPTION")]
    return Output([_aik_row(a) for a in aiks], _table([asdict(a) for a in aiks], columns, "no AIKs"))


def cmd_attest_import(db: PolicyDb, args) -> Output:
    from nac.db import attestation as attest_db

    if args.ima_log is not None:
        entries, source = read_ima_references(args.ima_log), args.ima_log
    else:
        entries, source = read_reference_tree(args.dir, args.root or args.dir, args.algorithm), args.dir
    if not entries:
        raise AdminError(f"{source}: no files found")
    done = db.run(attest_db.import_file_hashes, args.product, entries)
    scope = repr(args.product) if args.product else "every product"
    return Output(_record(done), f"{source}: {done.files} file(s) read for {scope}; {done.added} new reference "
                                 f"digest(s), {len(entries) - done.added} already known")


def cmd_attest_results(db: PolicyDb, args) -> Output:
    from nac.db import attestation as attest_db

    found = db.run(attest_db.list_attestations, keyid=args.aik, device=args.device, limit=args.limit)
    columns = [("id", "ID"), ("created", "TIME (UTC)"), ("device", "DEVICE"), ("keyid", "AIK"),
               ("session_id", "SESSION"), ("evaluation", "EVALUATION"), ("summary", "SUMMARY")]
    return Output([_record(a) for a in found], _table([asdict(a) for a in found], columns, "no attestations"))


# -- groups ------------------------------------------------------------------------------


def cmd_group_add(db: PolicyDb, args) -> Output:
    group = db.add_group(args.name, args.parent)
    under = f" under {group.parent!r}" if group.parent else ""
    return Output(_record(group), f"group {group.name!r} added{under}")


def cmd_group_del(db: PolicyDb, args) -> Output:
    db.delete_group(args.name)
    return Output({"name": args.name, "deleted": True}, f"group {args.name!r} deleted")


def cmd_group_list(db: PolicyDb, args) -> Output:
    groups = db.list_groups()
    columns = [("name", "GROUP"), ("parent", "PARENT"), ("devices", "DEVICES"),
               ("identities", "IDENTITIES")]
    return Output([_record(g) for g in groups],
                  _table([asdict(g) for g in groups], columns, "no groups"))


def cmd_group_member_add(db: PolicyDb, args) -> Output:
    member = db.add_group_member(args.group, device=args.device, identity=args.identity)
    return Output(_record(member), f"{member.kind} {member.member!r} added to group {member.group!r}")


def cmd_group_member_del(db: PolicyDb, args) -> Output:
    db.delete_group_member(args.group, device=args.device, identity=args.identity)
    kind, member = ("device", args.device) if args.device is not None else ("identity", args.identity)
    return Output({"group": args.group, "kind": kind, "member": member, "deleted": True},
                  f"{kind} {member!r} removed from group {args.group!r}")


def cmd_token_add(db: PolicyDb, args) -> Output:
    from nac.db import manage

    try:
        info, token = db.run(manage.add_token, args.name, args.role)
    except manage.FieldError as exc:
        raise AdminError(str(exc)) from None
    return Output({**{k: _json_value(v) for k, v in info.items()}, "token": token},
                  f"token {info['name']!r} ({info['role']}) added; it is shown only now:\n{token}")


def cmd_token_list(db: PolicyDb, args) -> Output:
    from nac.db import manage

    tokens = [{k: _json_value(v) for k, v in t.items()} for t in db.run(manage.list_tokens)]
    rows = [{**t, "state": "revoked" if t["revoked"] else "active"} for t in tokens]
    return Output(tokens, _table(rows, [("name", "NAME"), ("role", "ROLE"), ("state", "STATE"),
                                        ("created", "CREATED")], "no API tokens"))


def cmd_token_revoke(db: PolicyDb, args) -> Output:
    from nac.db import manage

    info = {k: _json_value(v) for k, v in db.run(manage.revoke_token, args.name).items()}
    return Output(info, f"token {info['name']!r} revoked")


def _console_user_output(info: dict, text: str) -> Output:
    return Output({k: _json_value(v) for k, v in info.items()}, text)


def cmd_console_user_add(db: PolicyDb, args) -> Output:
    from nac.db import manage

    info = db.run(manage.add_console_user, args.name, _read_password(args), args.role)
    return _console_user_output(info, f"console user {info['name']!r} ({info['role']}) added")


def cmd_console_user_passwd(db: PolicyDb, args) -> Output:
    from nac.db import manage

    db.run(manage.update_console_user, args.name, {})  # an unknown user is said before the prompt
    info = db.run(manage.update_console_user, args.name, {"password": _read_password(args)})
    return _console_user_output(info, f"password of console user {info['name']!r} changed")


def cmd_console_user_role(db: PolicyDb, args) -> Output:
    from nac.db import manage

    info = db.run(manage.update_console_user, args.name, {"role": args.role})
    return _console_user_output(info, f"console user {info['name']!r} is now {info['role']}")


def cmd_console_user_enable(db: PolicyDb, args) -> Output:
    from nac.db import manage

    enabled = args.action == "enable"
    info = db.run(manage.update_console_user, args.name, {"enabled": enabled})
    return _console_user_output(info, f"console user {info['name']!r} {'enabled' if enabled else 'disabled'}")


def cmd_console_user_del(db: PolicyDb, args) -> Output:
    from nac.db import manage

    info = db.run(manage.delete_console_user, args.name)
    return Output({"name": info["name"], "deleted": True}, f"console user {info['name']!r} deleted")


def cmd_console_user_list(db: PolicyDb, args) -> Output:
    from nac.db import manage

    users = [{k: _json_value(v) for k, v in u.items()} for u in db.run(manage.list_console_users)]
    rows = [{**u, "state": "enabled" if u["enabled"] else "disabled"} for u in users]
    return Output(users, _table(rows, [("name", "NAME"), ("role", "ROLE"), ("state", "STATE"),
                                       ("created", "CREATED")], "no console users"))


def cmd_group_member_list(db: PolicyDb, args) -> Output:
    members = db.group_members(args.group)
    columns = [("kind", "KIND"), ("member", "MEMBER")]
    return Output([_record(m) for m in members],
                  _table([asdict(m) for m in members], columns, f"group {args.group!r} has no members"))


# -- certificates ------------------------------------------------------------------------

#: A certificate's name is also its files' name: no path, no hidden file.
_CERT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._+-]{0,63}")
DEFAULT_CERT_DAYS = 365


def cmd_cert_issue(args) -> Output:
    """A client certificate (clientAuth) and its key from the demo CA of the
    state directory, or from ``--ca-cert``/``--ca-key``."""
    from cryptography import x509

    from nac import certs

    if not _CERT_NAME.fullmatch(args.name) or args.name.endswith("."):
        raise AdminError(f"{args.name[:80]!r} is not a certificate name: 1-64 letters, digits and "
                         "@ . _ + -, starting with a letter or digit (it also names the files)")
    if (args.ca_cert is None) != (args.ca_key is None):
        raise AdminError("--ca-cert and --ca-key go together")
    if args.ca_cert is None:
        from nac import config as nac_config

        try:
            state = nac_config.load(getattr(args, "config", None)).state_dir
        except nac_config.ConfigError as exc:
            raise AdminError("; ".join(exc.problems) or str(exc)) from None
        ca_cert, ca_key = os.path.join(state, certs.CA_CERT), os.path.join(state, certs.CA_KEY)
        if not os.path.exists(ca_cert):
            raise AdminError(f"no demo CA in {state} (the server makes it when it first starts): "
                             "start it once, or give --ca-cert and --ca-key")
    else:
        ca_cert, ca_key = args.ca_cert, args.ca_key
    out = args.out
    try:
        os.makedirs(out, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise AdminError(f"{out}: cannot create the directory: {exc.strerror}") from None
    cert_path, key_path = os.path.join(out, f"{args.name}.pem"), os.path.join(out, f"{args.name}.key")
    try:
        certs.issue_certificate(ca_cert, ca_key, args.name, cert_path, key_path, client=True,
                                san_dns=args.san or (), key_type=args.key_type,
                                validity=datetime.timedelta(days=args.days), replace=args.force)
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except certs.PkiError as exc:
        message = str(exc)
        if "refusing to overwrite" in message:
            message += " (--force replaces it)"
        raise AdminError(message) from None
    except OSError as exc:
        raise AdminError(f"{exc.filename}: {exc.strerror}") from None
    not_after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after
    identity = certs.certificate_identity(cert)
    data = {"name": args.name, "identity": identity, "certificate": os.path.abspath(cert_path),
            "key": os.path.abspath(key_path), "issuer": cert.issuer.rfc4514_string(),
            "serial": f"{cert.serial_number:x}", "not_after": not_after.isoformat()}
    text = (f"certificate {args.name!r} issued by {data['issuer']} until "
            f"{not_after.strftime('%Y-%m-%d %H:%M:%S')} UTC (identity {identity!r}): "
            f"{cert_path}, key {key_path}")
    return Output(data, text)


def _days(text: str) -> int:
    value = _positive_int(text)
    if value > 36500:
        raise argparse.ArgumentTypeError(f"{text!r} days is more than 100 years")
    return value


# -- configuration -----------------------------------------------------------------------


def cmd_check_config(args) -> Output:
    """What ``twistd nac --config FILE --check`` does, with ``--db`` as ``twistd nac --db``."""
    from nac import tap

    argv = []
    if getattr(args, "config", None):
        argv += ["--config", args.config]
    if getattr(args, "db", None):
        argv += ["--db", args.db]
    try:
        options = tap.Options()
        options.parseOptions(argv)
        line = tap.check_configuration(options)
    except tap.StartupError as exc:
        raise AdminError(exc.line) from None
    source = options.nac_config.source
    return Output({"ok": True, "config": source}, line)


def cmd_config_sample(args) -> Output:
    from nac import sample_config

    data = [{"section": name, "help": help_text,
             "keys": [{"key": option.name, "default": sample_config.render_default(option), "help": option.help}
                      for option in options]}
            for name, help_text, options in sample_config.sections()]
    return Output(data, sample_config.sample().rstrip("\n"))


# -- command line ------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    # The global options are accepted before and after the command
    # (SUPPRESS: a subcommand that was not given them keeps the earlier value).
    common = _Parser(add_help=False)
    common.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="nac configuration file; its [nac] db is the database")
    common.add_argument("--db", metavar="URL", default=argparse.SUPPRESS,
                        help="SQLAlchemy database URL (overrides the configuration), "
                             "e.g. sqlite:////var/lib/nac/nac.db")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON instead of tables")

    from nac import __version__

    parser = _Parser(prog=PROG, parents=[common],
                     description="Set up and inspect nac's policy database; check its configuration.")
    parser.add_argument("--version", action="version", version=f"nac {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(group, name: str, func: Callable, help_text: str) -> argparse.ArgumentParser:
        sub = group.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(func=func)
        return sub

    command(commands, "init", cmd_init, "create the database schema, or upgrade it")

    command(commands, "check-config", cmd_check_config,
            "check the configuration (--config) as `twistd nac` would start with it: values, IMVs, "
            "certificates, the database; nothing is started")
    config = commands.add_parser("config", help="the configuration file")
    config_actions = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    command(config_actions, "sample", cmd_config_sample,
            "print the sample configuration: every section and key with its default and what it does")

    user = commands.add_parser("user", help="manage password accounts")
    users = user.add_subparsers(dest="action", metavar="ACTION", required=True)
    def password_options(sub: argparse.ArgumentParser) -> None:
        source = sub.add_mutually_exclusive_group()
        source.add_argument("--password", metavar="PW",
                            help="the password (visible to other local users in the process "
                                 "list; prefer --password-file, standard input or the prompt)")
        source.add_argument("--password-file", metavar="FILE",
                            help="read the password from the first line of FILE")
        source.add_argument("--password-stdin", action="store_true",
                            help="read the password from the first line of standard input "
                                 "(without any of these options it is asked for twice)")

    add = command(users, "add", cmd_user_add, "add a user")
    add.add_argument("name", metavar="NAME")
    password_options(add)
    add.add_argument("--eap", action="store_true",
                     help="also accept the password for EAP-MD5 and EAP-MSCHAPv2, which need it "
                          "back: it is then also stored sealed with [nac] secret_key_file")
    passwd = command(users, "passwd", cmd_user_passwd,
                     "change a user's password (and its EAP secret, when it has one); the old "
                     "password is refused from the next login on")
    passwd.add_argument("name", metavar="NAME")
    password_options(passwd)
    for name, func, text in (
            ("disable", cmd_user_disable, "refuse a user's logins from the next one on, keeping the account"),
            ("enable", cmd_user_enable, "accept a disabled user's logins again")):
        sub = command(users, name, func, text)
        sub.add_argument("name", metavar="NAME")
    delete = command(users, "del", cmd_user_del, "delete a user")
    delete.add_argument("name", metavar="NAME")
    command(users, "list", cmd_user_list, "list the users")

    sessions = commands.add_parser("sessions", help="assessment sessions")
    sessions_actions = sessions.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = command(sessions_actions, "list", cmd_sessions_list, "list the newest sessions")
    listing.add_argument("--limit", type=_positive_int, default=DEFAULT_SESSION_LIMIT,
                         metavar="N", help=f"how many (default {DEFAULT_SESSION_LIMIT})")

    accounting = commands.add_parser("accounting", help="RADIUS accounting sessions (RFC 2866)")
    accounting_actions = accounting.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = command(accounting_actions, "list", cmd_accounting_list,
                      "list the accounting sessions, most recently updated first")
    listing.add_argument("--limit", type=_positive_int, default=DEFAULT_SESSION_LIMIT,
                         metavar="N", help=f"how many (default {DEFAULT_SESSION_LIMIT})")
    listing.add_argument("--open", action="store_true", help="only sessions not stopped")
    listing.add_argument("--nas", metavar="NAS", help="of this NAS (its [radius-client:NAME], else address)")
    listing.add_argument("--station", metavar="ID", help="of this Calling-Station-Id")
    listing.add_argument("--device", metavar="DEVICE_ID", help="of this device")

    coa = command(commands, "coa", cmd_coa, "send the NAS of an accounting session a CoA-Request (RFC 5176) "
                  "with the enforcement of a decision; the outcome is recorded with the session")
    coa.add_argument("id", metavar="ACCT_ID", type=_positive_int, help="the accounting session (accounting list)")
    coa.add_argument("--access", choices=("allowed", "isolate"), required=True,
                     help="the decision whose Filter-Id / VLAN the NAS is to apply")
    disconnect = command(commands, "disconnect", cmd_disconnect,
                         "send the NAS of an accounting session a Disconnect-Request (RFC 5176)")
    disconnect.add_argument("id", metavar="ACCT_ID", type=_positive_int)

    devices = commands.add_parser("devices", help="assessed devices")
    devices_actions = devices.add_subparsers(dest="action", metavar="ACTION", required=True)
    command(devices_actions, "list", cmd_devices_list, "list the devices")

    results = commands.add_parser("results", help="per-IMV results")
    results_actions = results.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = command(results_actions, "show", cmd_results_show,
                   "show a session's decision and each IMV's result")
    show.add_argument("session_id", metavar="SESSION_ID", type=_positive_int)

    packages = commands.add_parser("packages", help="package policy of the OS IMV")
    packages_actions = packages.add_subparsers(dest="action", metavar="ACTION", required=True)
    imports = command(packages_actions, "import", cmd_packages_import,
                      "record the package releases of a product from a Debian Packages file "
                      "or a `dpkg-query -W` listing")
    imports.add_argument("file", metavar="FILE", help="the list; - for standard input")
    imports.add_argument("--product", required=True, metavar="PRODUCT",
                         help="the product, as the OS IMV names hosts, e.g. 'Debian 12 x86_64'")
    imports.add_argument("--security", action="store_true",
                         help="the releases are security releases (from a security archive)")
    blacklist = command(packages_actions, "blacklist", cmd_packages_blacklist,
                        "forbid a package on a product: one release, or every release")
    blacklist.add_argument("name", metavar="NAME")
    blacklist.add_argument("version", metavar="VERSION", nargs="?",
                           help="the release to forbid (default: every release)")
    blacklist.add_argument("--product", required=True, metavar="PRODUCT")
    blacklist.add_argument("--remove", action="store_true", help="lift the blacklisting instead")
    plisting = command(packages_actions, "list", cmd_packages_list, "list the known releases")
    plisting.add_argument("--product", metavar="PRODUCT")
    plisting.add_argument("--name", metavar="NAME", help="one package only")
    plisting.add_argument("--blacklisted", action="store_true", help="blacklisted releases only")
    plisting.add_argument("--limit", type=_positive_int, metavar="N", help="at most N rows")

    group = commands.add_parser("group", help="groups of devices and identities")
    group_actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    gadd = command(group_actions, "add", cmd_group_add, "add a group")
    gadd.add_argument("name", metavar="NAME")
    gadd.add_argument("--parent", metavar="GROUP", help="the group it belongs to")
    gdel = command(group_actions, "del", cmd_group_del,
                   "delete a group (its subgroups lose their parent)")
    gdel.add_argument("name", metavar="NAME")
    command(group_actions, "list", cmd_group_list, "list the groups")
    member = group_actions.add_parser("member", help="members of a group")
    member_actions = member.add_subparsers(dest="member_action", metavar="ACTION", required=True)
    for name, func, text in (("add", cmd_group_member_add, "put a device or an identity into a group"),
                             ("del", cmd_group_member_del, "take a device or an identity out of a group")):
        sub = command(member_actions, name, func, text)
        sub.add_argument("group", metavar="GROUP")
        who = sub.add_mutually_exclusive_group(required=True)
        who.add_argument("--device", metavar="DEVICE_ID", help="a device by its Device ID")
        who.add_argument("--identity", metavar="NAME",
                         help="an identity (user name, certificate subject) as transports authenticate it")
    mlist = command(member_actions, "list", cmd_group_member_list, "list the members of a group")
    mlist.add_argument("group", metavar="GROUP")
    attest = commands.add_parser("attest", help="remote attestation: AIKs, reference digests, results")
    attest_actions = attest.add_subparsers(dest="action", metavar="ACTION", required=True)
    aik = attest_actions.add_parser("aik", help="the TPMs' attestation identity keys")
    aik_actions = aik.add_subparsers(dest="aik_action", metavar="ACTION", required=True)
    aik_add = command(aik_actions, "add", cmd_attest_aik_add,
                      "register an AIK (its public key, PEM or DER, or its certificate) for a device, "
                      "or update the registered one")
    aik_add.add_argument("file", metavar="FILE", help="the AIK's public key; - for standard input")
    aik_add.add_argument("--device", metavar="DEVICE_ID", help="the device it belongs to")
    aik_add.add_argument("--product", metavar="PRODUCT",
                         help="whose reference digests apply, e.g. 'Debian 12 x86_64' (default: the device's)")
    aik_add.add_argument("--trusted", action="store_true", help="trust its quotes from now on")
    aik_add.add_argument("--description", metavar="TEXT")
    for name, func, text in (("trust", cmd_attest_aik_trust, "trust an AIK's quotes"),
                             ("untrust", cmd_attest_aik_untrust, "stop trusting an AIK's quotes"),
                             ("del", cmd_attest_aik_del, "forget an AIK")):
        sub = command(aik_actions, name, func, text)
        sub.add_argument("keyid", metavar="KEYID", help="its key ID (SHA-1 of the public key, hex)")
    command(aik_actions, "list", cmd_attest_aik_list, "list the AIKs")
    imports = command(attest_actions, "import", cmd_attest_import,
                      "record reference digests of files: every file of a directory tree (a known-good "
                      "image) or every file an IMA measurement list of a known-good host measured")
    source = imports.add_mutually_exclusive_group(required=True)
    source.add_argument("--dir", metavar="DIR", help="hash the regular files below DIR")
    source.add_argument("--ima-log", metavar="FILE",
                        help="an IMA measurement list (binary or ascii_runtime_measurements); - for standard input")
    imports.add_argument("--root", metavar="PATH",
                         help="the path DIR has on the endpoints (default: DIR), e.g. / for a mounted image")
    imports.add_argument("--algorithm", choices=("sha256", "sha384", "sha512", "sha1"), default="sha256",
                         help="hash of --dir files, the one IMA uses (default: %(default)s)")
    imports.add_argument("--product", metavar="PRODUCT",
                         help="the product they are references of (default: every product)")
    results_cmd = command(attest_actions, "results", cmd_attest_results, "list the newest attestations")
    results_cmd.add_argument("--aik", metavar="KEYID", help="of one AIK")
    results_cmd.add_argument("--device", metavar="DEVICE_ID", help="of one device's AIKs")
    results_cmd.add_argument("--limit", type=_positive_int, default=DEFAULT_SESSION_LIMIT, metavar="N",
                             help=f"how many (default {DEFAULT_SESSION_LIMIT})")
    token = commands.add_parser("token", help="HTTP API tokens")
    token_actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    tadd = command(token_actions, "add", cmd_token_add,
                   "make an API token (printed once; only its SHA-256 hash is stored)")
    tadd.add_argument("name", metavar="NAME")
    tadd.add_argument("--role", choices=("read", "collector", "admin"), default="read",
                      help="read: every GET; collector: strongSwan's sw-collector endpoints; admin: everything")
    command(token_actions, "list", cmd_token_list, "list the API tokens (never the tokens themselves)")
    trevoke = command(token_actions, "revoke", cmd_token_revoke, "revoke an API token")
    trevoke.add_argument("name", metavar="NAME")
    console = commands.add_parser("console-user", help="people who log in to the web console ([http])")
    console_actions = console.add_subparsers(dest="action", metavar="ACTION", required=True)
    cadd = command(console_actions, "add", cmd_console_user_add,
                   "add a console user (the password is kept as a scrypt hash)")
    cadd.add_argument("name", metavar="NAME")
    cadd.add_argument("--role", choices=("read", "admin"), default="read",
                      help="read: every page, no changes; admin: changes too, users and tokens")
    password_options(cadd)
    cpasswd = command(console_actions, "passwd", cmd_console_user_passwd, "change a console user's password")
    cpasswd.add_argument("name", metavar="NAME")
    password_options(cpasswd)
    crole = command(console_actions, "role", cmd_console_user_role, "change a console user's role")
    crole.add_argument("name", metavar="NAME")
    crole.add_argument("role", choices=("read", "admin"))
    for name, text in (("enable", "let a console user log in again"),
                       ("disable", "refuse a console user's logins (sessions end at the next request)")):
        sub = command(console_actions, name, cmd_console_user_enable, text)
        sub.add_argument("name", metavar="NAME")
    cdel = command(console_actions, "del", cmd_console_user_del, "delete a console user")
    cdel.add_argument("name", metavar="NAME")
    command(console_actions, "list", cmd_console_user_list, "list the console users")
    cert = commands.add_parser("cert", help="certificates from nac's CA")
    cert_actions = cert.add_subparsers(dest="action", metavar="ACTION", required=True)
    issue = command(cert_actions, "issue", cmd_cert_issue,
                    "issue a client certificate (PT-TLS, EAP-TLS-style clients): NAME.pem and NAME.key "
                    "(mode 0600) from the demo CA in the state directory, or another CA")
    issue.add_argument("name", metavar="NAME", help="the common name, also the files' name")
    issue.add_argument("--ca-cert", metavar="FILE", help="the issuing CA's certificate (PEM); "
                                                         "default: ca.pem in the state directory")
    issue.add_argument("--ca-key", metavar="FILE", help="the issuing CA's private key (unencrypted PEM); "
                                                        "default: ca.key in the state directory")
    issue.add_argument("--out", metavar="DIR", default=".", help="where to write the files (default: here)")
    issue.add_argument("--days", type=_days, default=DEFAULT_CERT_DAYS, metavar="N",
                       help=f"validity in days (default {DEFAULT_CERT_DAYS}; never beyond the CA's)")
    issue.add_argument("--san", action="append", metavar="NAME",
                       help="a subjectAltName: an e-mail address (user@host), IP address, DNS name, "
                            "or email:/uri:/dns:/ip: followed by one; repeatable.  The first e-mail, "
                            "DNS or URI name is the identity nac sees, else NAME")
    issue.add_argument("--key-type", choices=KEY_TYPES, default="ecdsa",
                       help="ecdsa (P-256, the default) or rsa (2048 bits)")
    issue.add_argument("--force", action="store_true", help="replace existing files")
    return parser


#: Commands that need no database.
_WITHOUT_DATABASE = (cmd_cert_issue, cmd_check_config, cmd_config_sample)


def _database_url(args) -> str:
    if getattr(args, "db", None):
        return args.db
    from nac import config as nac_config

    try:
        return nac_config.load(getattr(args, "config", None)).db_url
    except nac_config.ConfigError as exc:
        raise AdminError("; ".join(exc.problems) or str(exc)) from None
    except OSError as exc:
        raise AdminError(f"{exc.filename}: {exc.strerror}") from None


def _open_existing(url: str) -> sa.Engine:
    """The engine of an initialised database; AdminError/SchemaError otherwise."""
    path = sqlite_path(url)
    if path is not None and not os.path.exists(path):
        # do not leave an empty database file behind
        raise AdminError(f"no database at {path}: run `nac-admin init`")
    engine = make_engine(url)
    try:
        check_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _run(args) -> Output:
    if args.func in _WITHOUT_DATABASE:
        return args.func(args)
    url = _database_url(args)
    if args.func is cmd_init:
        return cmd_init(url, args)
    engine = _open_existing(url)
    try:
        return args.func(PolicyDb(engine), args)
    finally:
        engine.dispose()


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _database_error(exc: sa.exc.SQLAlchemyError) -> str:
    # the driver's own message, without the statement and its parameters
    original = getattr(exc, "orig", None)
    return _one_line(str(original) if original is not None else str(exc)) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nac-admin`` with ``argv`` (default ``sys.argv[1:]``); the exit status."""
    try:
        args = build_parser().parse_args(argv)
        output = _run(args)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except (AdminError, StoreError, SchemaError, DatabaseUnavailable) as exc:
        message = _one_line(str(exc))
    except sa.exc.SQLAlchemyError as exc:
        message = _database_error(exc)
    except KeyboardInterrupt:
        message = "interrupted"
    else:
        if getattr(args, "json", False):
            print_output(json.dumps(output.data, indent=2, ensure_ascii=False))
        else:
            print_output(output.text)
        return 0
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
