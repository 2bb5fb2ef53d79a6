"""Sealed EAP secrets: the key file, SecretBox, the store and `nac-admin user add --eap`."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from nac.db.engine import make_engine, upgrade
from nac.db.secrets import SecretBox, SecretKeyError, load_or_create_key
from nac.db.store import PolicyDb, PolicyStore, StoreError
from tests.nacserver import repo_env


class SecretBoxTests(unittest.TestCase):
    def test_key_file_is_created_private_and_reused(self):
        path = Path(self.mktemp()) / "secret.key"
        key = load_or_create_key(path)
        self.assertEqual(len(key), 32)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(load_or_create_key(path), key)

    def test_missing_or_malformed_key_files_are_refused(self):
        path = Path(self.mktemp())
        with self.assertRaises(SecretKeyError):
            load_or_create_key(path, create=False)
        path.write_text("not base64 at all!\n")
        path.chmod(0o600)
        with self.assertRaisesRegex(SecretKeyError, "not a base64 32-byte key"):
            load_or_create_key(path)
        path.write_text(base64.b64encode(b"short").decode() + "\n")
        with self.assertRaisesRegex(SecretKeyError, "not a base64 32-byte key"):
            load_or_create_key(path)

    def test_a_key_file_others_may_use_is_refused(self):
        path = Path(self.mktemp())
        key = os.urandom(32)
        path.write_text(base64.b64encode(key).decode() + "\n")
        for mode in (0o640, 0o604, 0o620, 0o602, 0o660):
            path.chmod(mode)
            for strict in (True, False):
                with self.assertRaises(SecretKeyError) as caught:
                    load_or_create_key(path, strict_owner=strict)
                self.assertIn(f"(mode {mode:04o})", str(caught.exception))
                self.assertNotIn(base64.b64encode(key).decode(), str(caught.exception))
        for mode in (0o600, 0o400):
            path.chmod(mode)
            self.assertEqual(load_or_create_key(path), key)

    def test_a_key_file_of_another_user_is_refused_by_the_server(self):
        if os.geteuid() != 0:
            raise unittest.SkipTest("giving the file to another user needs root")
        import pwd
        try:
            nobody = pwd.getpwnam("nobody").pw_uid
        except KeyError:
            raise unittest.SkipTest("there is no user nobody here")
        path = Path(self.mktemp())
        key = os.urandom(32)
        path.write_text(base64.b64encode(key).decode() + "\n")
        path.chmod(0o600)
        os.chown(path, nobody, -1)
        with self.assertRaisesRegex(SecretKeyError, "owned by nobody, not by root who runs nac"):
            load_or_create_key(path)
        # root's nac-admin reads the service user's key
        self.assertEqual(load_or_create_key(path, strict_owner=False), key)

    def test_seal_and_open(self):
        box = SecretBox(os.urandom(32))
        sealed = box.seal("carol", "K8FW9")
        self.assertNotIn("K8FW9", sealed)
        self.assertTrue(sealed.startswith("aes256gcm$"))
        self.assertEqual(box.open("carol", sealed), "K8FW9")
        # a fresh nonce each time
        self.assertNotEqual(box.seal("carol", "K8FW9"), sealed)

    def test_other_key_other_user_or_tampering_do_not_open(self):
        box = SecretBox(os.urandom(32))
        sealed = box.seal("carol", "K8FW9")
        for attempt in (lambda: SecretBox(os.urandom(32)).open("carol", sealed),
                        lambda: box.open("dave", sealed),
                        lambda: box.open("carol", sealed[:-4] + "AAAA"),
                        lambda: box.open("carol", "plain text"),
                        lambda: box.open("carol", "aes256gcm$!!$??")):
            with self.assertRaises(SecretKeyError) as caught:
                attempt()
            self.assertNotIn("K8FW9", str(caught.exception))
        self.assertNotIn("key", repr(box).replace("<key hidden>", ""))


class StoredEapSecretTests(unittest.TestCase):
    def setUp(self):
        url = f"sqlite:///{self.mktemp()}.db"
        upgrade(url)
        self.engine = make_engine(url)
        self.addCleanup(self.engine.dispose)
        self.box = SecretBox(os.urandom(32))
        self.db = PolicyDb(self.engine, secrets=self.box)

    def test_only_users_added_for_eap_have_a_secret(self):
        self.db.add_user("carol", "K8FW9", eap=True)
        self.db.add_user("dave", "sasl only")
        self.assertEqual(self.db.eap_secret("carol"), "K8FW9")
        self.assertIsNone(self.db.eap_secret("dave"))
        self.assertIsNone(self.db.eap_secret("nobody"))
        # the SASL check is unaffected
        self.assertTrue(self.db.check_password("carol", "K8FW9"))

    def test_the_database_holds_no_cleartext(self):
        self.db.add_user("carol", "K8FW9", eap=True)
        with self.engine.connect() as connection:
            row = connection.exec_driver_sql("SELECT * FROM users").one()
        self.assertNotIn("K8FW9", repr(tuple(row)))

    def test_disabled_users_and_a_wrong_key_give_none(self):
        self.db.add_user("carol", "K8FW9", eap=True)
        other = PolicyDb(self.engine, secrets=SecretBox(os.urandom(32)))
        self.assertIsNone(other.eap_secret("carol"))
        with self.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE users SET enabled = 0 WHERE name = 'carol'")
        self.assertIsNone(self.db.eap_secret("carol"))

    def test_without_a_key_eap_users_cannot_be_added(self):
        with self.assertRaises(StoreError):
            PolicyDb(self.engine).add_user("carol", "K8FW9", eap=True)

    @defer.inlineCallbacks
    def test_store_reads_the_secret_off_the_reactor(self):
        self.db.add_user("carol", "K8FW9", eap=True)
        store = PolicyStore(self.engine, secrets=self.box)
        store.start()
        self.addCleanup(store.stop)
        self.assertEqual((yield store.eap_secret("carol")), "K8FW9")


class AdminEapTests(unittest.TestCase):
    def test_nac_admin_seals_with_the_configured_key_file(self):
        work = Path(self.mktemp())
        work.mkdir()
        conf = work / "nac.conf"
        conf.write_text(f"[nac]\nstate_dir = {work / 'state'}\n")
        run = [sys.executable, "-m", "nac.admin", "--config", str(conf)]
        env = repo_env()
        subprocess.run(run + ["init"], env=env, check=True, capture_output=True)
        done = subprocess.run(run + ["user", "add", "carol", "--password", "K8FW9", "--eap"],
                              env=env, capture_output=True, text=True)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("also for EAP", done.stdout)
        key_file = work / "state" / "secret.key"
        self.assertEqual(stat.S_IMODE(key_file.stat().st_mode), 0o600)
        engine = make_engine(f"sqlite:///{work / 'state' / 'nac.db'}")
        self.addCleanup(engine.dispose)
        db = PolicyDb(engine, secrets=SecretBox(load_or_create_key(key_file, create=False)))
        self.assertEqual(db.eap_secret("carol"), "K8FW9")
