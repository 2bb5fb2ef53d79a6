"""nac-admin, run in-process on a temporary database (SQLite, and PostgreSQL:
see tests/postgres.py)."""

from __future__ import annotations

import getpass
import io
import json
import os
import sys
from pathlib import Path

from twisted.trial import unittest

from nac import admin
from nac.db import PolicyDb, head_revision, make_engine
from nac.ifimv import ActionRecommendation as A
from nac.ifimv import EvaluationResult as E
from nac.tnccs.assessment import Decision
from nac.tnccs.imv_manager import Remediation
from nac.tnccs.recommendations import ImvVerdict
from tests.test_db import PostgresBackend, SqliteBackend, peer

PASSWORD = "Tr0ub4dor&3-unique-marker"
NOT_INITIALISED = "run `nac-admin init`"


class AdminMixin:
    def setUp(self):
        super().setUp()
        self.url = self.database_url()

    def nac_admin(self, *argv: str, stdin: str = "", db: bool = True):
        """Run nac-admin; (exit status, stdout, stderr).  The password must never show."""
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        self.patch(sys, "stdin", io.StringIO(stdin))
        args = (["--db", self.url] if db else []) + list(argv)
        status = admin.main(args)
        self.assertNotIn(PASSWORD, out.getvalue() + err.getvalue())
        if status:
            self.assertEqual(out.getvalue(), "")
            self.assertEqual(len(err.getvalue().splitlines()), 1, err.getvalue())
            self.assertTrue(err.getvalue().startswith("nac-admin: error: "), err.getvalue())
        return status, out.getvalue(), err.getvalue()

    def ok(self, *argv: str, **kwargs) -> str:
        status, out, err = self.nac_admin(*argv, **kwargs)
        self.assertEqual((status, err), (0, ""))
        return out

    def fails(self, *argv: str, **kwargs) -> str:
        status, out, err = self.nac_admin(*argv, **kwargs)
        self.assertEqual(status, 1)
        return err

    def db(self) -> PolicyDb:
        engine = make_engine(self.url)
        self.addCleanup(engine.dispose)
        return PolicyDb(engine)

    def init(self) -> None:
        self.ok("init")


class AdminTestsMixin(AdminMixin):
    # -- init ---------------------------------------------------------------------------

    def test_init_creates_the_schema_and_prints_the_revision(self):
        out = self.ok("init")
        self.assertIn(f"schema created at revision {head_revision()}", out)
        self.assertIn(f"already at revision {head_revision()}", self.ok("init"))
        self.assertEqual(self.db().check_schema(), head_revision())

    def test_init_json(self):
        data = json.loads(self.ok("--json", "init"))
        self.assertEqual((data["revision"], data["previous"]), (head_revision(), None))

    def test_commands_on_an_uninitialised_database_ask_for_init(self):
        for argv in (["user", "add", "alice", "--password", PASSWORD], ["user", "del", "alice"],
                     ["user", "list"], ["sessions", "list"], ["devices", "list"],
                     ["results", "show", "1"]):
            self.assertIn(NOT_INITIALISED, self.fails(*argv))

    # -- users --------------------------------------------------------------------------

    def test_user_add_list_del(self):
        self.init()
        self.assertEqual(self.ok("user", "add", "alice", "--password", PASSWORD),
                         "user 'alice' added\n")
        self.ok("user", "add", "bob", "--password", "other")
        listing = self.ok("user", "list")
        self.assertEqual([line.split()[0] for line in listing.splitlines()],
                         ["NAME", "alice", "bob"])
        self.assertTrue(self.db().check_password("alice", PASSWORD))
        self.assertEqual(self.ok("user", "del", "alice"), "user 'alice' deleted\n")
        self.assertEqual([u.name for u in self.db().list_users()], ["bob"])

    def test_user_list_json(self):
        self.init()
        self.assertEqual(json.loads(self.ok("user", "list", "--json")), [])
        self.ok("user", "add", "alice", "--password", PASSWORD)
        [user] = json.loads(self.ok("--json", "user", "list"))
        self.assertEqual((user["name"], user["enabled"]), ("alice", True))
        self.assertNotIn("password", json.dumps(user))
        self.assertNotIn("scrypt", json.dumps(user))

    def test_duplicate_user_is_refused(self):
        self.init()
        self.ok("user", "add", "alice", "--password", PASSWORD)
        self.assertIn("user 'alice' already exists",
                      self.fails("user", "add", "alice", "--password", PASSWORD))
        self.assertTrue(self.db().check_password("alice", PASSWORD))

    def test_deleting_an_unknown_user_fails(self):
        self.init()
        self.assertIn("no user 'carol'", self.fails("user", "del", "carol"))

    def test_password_from_stdin(self):
        self.init()
        self.ok("user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        self.assertTrue(self.db().check_password("alice", PASSWORD))
        self.assertIn("no password", self.fails("user", "add", "bob", "--password-stdin"))
        self.assertIn("must not be empty", self.fails("user", "add", "bob", "--password-stdin",
                                                      stdin="\n"))

    def test_password_prompt(self):
        self.init()
        answers = iter([PASSWORD, PASSWORD, PASSWORD, "typo"])
        self.patch(getpass, "getpass", lambda prompt="": next(answers))
        self.ok("user", "add", "alice")
        self.assertTrue(self.db().check_password("alice", PASSWORD))
        self.assertIn("do not match", self.fails("user", "add", "bob"))
        self.assertEqual([u.name for u in self.db().list_users()], ["alice"])

    def test_password_options_are_exclusive(self):
        self.init()
        self.fails("user", "add", "alice", "--password", PASSWORD, "--password-stdin",
                   stdin=PASSWORD + "\n")
        self.assertEqual(self.db().list_users(), [])

    # -- sessions, devices, results -----------------------------------------------------

    def record_session(self) -> int:
        db = self.db()
        sid = db.session_started(peer(), 4)
        db.device_seen(sid, "a488651e36664792b306cf8be72dd630", "Debian 12 x86_64")
        db.session_decided(sid, Decision(
            A.ISOLATE, E.NONCOMPLIANT_MINOR, "isolate",
            reasons=(("openssl is outdated", "en"),),
            remediation=(Remediation(1, "apt upgrade openssl", "en", None),),
            imv_results=(ImvVerdict(1, "os", True, A.ISOLATE, E.NONCOMPLIANT_MINOR,
                                    "openssl is outdated", "en"),
                         ImvVerdict(2, "scanner", False, forced=True))))
        return sid

    def test_sessions_list(self):
        self.init()
        self.assertEqual(self.ok("sessions", "list"), "no sessions\n")
        sid = self.record_session()
        self.db().session_started(peer(identity="bob", transport="radius"), 5)
        lines = self.ok("sessions", "list").splitlines()
        self.assertEqual(len(lines), 3)
        self.assertIn("bob", lines[1])
        self.assertIn("isolate", lines[2])
        self.assertIn("a488651e36664792b306cf8be72dd630", lines[2])
        [only] = json.loads(self.ok("--json", "sessions", "list", "--limit", "1"))
        self.assertEqual(only["identity"], "bob")
        listed = json.loads(self.ok("--json", "sessions", "list"))
        self.assertEqual(listed[1]["id"], sid)
        decided = listed[1]
        self.assertEqual((decided["recommendation"], decided["evaluation"], decided["access"]),
                         ("isolate", "non-compliant minor", "isolate"))
        self.assertIn("positive", self.fails("sessions", "list", "--limit", "0"))

    def test_devices_list(self):
        self.init()
        self.assertEqual(self.ok("devices", "list"), "no devices\n")
        self.record_session()
        self.assertIn("Debian 12 x86_64", self.ok("devices", "list"))
        [device] = json.loads(self.ok("devices", "list", "--json"))
        self.assertEqual((device["device_id"], device["product"], device["trusted"]),
                         ("a488651e36664792b306cf8be72dd630", "Debian 12 x86_64", False))

    def test_results_show(self):
        self.init()
        sid = self.record_session()
        out = self.ok("results", "show", str(sid))
        self.assertIn("reason: openssl is outdated", out)
        self.assertIn("apt upgrade openssl", out)
        self.assertIn("scanner", out)
        data = json.loads(self.ok("--json", "results", "show", str(sid)))
        self.assertEqual(data["session"]["id"], sid)
        self.assertEqual(
            [(r["imv_name"], r["recommendation"], r["forced"]) for r in data["results"]],
            [("os", "isolate", False), ("scanner", "no recommendation", True)])
        self.assertIn(f"no session {sid + 1}", self.fails("results", "show", str(sid + 1)))


class SqliteAdminTests(SqliteBackend, AdminTestsMixin, unittest.TestCase):
    def test_uninitialised_database_file_is_not_created(self):
        path = self.url.removeprefix("sqlite:///")
        self.fails("user", "list")
        self.assertFalse(os.path.exists(path))

    def test_database_without_nac_schema_asks_for_init(self):
        path = Path(self.url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True)
        path.touch()
        self.assertIn(NOT_INITIALISED, self.fails("sessions", "list"))

    def test_database_from_the_configuration_file(self):
        config = Path(self.mktemp())
        config.write_text(f"[nac]\ndb = {self.url}\n", encoding="utf-8")
        self.ok("--config", str(config), "init", db=False)
        self.ok("user", "add", "alice", "--password", PASSWORD, "-c", str(config), db=False)
        self.assertTrue(self.db().check_password("alice", PASSWORD))

    def test_configuration_errors_are_one_line(self):
        config = Path(self.mktemp())
        config.write_text("[nac]\ndb = not-a-url\nbogus = 1\n", encoding="utf-8")
        err = self.fails("--config", str(config), "init", db=False)
        self.assertIn("[nac] db", err)
        self.assertIn("[nac] bogus", err)
        self.assertIn("cannot read", self.fails("-c", str(config) + ".missing", "init", db=False))

    def test_db_option_overrides_the_configuration(self):
        config = Path(self.mktemp())
        config.write_text("[nac]\ndb = sqlite:////nonexistent/dir/nac.db\n", encoding="utf-8")
        self.ok("-c", str(config), "init")

    def test_unusable_database_url(self):
        self.assertIn("not a database URL", self.fails("--db", "not a url", "init", db=False))
        self.assertIn("not a database URL", self.fails("--db", "nosuchdb://x/y", "init", db=False))
        err = self.fails("--db", "not a url:pw", "user", "list", db=False)
        self.assertIn("not a database URL", err)
        self.assertNotIn("pw", err)

    def test_usage_errors_are_one_line(self):
        self.assertIn("COMMAND", self.fails())
        self.assertIn("ACTION", self.fails("user"))
        self.assertIn("NAME", self.fails("user", "add", "--password", PASSWORD))
        self.assertIn("invalid choice", self.fails("frobnicate"))

    def test_help_exits_zero(self):
        status, out, _err = self.nac_admin("--help")
        self.assertEqual(status, 0)
        self.assertIn("usage: nac-admin", out)


class PostgresAdminTests(PostgresBackend, AdminTestsMixin, unittest.TestCase):
    pass
