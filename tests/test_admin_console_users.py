"""nac-admin console-user: the web console's people, in-process on a
temporary database (what the console makes of them: test_console_web.py)."""

from __future__ import annotations

import json

from twisted.trial import unittest

from nac.db import manage
from nac.db.store import check_against
from tests.test_admin import PASSWORD, AdminMixin
from tests.test_db import SqliteBackend


class ConsoleUserCommandTests(AdminMixin, SqliteBackend, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.init()

    def login_row(self, name: str):
        return self.db().read(manage.console_login_row, name)

    def password_matches(self, name: str, password: str) -> bool:
        row = self.login_row(name)
        return check_against(None, name, password, None if row is None else row[:2])

    def test_add_keeps_a_scrypt_hash_and_the_role(self):
        self.assertEqual(self.ok("console-user", "add", "ada", "--role", "admin", "--password", PASSWORD),
                         "console user 'ada' (admin) added\n")
        stored, enabled, role = self.login_row("ada")
        self.assertTrue(stored.startswith("scrypt$"))
        self.assertNotIn(PASSWORD, stored)
        self.assertEqual((enabled, role), (True, "admin"))
        self.assertTrue(self.password_matches("ada", PASSWORD))
        self.assertFalse(self.password_matches("ada", "other"))
        # read is the default role; the name is unique
        self.ok("console-user", "add", "rex", "--password-stdin", stdin="rex-pw\n")
        self.assertEqual(self.login_row("rex")[2], "read")
        self.assertIn("already exists", self.fails("console-user", "add", "rex", "--password", "x"))

    def test_role_passwd_disable_enable_del_and_list(self):
        self.ok("console-user", "add", "ada", "--password", PASSWORD)
        self.ok("console-user", "role", "ada", "admin")
        self.ok("console-user", "passwd", "ada", "--password", "changed-pw")
        self.assertFalse(self.password_matches("ada", PASSWORD))
        self.assertTrue(self.password_matches("ada", "changed-pw"))
        self.ok("console-user", "disable", "ada")
        self.assertFalse(self.password_matches("ada", "changed-pw"))
        listed = json.loads(self.ok("--json", "console-user", "list"))
        self.assertEqual([(u["name"], u["role"], u["enabled"]) for u in listed], [("ada", "admin", False)])
        self.ok("console-user", "enable", "ada")
        self.assertTrue(self.password_matches("ada", "changed-pw"))
        self.assertIn("ada", self.ok("console-user", "list"))
        self.ok("console-user", "del", "ada")
        self.assertIsNone(self.login_row("ada"))
        self.assertEqual(self.ok("console-user", "list"), "no console users\n")

    def test_unknown_users_and_bad_values_are_one_line_errors(self):
        self.assertIn("no console user 'nobody'", self.fails("console-user", "passwd", "nobody", "--password", "x"))
        self.assertIn("no console user 'nobody'", self.fails("console-user", "del", "nobody"))
        self.assertIn("must not contain control characters",
                      self.fails("console-user", "add", "a\x1bb", "--password", "x"))
        self.assertIn("the password must not be empty", self.fails("console-user", "add", "e", "--password", ""))
