"""nac-admin packages and group commands, run in-process on a temporary
database (SQLite and PostgreSQL, see tests/postgres.py), and
the round trip into the OS IMV: what the admin imports and blacklists is
what the IMV judges an endpoint by."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.trial import unittest

from imvs.os import OsImv
from nac.admin import AdminError, read_package_list
from nac.db.store import PolicyStore
from nac.ifimv import ActionRecommendation as A
from nac.ifimv import EvaluationResult as E
from tests.test_admin import AdminMixin
from tests.test_collectors import Host, dpkg_paragraph
from tests.test_db import PostgresBackend, SqliteBackend, peer
from tests.posture import MACHINE_ID, ImvHarness, tmpdir
from tests.test_imv_os import PRODUCT, remediation_items

LISTING = """\
adduser\t3.134
bash\t5.2.15-2+b8
curl\t7.88.1-10+deb12u14
libc6:amd64\t2.36-9+deb12u9
libc6:i386\t2.36-9+deb12u9
not-installed\t
"""

PACKAGES_FILE = """\
Package: curl
Version: 7.88.1-10+deb12u15
Architecture: amd64
Maintainer: Alessandro Ghedini <ghedo@debian.org>
Description: command line tool for transferring data with URL syntax
 curl is a command line tool for transferring data with URL syntax.
 .
 Package: not-a-field

Package: libcurl4
Version: 7.88.1-10+deb12u15
Architecture: amd64

Package: curl
Version: 7.88.1-10+deb12u16
Architecture: amd64
"""


class PackagesTestsMixin(AdminMixin, ImvHarness):
    def setUp(self):
        super().setUp()
        self.init()

    def write(self, text: str | bytes, name: str = "list") -> str:
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, str):
            text = text.encode()
        path.write_bytes(text)
        return str(path)

    def releases(self, *args: str) -> dict[tuple[str, str], tuple[bool, bool]]:
        rows = json.loads(self.ok("--json", "packages", "list", *args))
        return {(r["package"], r["release"]): (r["security"], r["blacklisted"]) for r in rows}

    # -- import ----------------------------------------------------------------------------

    def test_import_a_dpkg_query_listing(self):
        out = self.ok("packages", "import", "--product", PRODUCT, self.write(LISTING))
        self.assertEqual(out, f"'{PRODUCT}': 4 releases read; 4 new package(s), 4 new release(s), "
                              "0 marked as security release(s), 0 already known\n")
        self.assertEqual(self.releases("--product", PRODUCT), {
            ("adduser", "3.134"): (False, False), ("bash", "5.2.15-2+b8"): (False, False),
            ("curl", "7.88.1-10+deb12u14"): (False, False), ("libc6", "2.36-9+deb12u9"): (False, False)})
        # again, now from the security archive: nothing new, all marked
        data = json.loads(self.ok("--json", "packages", "import", "--security", "--product", PRODUCT,
                                  self.write(LISTING)))
        self.assertEqual((data["versions_added"], data["versions_marked"], data["unchanged"]), (0, 4, 0))
        self.assertTrue(all(security for security, _ in self.releases().values()))
        again = json.loads(self.ok("--json", "packages", "import", "--security", "--product", PRODUCT,
                                   self.write(LISTING)))
        self.assertEqual(again["unchanged"], 4)

    def test_import_a_packages_file_plain_and_compressed(self):
        for compress in (lambda b: b, gzip.compress, lzma.compress, bz2.compress):
            self.ok("packages", "import", "--security", "--product", "Debian 12 x86_64",
                    self.write(compress(PACKAGES_FILE.encode())))
        self.assertEqual(self.releases(), {
            ("curl", "7.88.1-10+deb12u15"): (True, False), ("curl", "7.88.1-10+deb12u16"): (True, False),
            ("libcurl4", "7.88.1-10+deb12u15"): (True, False)})
        self.assertEqual(list(self.releases("--name", "libcurl4")), [("libcurl4", "7.88.1-10+deb12u15")])
        self.assertEqual(len(self.releases("--limit", "1")), 1)

    def test_a_dpkg_status_file_imports_only_installed_packages(self):
        status = "\n".join([dpkg_paragraph("bash", "5.2.15-2+b8"),
                            dpkg_paragraph("nano", "7.2-1", status="deinstall ok config-files")])
        self.ok("packages", "import", "--product", PRODUCT, self.write(status))
        self.assertEqual(list(self.releases()), [("bash", "5.2.15-2+b8")])

    def test_import_from_standard_input(self):
        self.ok("packages", "import", "--product", PRODUCT, "-", stdin="vim\t2:9.0.1378-2\n")
        self.assertEqual(list(self.releases()), [("vim", "2:9.0.1378-2")])

    def test_malformed_input_writes_nothing(self):
        bad = "bash\t5.2.15-2+b8\ncurl 7.88.1 extra\n"
        self.assertIn(":2: expected 'NAME<TAB>VERSION'",
                      self.fails("packages", "import", "--product", PRODUCT, self.write(bad)))
        self.assertIn("'Bash!' is not a Debian package name",
                      self.fails("packages", "import", "--product", PRODUCT,
                                 self.write("bash\t1.0\nBash!\t1.0\n")))
        self.assertIn("is not a Debian version",
                      self.fails("packages", "import", "--product", PRODUCT, self.write("bash\t1.0;rm\n")))
        self.assertIn(":4: package 'curl' has no Version field",
                      self.fails("packages", "import", "--product", PRODUCT,
                                 self.write("Package: bash\nVersion: 1\n\nPackage: curl\nArchitecture: all\n")))
        self.assertIn("not a valid gzip file",
                      self.fails("packages", "import", "--product", PRODUCT, self.write(b"\x1f\x8bgarbage")))
        self.assertIn(":2: not UTF-8", self.fails("packages", "import", "--product", PRODUCT,
                                                  self.write(b"bash\t1.0\nvim\t\xff\n")))
        # nothing half-written: no package, no release, not even the product
        self.assertEqual(self.releases(), {})
        self.assertIn(f"no product '{PRODUCT}'", self.fails("packages", "list", "--product", PRODUCT))

    def test_import_errors(self):
        self.assertIn("cannot read", self.fails("packages", "import", "--product", PRODUCT, "/nonexistent/list"))
        self.assertIn("no packages found", self.fails("packages", "import", "--product", PRODUCT, self.write("")))
        self.assertIn("--product", self.fails("packages", "import", self.write(LISTING)))
        self.assertIn("product must not be empty",
                      self.fails("packages", "import", "--product", "", self.write(LISTING)))

    # -- blacklist ---------------------------------------------------------------------------

    def test_blacklist_every_release_or_one_and_lift_it(self):
        self.ok("packages", "import", "--product", PRODUCT, self.write(LISTING))
        self.assertEqual(self.ok("packages", "blacklist", "telnetd", "--product", PRODUCT),
                         f"package 'telnetd' (every release) blacklisted on '{PRODUCT}'\n")
        self.ok("packages", "blacklist", "curl", "7.88.1-10+deb12u14", "--product", PRODUCT)
        self.assertEqual(self.releases("--blacklisted"), {("curl", "7.88.1-10+deb12u14"): (False, True),
                                                          ("telnetd", "*"): (False, True)})
        table = self.ok("packages", "list", "--blacklisted").splitlines()
        self.assertEqual(table[0].split()[:5], ["PRODUCT", "PACKAGE", "RELEASE", "SECURITY", "BLACKLISTED"])
        self.assertIn("telnetd", table[-1])
        # idempotent; lifted again
        self.ok("packages", "blacklist", "telnetd", "--product", PRODUCT)
        self.ok("packages", "blacklist", "telnetd", "--product", PRODUCT, "--remove")
        self.ok("packages", "blacklist", "curl", "7.88.1-10+deb12u14", "--product", PRODUCT, "--remove")
        self.assertEqual(self.releases("--blacklisted"), {})
        # the imported release stays, the '*' entry is gone
        self.assertIn(("curl", "7.88.1-10+deb12u14"), self.releases())
        self.assertNotIn(("telnetd", "*"), self.releases())
        self.assertIn("is not blacklisted",
                      self.fails("packages", "blacklist", "curl", "--product", PRODUCT, "--remove"))

    def test_blacklist_needs_a_known_product(self):
        self.assertIn("no product 'Debian 11'", self.fails("packages", "blacklist", "bash", "--product", "Debian 11"))
        self.ok("packages", "import", "--product", PRODUCT, self.write(LISTING))
        err = self.fails("packages", "blacklist", "bash", "--product", "Debian 11")
        self.assertIn(f"known products: '{PRODUCT}'", err)

    @defer.inlineCallbacks
    def test_round_trip_into_the_os_imv(self):
        """Import the host's listing and blacklist one package with nac-admin;
        the OS IMV then judges the same host by it."""
        packages = [("bash", "5.2.15-2+b8"), ("curl", "7.88.1-10+deb12u14"), ("telnetd", "0.17-44")]
        self.ok("packages", "import", "--product", PRODUCT,
                self.write("".join(f"{n}\t{v}\n" for n, v in packages)))
        self.store = PolicyStore(self.db().engine)
        self.store.start()
        self.addCleanup(self.store.stop)
        host = Host(tmpdir(self), packages)

        result = yield self.assess([host.os_imc()], [OsImv()])
        verdict = result.verdict("os")
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.ALLOW, E.COMPLIANT))

        self.ok("packages", "blacklist", "telnetd", "--product", PRODUCT)
        result = yield self.assess([host.os_imc()], [OsImv()])
        verdict = result.verdict("os")
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_ACCESS, E.NONCOMPLIANT_MAJOR))
        self.assertEqual(remediation_items(result.outcome.remediation[0].text),
                         {"Blacklisted Software Packages": ["telnetd"]})

        self.ok("packages", "import", "--security", "--product", PRODUCT,
                self.write("curl\t7.88.1-10+deb12u15\n"))
        self.ok("packages", "blacklist", "telnetd", "--product", PRODUCT, "--remove")
        result = yield self.assess([host.os_imc()], [OsImv()])
        self.assertEqual(result.verdict("os").evaluation, E.NONCOMPLIANT_MINOR)
        self.assertEqual(remediation_items(result.outcome.remediation[0].text),
                         {"Software Security Updates": ["curl"]})
        # and the device shows up with its product
        [device] = json.loads(self.ok("--json", "devices", "list"))
        self.assertEqual((device["device_id"], device["product"]), (MACHINE_ID, PRODUCT))

    # -- groups ------------------------------------------------------------------------------

    def test_groups_and_members(self):
        db = self.db()
        sid = db.session_started(peer(), 1)
        db.device_seen(sid, MACHINE_ID, PRODUCT)

        # the built-in default group (migration 0009) is there from the start
        self.assertEqual(self.ok("group", "list").split()[-4:], ["default", "-", "0", "0"])
        self.assertEqual(self.ok("group", "add", "staff"), "group 'staff' added\n")
        self.assertEqual(self.ok("group", "add", "admins", "--parent", "staff"),
                         "group 'admins' added under 'staff'\n")
        self.assertIn("group 'staff' already exists", self.fails("group", "add", "staff"))
        self.assertIn("no group 'nobody'", self.fails("group", "add", "x", "--parent", "nobody"))

        self.ok("group", "member", "add", "admins", "--identity", "carol")
        self.ok("group", "member", "add", "admins", "--device", MACHINE_ID)
        self.assertIn("already in group", self.fails("group", "member", "add", "admins", "--identity", "carol"))
        self.assertIn("no device 'unknown-device'",
                      self.fails("group", "member", "add", "admins", "--device", "unknown-device"))
        self.assertIn("no group 'nobody'", self.fails("group", "member", "add", "nobody", "--identity", "carol"))
        # exactly one of --device / --identity
        self.fails("group", "member", "add", "admins", "--device", MACHINE_ID, "--identity", "carol")
        self.fails("group", "member", "add", "admins")

        self.assertEqual(json.loads(self.ok("--json", "group", "list")), [
            {"name": "admins", "parent": "staff", "devices": 1, "identities": 1},
            {"name": "default", "parent": None, "devices": 0, "identities": 0},
            {"name": "staff", "parent": None, "devices": 0, "identities": 0}])
        self.assertEqual(json.loads(self.ok("group", "member", "list", "admins", "--json")), [
            {"group": "admins", "kind": "device", "member": MACHINE_ID},
            {"group": "admins", "kind": "identity", "member": "carol"}])
        members = self.ok("group", "member", "list", "admins").splitlines()
        self.assertEqual([line.split()[0] for line in members], ["KIND", "device", "identity"])

        self.assertEqual(self.ok("group", "member", "del", "admins", "--identity", "carol"),
                         "identity 'carol' removed from group 'admins'\n")
        self.assertIn("is not in group", self.fails("group", "member", "del", "admins", "--identity", "carol"))
        # deleting the parent keeps the child, without parent
        self.ok("group", "del", "staff")
        self.assertEqual(json.loads(self.ok("--json", "group", "list")),
                         [{"name": "admins", "parent": None, "devices": 1, "identities": 0},
                          {"name": "default", "parent": None, "devices": 0, "identities": 0}])
        self.ok("group", "del", "admins")
        self.assertIn("no group 'admins'", self.fails("group", "del", "admins"))

    def test_group_names_are_checked(self):
        self.assertIn("longer than 50", self.fails("group", "add", "g" * 51))
        self.assertIn("control characters", self.fails("group", "add", "a\tb"))


class UninitialisedTests(SqliteBackend, AdminMixin, unittest.TestCase):
    def test_new_commands_on_an_uninitialised_database_ask_for_init(self):
        for argv in (["packages", "list"], ["packages", "blacklist", "bash", "--product", PRODUCT],
                     ["group", "list"], ["group", "add", "staff"],
                     ["group", "member", "list", "staff"]):
            self.assertIn("run `nac-admin init`", self.fails(*argv))


class ReadPackageListTests(unittest.TestCase):
    def test_formats(self):
        self.assertEqual(read_package_list(LISTING.encode()),
                         [("adduser", "3.134"), ("bash", "5.2.15-2+b8"), ("curl", "7.88.1-10+deb12u14"),
                          ("libc6", "2.36-9+deb12u9"), ("libc6", "2.36-9+deb12u9")])
        self.assertEqual(read_package_list(PACKAGES_FILE.encode()),
                         [("curl", "7.88.1-10+deb12u15"), ("libcurl4", "7.88.1-10+deb12u15"),
                          ("curl", "7.88.1-10+deb12u16")])
        self.assertEqual(read_package_list(b"# comment\n\nbash 5.2\n"), [("bash", "5.2")])

    def test_errors_name_the_line(self):
        with self.assertRaises(AdminError) as caught:
            read_package_list(b"bash\t1\n\nnot a line at all\n", "f")
        self.assertIn("f:3:", str(caught.exception))
        with self.assertRaises(AdminError) as caught:
            read_package_list(b"Package: bash\nVersion: 1\nno colon here\n", "f")
        self.assertIn("f:3: expected 'Field: value'", str(caught.exception))


class ReadPackageListFuzzTests(unittest.TestCase):
    @given(st.binary(max_size=300) | st.text(alphabet="Packge:Vrsion \t\n.-+~:abc0129\x1f\x8b", max_size=300)
           .map(str.encode))
    @settings(max_examples=300, deadline=None)
    def test_never_crashes(self, data):
        try:
            entries = read_package_list(data)
        except AdminError:
            return
        for name, version in entries:
            self.assertTrue(name and version and len(name) <= 255 and len(version) <= 255)


class SqlitePackagesTests(SqliteBackend, PackagesTestsMixin, unittest.TestCase):
    pass


class PostgresPackagesTests(PostgresBackend, PackagesTestsMixin, unittest.TestCase):
    pass
