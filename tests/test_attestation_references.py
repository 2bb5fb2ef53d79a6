"""The attestation IMV's reference cache (nac.db.attestation.ReferenceCache)
against a real database: the reference generation moves on with every
change to files, reference digests and products (triggers, on SQLite and
PostgreSQL); a second lookup is served from memory; a changed or removed
reference counts at the next lookup; the memory bound (least recently used
products forgotten, what does not fit judged all the same); and the
judgement with the kept template hashes (nac.pts.evidence.ImaReferences)
gives what IMA's templates, built here with hashlib and struct alone, say.
Also: the IMV sees a changed reference at its next attestation."""

from __future__ import annotations

import hashlib
import struct

import sqlalchemy as sa
from twisted.internet import defer
from twisted.trial import unittest

from imvs.attestation import AttestationImv
from nac.db import attestation as attest_db
from nac.db import models as m
from nac.db.store import PolicyDb
from nac.ifimv import ActionRecommendation as A
from nac.pa.tcg_pts import ComponentValidation, PcrTransform, SimpleComponentEvidence
from nac.pts.evidence import IMA_COMPONENT, FileStatus, ImaReferences, check_evidence
from nac.pts.hashes import SHA1, SHA256, SHA384
from tests.attested_host import AttestedHost
from tests.posture import ImvHarness, PolicyStoreMixin
from tests.test_db import DatabaseMixin, PostgresBackend, SqliteBackend

PRODUCT = "Debian 12 x86_64"
TIME = "2026-12-07T12:04:47Z"


def ima_ng(bank: str, algorithm: str, digest: bytes, name: str) -> bytes:
    """An ``ima-ng`` entry's template hash, from the kernel's layout: the
    ``d-ng`` and ``n-ng`` fields, each with a little-endian 32-bit length."""
    d_ng = algorithm.encode() + b":\0" + digest
    n_ng = name.encode() + b"\0"
    data = struct.pack("<I", len(d_ng)) + d_ng + struct.pack("<I", len(n_ng)) + n_ng
    return hashlib.new(bank, data).digest()


def ima_legacy(bank: str, digest: bytes, name: str) -> bytes:
    """The legacy ``ima`` template's hash: the SHA-1 digest and the name NUL-padded to 256 bytes."""
    return hashlib.new(bank, digest + name.encode().ljust(256, b"\0")).digest()


def entry(name: str, measurement: bytes, algorithm: str = "sha256") -> SimpleComponentEvidence:
    return SimpleComponentEvidence(IMA_COMPONENT, 10, measurement, SHA256.pts, PcrTransform.MATCH, TIME,
                                   validation=ComponentValidation.PASSED, policy_uri=f"{algorithm}:{name}")


def judge(lookup: attest_db.ReferenceLookup, entries) -> dict[str, FileStatus]:
    return check_evidence(entries, None, aik=None, secret=None, measurement_hash=SHA256, expected=lookup.ima).files


LS = hashlib.sha256(b"the real ls").digest()
BASH = hashlib.sha256(b"the shell").digest()
OTHER = hashlib.sha256(b"something else").digest()


class ImaReferencesTests(unittest.TestCase):
    def test_statuses_are_those_of_the_kernel_templates(self):
        legacy = hashlib.sha1(b"legacy").digest()
        refs = ImaReferences(SHA256)
        refs.add("/usr/bin/ls", {"sha256": {LS}})
        refs.add("/usr/bin/old", {"sha1": {legacy}})
        refs.add("/usr/bin/new", {})
        self.assertEqual(refs.status("/usr/bin/ls", "sha256", ima_ng("sha256", "sha256", LS, "/usr/bin/ls")),
                         FileStatus.OK)
        self.assertEqual(refs.status("/usr/bin/ls", "sha256", ima_ng("sha256", "sha256", OTHER, "/usr/bin/ls")),
                         FileStatus.DIFFERS)
        # SHA-1 digests: ima-ng and the legacy template both
        self.assertEqual(refs.status("/usr/bin/old", "sha1", ima_legacy("sha256", legacy, "/usr/bin/old")),
                         FileStatus.OK)
        self.assertEqual(refs.status("/usr/bin/old", "sha1", ima_ng("sha256", "sha1", legacy, "/usr/bin/old")),
                         FileStatus.OK)
        self.assertEqual(refs.status("/usr/bin/new", "sha256", ima_ng("sha256", "sha256", LS, "/usr/bin/new")),
                         FileStatus.UNKNOWN)
        # a known file's template hash under another name is not that name's
        self.assertEqual(refs.status("/usr/bin/new", "sha256", ima_ng("sha256", "sha256", LS, "/usr/bin/ls")),
                         FileStatus.UNKNOWN)
        self.assertEqual(refs.status("/usr/bin/old", "sha256", ima_ng("sha256", "sha256", LS, "/usr/bin/ls")),
                         FileStatus.UNKNOWN)
        self.assertEqual(len(refs), 3)

    def test_check_evidence_with_and_without_them_agree(self):
        references = {"/usr/bin/ls": {"sha256": {LS}}, "/usr/bin/bash": {"sha256": {BASH}}}
        entries = [entry("/usr/bin/ls", ima_ng("sha256", "sha256", LS, "/usr/bin/ls")),
                   entry("/usr/bin/bash", ima_ng("sha256", "sha256", OTHER, "/usr/bin/bash")),
                   entry("/usr/bin/tool", ima_ng("sha256", "sha256", OTHER, "/usr/bin/tool")),
                   entry("/usr/bin/ls", ima_ng("sha256", "sha256", LS, "/usr/bin/ls"))]
        refs = ImaReferences(SHA256)
        for name in ("/usr/bin/ls", "/usr/bin/bash", "/usr/bin/tool"):
            refs.add(name, references.get(name, {}))
        want = {"/usr/bin/ls": FileStatus.OK, "/usr/bin/bash": FileStatus.DIFFERS, "/usr/bin/tool": FileStatus.UNKNOWN}
        for kwargs in ({"references": references}, {"expected": refs}):
            report = check_evidence(entries, None, aik=None, secret=None, measurement_hash=SHA256, **kwargs)
            self.assertEqual(report.files, want, kwargs)
            self.assertEqual(report.ima_entries, 4)


    def test_a_file_the_kept_references_do_not_hold_is_unlisted(self):
        refs = ImaReferences(SHA256)
        refs.add("/usr/bin/ls", {"sha256": {LS}})
        refs.add("/usr/bin/new", {})
        entries = [entry("/usr/bin/ls", ima_ng("sha256", "sha256", LS, "/usr/bin/ls")),
                   entry("/usr/bin/new", ima_ng("sha256", "sha256", OTHER, "/usr/bin/new")),
                   entry("/usr/bin/tool", ima_ng("sha256", "sha256", OTHER, "/usr/bin/tool"))]
        report = check_evidence(entries, None, aik=None, secret=None, measurement_hash=SHA256, expected=refs)
        self.assertEqual(report.files, {"/usr/bin/ls": FileStatus.OK, "/usr/bin/new": FileStatus.UNKNOWN,
                                        "/usr/bin/tool": FileStatus.UNKNOWN})
        self.assertEqual(report.unlisted, {"/usr/bin/tool"})


class ReferenceCacheMixin(DatabaseMixin):
    def setUp(self):
        super().setUp()
        self.db = PolicyDb(self.engine)
        self.statements: list[str] = []
        sa.event.listen(self.engine, "before_cursor_execute",
                        lambda conn, cursor, statement, *rest: self.statements.append(statement))

    def lookups(self) -> int:
        """Reference queries (file_hashes joined to files) made since the last call."""
        found = sum(1 for s in self.statements if "JOIN file_hashes" in s)
        self.statements.clear()
        return found

    def generation(self) -> int:
        return self.db.read(attest_db.reference_generation)

    def test_the_generation_moves_on_with_every_reference_change(self):
        seen = [self.generation()]

        def change(statement):
            with self.engine.begin() as connection:
                connection.execute(statement)
                seen.append(attest_db.reference_generation(connection))

        self.db.run(attest_db.import_file_hashes, PRODUCT, [("/usr/bin/ls", "sha256", LS.hex())])
        seen.append(self.generation())
        files, hashes, products = m.File.__table__, m.FileHash.__table__, m.Product.__table__
        change(sa.update(hashes).values(digest=OTHER.hex()))
        change(sa.insert(files).values(path="/usr/bin/bash"))
        change(sa.update(files).where(files.c.path == "/usr/bin/bash").values(path="/usr/bin/sh"))
        change(sa.update(products).values(name="Debian 13 x86_64"))
        change(sa.delete(hashes))
        change(sa.delete(files))
        change(sa.delete(products))
        self.assertEqual(seen, sorted(set(seen)), "every change moves the generation on")
        # the package policy's and the group policy's counters are other rows
        users = m.User.__table__
        change(sa.insert(users).values(name="carol", password_hash="x", created=m.utcnow(), enabled=True))
        self.assertEqual(seen[-1], seen[-2])

    def test_a_second_lookup_is_served_from_memory(self):
        self.db.run(attest_db.import_file_hashes, PRODUCT, [("/usr/bin/ls", "sha256", LS.hex())])
        cache = attest_db.ReferenceCache(100)
        names = {"/usr/bin/ls", "/usr/bin/tool"}
        first = self.db.run(cache.lookup, PRODUCT, names, SHA256)
        self.assertEqual(self.lookups(), 1)
        second = self.db.run(cache.lookup, PRODUCT, names, SHA256)
        self.assertEqual(self.lookups(), 0)
        self.assertIs(second.ima, first.ima)
        self.assertEqual((cache.hits, cache.misses, len(cache)), (2, 2, 2))
        self.assertEqual(second.digests["/usr/bin/ls"], {"sha256": frozenset({LS})})
        self.assertEqual(judge(second, [entry("/usr/bin/ls", ima_ng("sha256", "sha256", LS, "/usr/bin/ls")),
                                        entry("/usr/bin/tool", ima_ng("sha256", "sha256", LS, "/usr/bin/tool"))]),
                         {"/usr/bin/ls": FileStatus.OK, "/usr/bin/tool": FileStatus.UNKNOWN})
        # another bank: the same digests, their template hashes in it
        sha384 = self.db.run(cache.lookup, PRODUCT, names, SHA384)
        self.assertEqual(self.lookups(), 0)
        self.assertEqual(sha384.ima.status("/usr/bin/ls", "sha256", ima_ng("sha384", "sha256", LS, "/usr/bin/ls")),
                         FileStatus.OK)
        self.assertEqual(sha384.ima.status("/usr/bin/ls", "sha256", ima_ng("sha256", "sha256", LS, "/usr/bin/ls")),
                         FileStatus.DIFFERS)

    def test_a_changed_or_removed_reference_counts_at_the_next_lookup(self):
        self.db.run(attest_db.import_file_hashes, PRODUCT, [("/usr/bin/ls", "sha256", LS.hex()),
                                                           ("/usr/bin/bash", "sha256", BASH.hex())])
        cache = attest_db.ReferenceCache(100)
        names = {"/usr/bin/ls", "/usr/bin/bash"}
        good = [entry("/usr/bin/ls", ima_ng("sha256", "sha256", LS, "/usr/bin/ls")),
                entry("/usr/bin/bash", ima_ng("sha256", "sha256", BASH, "/usr/bin/bash"))]
        self.assertEqual(set(judge(self.db.run(cache.lookup, PRODUCT, names, SHA256), good).values()),
                         {FileStatus.OK})
        # an operator's SQL changes the digest of ls and removes bash's
        with self.engine.begin() as connection:
            ls_id = connection.execute(sa.select(m.File.id).where(m.File.path == "/usr/bin/ls")).scalar()
            bash_id = connection.execute(sa.select(m.File.id).where(m.File.path == "/usr/bin/bash")).scalar()
            connection.execute(sa.update(m.FileHash.__table__).where(m.FileHash.file_id == ls_id)
                               .values(digest=OTHER.hex()))
            connection.execute(sa.delete(m.FileHash.__table__).where(m.FileHash.file_id == bash_id))
        self.lookups()
        found = self.db.run(cache.lookup, PRODUCT, names, SHA256)
        self.assertEqual(self.lookups(), 1)
        self.assertEqual(judge(found, good), {"/usr/bin/ls": FileStatus.DIFFERS, "/usr/bin/bash": FileStatus.UNKNOWN})
        self.assertEqual(judge(found, [entry("/usr/bin/ls", ima_ng("sha256", "sha256", OTHER, "/usr/bin/ls"))]),
                         {"/usr/bin/ls": FileStatus.OK})
        # nac-admin attest import of bash again
        self.db.run(attest_db.import_file_hashes, PRODUCT, [("/usr/bin/bash", "sha256", BASH.hex())])
        found = self.db.run(cache.lookup, PRODUCT, names, SHA256)
        self.assertEqual(judge(found, good[1:]), {"/usr/bin/bash": FileStatus.OK})

    def test_references_of_every_product_and_of_the_product_alone(self):
        self.db.run(attest_db.import_file_hashes, None, [("/usr/bin/ls", "sha256", LS.hex())])
        self.db.run(attest_db.import_file_hashes, PRODUCT, [("/usr/bin/ls", "sha256", OTHER.hex())])
        cache = attest_db.ReferenceCache(100)
        both = [entry("/usr/bin/ls", ima_ng("sha256", "sha256", LS, "/usr/bin/ls")),
                entry("/usr/bin/ls", ima_ng("sha256", "sha256", OTHER, "/usr/bin/ls"))]
        self.assertEqual(judge(self.db.run(cache.lookup, PRODUCT, {"/usr/bin/ls"}, SHA256), both),
                         {"/usr/bin/ls": FileStatus.OK})
        self.assertEqual(judge(self.db.run(cache.lookup, None, {"/usr/bin/ls"}, SHA256), both),
                         {"/usr/bin/ls": FileStatus.DIFFERS})

    def test_memory_bound(self):
        paths = [f"/usr/lib/file{i}" for i in range(6)]
        digests = {path: hashlib.sha256(path.encode()).digest() for path in paths}
        for product in ("A", "B"):
            self.db.run(attest_db.import_file_hashes, product, [(p, "sha256", d.hex()) for p, d in digests.items()])
        cache = attest_db.ReferenceCache(4)
        self.db.run(cache.lookup, "A", paths[:2], SHA256)
        self.db.run(cache.lookup, "B", paths[:2], SHA256)
        self.assertEqual(len(cache), 4)
        # B again: the least recently used is A, which makes room for B's new files
        self.db.run(cache.lookup, "B", paths[:4], SHA256)
        self.assertEqual(len(cache), 4)
        self.lookups()
        self.db.run(cache.lookup, "B", paths[:4], SHA256)
        self.assertEqual(self.lookups(), 0)
        self.db.run(cache.lookup, "A", paths[:1], SHA256)
        self.assertEqual(self.lookups(), 1, "A was forgotten")
        # more files than fit: those kept and those not, judged all the same, each time
        found = self.db.run(cache.lookup, "A", paths, SHA256)
        self.assertEqual(len(cache), 4)
        measured = [entry(p, ima_ng("sha256", "sha256", d, p)) for p, d in digests.items()]
        measured.append(entry(paths[5], ima_ng("sha256", "sha256", OTHER, paths[5])))
        want = {**{p: FileStatus.OK for p in paths}, paths[5]: FileStatus.DIFFERS}
        self.assertEqual(judge(found, measured), want)
        self.assertEqual(set(found.digests), set(paths))
        self.lookups()
        self.assertEqual(judge(self.db.run(cache.lookup, "A", paths, SHA256), measured), want)
        self.assertEqual(self.lookups(), 1, "what does not fit is looked up again")

    def test_no_cache(self):
        self.db.run(attest_db.import_file_hashes, PRODUCT, [("/usr/bin/ls", "sha256", LS.hex())])
        cache = attest_db.ReferenceCache(0)
        for _ in range(2):
            found = self.db.run(cache.lookup, PRODUCT, {"/usr/bin/ls"}, SHA1)
            self.assertEqual(self.lookups(), 1)
            self.assertEqual(found.ima.status("/usr/bin/ls", "sha256", ima_ng("sha1", "sha256", LS, "/usr/bin/ls")),
                             FileStatus.OK)
        self.assertEqual(len(cache), 0)


class SqliteReferenceCacheTests(ReferenceCacheMixin, SqliteBackend, unittest.TestCase):
    pass


class PostgresReferenceCacheTests(ReferenceCacheMixin, PostgresBackend, unittest.TestCase):
    pass


class ImvReferenceChangeTests(PolicyStoreMixin, ImvHarness, SqliteBackend, unittest.TestCase):
    @defer.inlineCallbacks
    def test_a_changed_reference_counts_at_the_next_attestation(self):
        host = AttestedHost(self)
        self.db.run(attest_db.register_aik, host.aik_der, device="host-1", product=PRODUCT, trusted=True)
        self.db.run(attest_db.import_file_hashes, PRODUCT, host.references())
        imv = AttestationImv({})
        result = yield self.assess([host.imc()], [imv])
        self.assertEqual(result.verdict("attestation").recommendation, A.ALLOW)
        self.assertGreater(len(imv.references), 0)
        # ls is replaced on the reference host: its old digest no longer counts
        with self.engine.begin() as connection:
            ls_id = connection.execute(sa.select(m.File.id).where(m.File.path == "/usr/bin/ls")).scalar()
            connection.execute(sa.delete(m.FileHash.__table__).where(m.FileHash.file_id == ls_id))
        self.db.run(attest_db.import_file_hashes, PRODUCT, [("/usr/bin/ls", "sha256", OTHER.hex())])
        result = yield self.assess([host.imc()], [imv])
        verdict = result.verdict("attestation")
        self.assertEqual(verdict.recommendation, A.NO_ACCESS)
        self.assertIn("differ from their reference values", verdict.reason)
        [latest, _] = self.db.run(attest_db.list_attestations)
        self.assertEqual(latest.details["differing"], ["/usr/bin/ls"])

    @defer.inlineCallbacks
    def test_a_file_new_to_the_kept_references_is_looked_up(self):
        host = AttestedHost(self)
        tool = b"a tool installed later"
        self.db.run(attest_db.register_aik, host.aik_der, device="host-1", product=PRODUCT, trusted=True)
        self.db.run(attest_db.import_file_hashes, PRODUCT,
                    host.references() + [("/usr/local/bin/tool", "sha256", hashlib.sha256(tool).hexdigest())])
        imv = AttestationImv({})
        result = yield self.assess([host.imc()], [imv])
        self.assertEqual(result.verdict("attestation").recommendation, A.ALLOW)
        kept = len(imv.references)
        # the host runs a file the kept references do not hold, the database does
        host.run_file("/usr/local/bin/tool", tool)
        result = yield self.assess([host.imc()], [imv])
        self.assertEqual(result.verdict("attestation").recommendation, A.ALLOW)
        self.assertEqual(len(imv.references), kept + 1)
        [latest, _] = self.db.run(attest_db.list_attestations)
        self.assertEqual(latest.details["files"]["ok"], 5)
        # and one nobody registered is unknown, on the next attestation too
        host.run_file("/usr/local/bin/other", b"not registered")
        for _ in range(2):
            result = yield self.assess([host.imc()], [imv])
            verdict = result.verdict("attestation")
            self.assertEqual(verdict.recommendation, A.ISOLATE)
            self.assertIn("without reference values", verdict.reason)
