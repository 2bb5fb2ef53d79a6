"""nac-admin user passwd / disable / enable / list, in-process on a
temporary database (what a running server makes of them:
tests/test_users_e2e.py)."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

from twisted.trial import unittest

from nac.db import PolicyDb, make_engine
from nac.db.secrets import SecretBox, load_or_create_key
from tests.test_admin import PASSWORD, AdminMixin
from tests.test_db import PostgresBackend, SqliteBackend

NEW_PASSWORD = "n3w-unique-password-marker"


class UserCommandsMixin(AdminMixin):
    def setUp(self):
        super().setUp()
        # the secret key file nac-admin (and the server) use, via a configuration file
        base = Path(self.mktemp())
        base.mkdir(parents=True)
        self.key_file = base / "secret.key"
        self.config = base / "nac.conf"
        self.config.write_text(f"[nac]\nstate_dir = {base}\nsecret_key_file = {self.key_file}\n")
        self.ok("init")

    def admin(self, *argv: str, **kwargs) -> str:
        return self.ok("-c", str(self.config), *argv, **kwargs)

    def db_with_key(self) -> PolicyDb:
        engine = make_engine(self.url)
        self.addCleanup(engine.dispose)
        return PolicyDb(engine, secrets=SecretBox(load_or_create_key(self.key_file, create=False)))

    def test_passwd_replaces_the_password_and_the_eap_secret(self):
        self.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
        self.assertEqual(self.db_with_key().eap_secret("carol"), PASSWORD)
        out = self.admin("user", "passwd", "carol", "--password", NEW_PASSWORD)
        self.assertEqual(out, "password of user 'carol' (and its EAP secret) changed\n")
        db = self.db_with_key()
        self.assertFalse(db.check_password("carol", PASSWORD))
        self.assertTrue(db.check_password("carol", NEW_PASSWORD))
        self.assertEqual(db.eap_secret("carol"), NEW_PASSWORD)

    def test_passwd_of_a_user_without_eap_secret_leaves_it_without(self):
        self.admin("user", "add", "dave", "--password", PASSWORD)
        self.assertEqual(self.admin("user", "passwd", "dave", "--password-stdin", stdin=NEW_PASSWORD + "\n"),
                         "password of user 'dave' changed\n")
        db = self.db()
        self.assertTrue(db.check_password("dave", NEW_PASSWORD))
        self.assertIsNone(db.eap_secret("dave"))
        # no key was needed, so none was made
        self.assertFalse(self.key_file.exists())

    def test_passwd_from_a_file_and_from_the_prompt(self):
        self.ok("user", "add", "dave", "--password", PASSWORD)
        path = Path(self.mktemp())
        path.write_text(NEW_PASSWORD + "\nsecond line is ignored\n")
        self.ok("user", "passwd", "dave", "--password-file", str(path))
        self.assertTrue(self.db().check_password("dave", NEW_PASSWORD))
        answers = iter([PASSWORD, PASSWORD, PASSWORD, "typo"])
        prompts = []
        self.patch(getpass, "getpass", lambda prompt="": prompts.append(prompt) or next(answers))
        self.ok("user", "passwd", "dave")
        self.assertEqual(prompts, ["Password for dave: ", "Repeat the password: "])
        self.assertTrue(self.db().check_password("dave", PASSWORD))
        self.assertIn("do not match", self.fails("user", "passwd", "dave"))
        self.assertTrue(self.db().check_password("dave", PASSWORD))
        self.assertIn(f"cannot read {path}.missing: No such file or directory",
                      self.fails("user", "passwd", "dave", "--password-file", f"{path}.missing"))
        self.assertIn("must not be empty", self.fails("user", "passwd", "dave", "--password-stdin", stdin="\n"))
        self.fails("user", "passwd", "dave", "--password", "x", "--password-stdin", stdin="y\n")
        self.assertTrue(self.db().check_password("dave", PASSWORD))

    def test_unknown_user_is_named_before_any_prompt(self):
        self.patch(getpass, "getpass", lambda prompt="": self.fail("asked for a password"))
        for action in ("passwd", "disable", "enable"):
            self.assertEqual(self.fails("user", action, "mallory"), "nac-admin: error: no user 'mallory'\n")

    def test_disable_and_enable(self):
        self.ok("user", "add", "carol", "--password", PASSWORD)
        self.assertEqual(self.ok("user", "disable", "carol"), "user 'carol' disabled: its logins are refused\n")
        self.assertFalse(self.db().check_password("carol", PASSWORD))
        [carol] = json.loads(self.ok("user", "list", "--json"))
        self.assertEqual((carol["name"], carol["enabled"], carol["eap"]), ("carol", False, False))
        self.assertEqual(json.loads(self.ok("user", "disable", "carol", "--json"))["enabled"], False)
        self.assertEqual(self.ok("user", "enable", "carol"), "user 'carol' enabled\n")
        self.assertTrue(self.db().check_password("carol", PASSWORD))

    def test_user_list_shows_state_and_eap(self):
        self.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
        self.ok("user", "add", "dave", "--password", PASSWORD)
        self.ok("user", "disable", "dave")
        lines = self.ok("user", "list").splitlines()
        self.assertEqual(lines[0].split()[:4], ["NAME", "STATE", "EAP", "CREATED"])
        self.assertEqual([line.split()[:3] for line in lines[1:]],
                         [["carol", "enabled", "yes"], ["dave", "disabled", "no"]])


class SqliteUserCommandsTests(SqliteBackend, UserCommandsMixin, unittest.TestCase):
    def test_the_key_file_is_created_private(self):
        self.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
        self.assertEqual(os.stat(self.key_file).st_mode & 0o777, 0o600)


class PostgresUserCommandsTests(PostgresBackend, UserCommandsMixin, unittest.TestCase):
    pass
