"""``nac-admin``: set up and inspect nac's policy database.

::

    nac-admin [--config FILE] [--db URL] [--json] COMMAND

    init                         create the schema or upgrade it to this nac's
    user add NAME [--password PW | --password-stdin]
    user del NAME
    user list
    sessions list [--limit N]
    devices list
    results show SESSION_ID

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
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import sqlalchemy as sa

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
    if args.password is not None:
        password = args.password
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
    user = db.add_user(args.name, _read_password(args))
    return Output(_record(user), f"user {user.name!r} added")


def cmd_user_del(db: PolicyDb, args) -> Output:
    db.delete_user(args.name)
    return Output({"name": args.name, "deleted": True}, f"user {args.name!r} deleted")


def cmd_user_list(db: PolicyDb, args) -> Output:
    users = db.list_users()
    columns = [("name", "NAME"), ("enabled", "ENABLED"), ("created", "CREATED (UTC)")]
    return Output([_record(u) for u in users],
                  _table([asdict(u) for u in users], columns, "no users"))


_SESSION_COLUMNS = [
    ("id", "SESSION"), ("started", "STARTED (UTC)"), ("ended", "ENDED (UTC)"),
    ("transport", "TRANSPORT"), ("peer_address", "PEER"), ("identity", "IDENTITY"),
    ("device", "DEVICE"), ("recommendation", "RECOMMENDATION"),
    ("evaluation", "EVALUATION"), ("access", "ACCESS"),
]


def cmd_sessions_list(db: PolicyDb, args) -> Output:
    sessions = db.list_sessions(args.limit)
    return Output([_record(s) for s in sessions],
                  _table([asdict(s) for s in sessions], _SESSION_COLUMNS, "no sessions"))


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
        ("session", session.id), ("connection id", session.connection_id),
        ("started (UTC)", session.started), ("ended (UTC)", session.ended),
        ("transport", session.transport),
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

    parser = _Parser(prog=PROG, parents=[common],
                     description="Set up and inspect nac's policy database.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(group, name: str, func: Callable, help_text: str) -> argparse.ArgumentParser:
        sub = group.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(func=func)
        return sub

    command(commands, "init", cmd_init, "create the database schema, or upgrade it")

    user = commands.add_parser("user", help="manage password accounts")
    users = user.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = command(users, "add", cmd_user_add, "add a user")
    add.add_argument("name", metavar="NAME")
    source = add.add_mutually_exclusive_group()
    source.add_argument("--password", metavar="PW",
                        help="the password (visible to other local users in the process "
                             "list; prefer --password-stdin or the prompt)")
    source.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input")
    delete = command(users, "del", cmd_user_del, "delete a user")
    delete.add_argument("name", metavar="NAME")
    command(users, "list", cmd_user_list, "list the users")

    sessions = commands.add_parser("sessions", help="assessment sessions")
    sessions_actions = sessions.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = command(sessions_actions, "list", cmd_sessions_list, "list the newest sessions")
    listing.add_argument("--limit", type=_positive_int, default=DEFAULT_SESSION_LIMIT,
                         metavar="N", help=f"how many (default {DEFAULT_SESSION_LIMIT})")

    devices = commands.add_parser("devices", help="assessed devices")
    devices_actions = devices.add_subparsers(dest="action", metavar="ACTION", required=True)
    command(devices_actions, "list", cmd_devices_list, "list the devices")

    results = commands.add_parser("results", help="per-IMV results")
    results_actions = results.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = command(results_actions, "show", cmd_results_show,
                   "show a session's decision and each IMV's result")
    show.add_argument("session_id", metavar="SESSION_ID", type=_positive_int)
    return parser


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
            print(json.dumps(output.data, indent=2, ensure_ascii=False), file=sys.stdout)
        else:
            print(output.text, file=sys.stdout)
        return 0
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
