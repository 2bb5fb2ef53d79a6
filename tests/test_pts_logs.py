"""Measurement logs and their replay (nac.pts.eventlog, nac.pts.ima, nac.pts.pcr):
the BIOS and IMA logs of the captured strongSwan sessions, whose replay must
give the PCRs the TPM quoted; logs laid out byte by byte here and extended
into a software TPM, whose PCR values (``tpm2_pcrread``) are the expected
ones; the boot aggregate; and the refusals and limits, each naming the
offset of the record that is wrong."""

from __future__ import annotations

import hashlib
import struct

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.trial import unittest

from nac.pts.eventlog import (
    EV_NO_ACTION,
    EV_SEPARATOR,
    EventLogError,
    LogFormat,
    build_event2,
    build_spec_id_event,
    parse_event_log,
)
from nac.pts.hashes import SHA1, SHA256, SHA384
from nac.pts.ima import (
    ImaLogError,
    boot_aggregates,
    build_entry,
    parse_ima_log,
    replay,
    template_data,
    template_hash,
)
from nac.pts.pcr import PcrBank
from nac.pts.quote import EvidenceMismatch, verify_pts_quote
from nac.pts.tpm2 import load_public_key
from tests.swtpm import started_tpm
from tests.test_pts_quote import captured
from tests.vectors import vector_path

H = bytes.fromhex
LOGS = "strongswan-attestation/event-logs"
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def log_bytes(name: str) -> bytes:
    return vector_path(f"{LOGS}/{name}").read_bytes()


# -- layouts written out here (TCG PC Client PFP §10; the kernel's IMA list) --------------------

def legacy_record(pcr: int, event_type: int, sha1: bytes, data: bytes) -> bytes:
    """TCG_PCR_EVENT: PCRIndex, EventType (LE 32), SHA-1 digest, EventSize (LE 32), Event."""
    return struct.pack("<II", pcr, event_type) + sha1 + struct.pack("<I", len(data)) + data


def spec_id_record(banks: dict[int, int]) -> bytes:
    """The first record of a crypto-agile log: EV_NO_ACTION with the Spec ID Event03 structure."""
    data = (b"Spec ID Event03\0" + struct.pack("<I", 0) + bytes((0, 2, 0, 2)) + struct.pack("<I", len(banks))
            + b"".join(struct.pack("<HH", alg, size) for alg, size in banks.items()) + b"\0")
    return legacy_record(0, EV_NO_ACTION, bytes(20), data)


def event2_record(pcr: int, event_type: int, data: bytes, algorithms=("sha1", "sha256")) -> bytes:
    """TCG_PCR_EVENT2 with each bank's hash of ``data``: count (LE 32), then per bank AlgorithmId (LE 16) + digest."""
    ids = {"sha1": 0x0004, "sha256": 0x000B, "sha384": 0x000C}
    digests = b"".join(struct.pack("<H", ids[a]) + hashlib.new(a, data).digest() for a in algorithms)
    return struct.pack("<III", pcr, event_type, len(algorithms)) + digests + struct.pack("<I", len(data)) + data


def ima_ng_data(algorithm: str, digest: bytes, name: str, signature: bytes | None = None) -> bytes:
    """ima-ng / ima-sig template data: d-ng ("algo:\\0" + digest) and n-ng (name + NUL), each with an LE 32 length."""
    d = algorithm.encode() + b":\0" + digest
    n = name.encode() + b"\0"
    data = struct.pack("<I", len(d)) + d + struct.pack("<I", len(n)) + n
    if signature is not None:
        data += struct.pack("<I", len(signature)) + signature
    return data


class CapturedLogTests(unittest.TestCase):
    """The logs strongSwan's IMC read in the captured sessions."""

    def test_bios_log_is_what_the_imc_sent(self):
        log = parse_event_log(log_bytes("bios-good.bin"))
        self.assertEqual((log.format, len(log.events)), (LogFormat.EVENT2_ONLY, 17))
        self.assertEqual({alg for e in log.events for alg, _ in e.digests}, {0x0004, 0x000B, 0x000C, 0x000D})
        self.assertEqual([e.pcr for e in log.events][-8:], list(range(8)))
        self.assertEqual({e.type for e in log.events[-8:]}, {EV_SEPARATOR})
        final, bank, _ = captured("tpm2-bios-allowed")
        sent = [m for m in bank.values]  # the evidence's PCRs
        replayed = log.replay(SHA384, startup_locality=3)
        self.assertEqual({p: replayed.value(p) for p in sent}, bank.values)

    def test_logs_replayed_verify_the_captured_quote(self):
        final, _, secret = captured("tpm2-bios-ima-allowed")
        aik = load_public_key(vector_path("strongswan-attestation/aik-pub.pem").read_bytes())
        bank = parse_event_log(log_bytes("bios-good.bin")).replay(SHA384, startup_locality=3)
        entries = parse_ima_log(log_bytes("ima-good.bin"))
        replay(entries, SHA384, bank=bank)
        verify_pts_quote(final, aik, secret, {SHA384.tpm_alg: bank})
        # the tampered BIOS log does not
        bad = parse_event_log(log_bytes("bios-tampered.bin")).replay(SHA384, startup_locality=3)
        replay(entries, SHA384, bank=bad)
        self.assertRaises(EvidenceMismatch, verify_pts_quote, final, aik, secret, {SHA384.tpm_alg: bad})
        # nor the IMA list with /usr/bin/ls changed
        other = parse_event_log(log_bytes("bios-good.bin")).replay(SHA384, startup_locality=3)
        replay(parse_ima_log(log_bytes("ima-ls-differs.bin")), SHA384, bank=other)
        self.assertRaises(EvidenceMismatch, verify_pts_quote, final, aik, secret, {SHA384.tpm_alg: other})

    def test_ima_list_and_boot_aggregate(self):
        entries = parse_ima_log(log_bytes("ima-good.bin"))
        self.assertEqual([(e.template, e.digest_algorithm, e.filename) for e in entries],
                         [("ima-ng", "sha384", "boot_aggregate"), ("ima-ng", "sha256", "/usr/bin/bash"),
                          ("ima-ng", "sha256", "/usr/bin/ls"), ("ima-ng", "sha256", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
                          ("ima-ng", "sha256", "/usr/bin/openssl")])
        for entry in entries:
            # the logged SHA-1 template hash is the hash of the template data as laid out here
            self.assertEqual(entry.template_hash, hashlib.sha1(
                ima_ng_data(entry.digest_algorithm, entry.file_digest, entry.filename)).digest())
            self.assertEqual(template_hash(SHA384, "ima-ng", entry.digest_algorithm, entry.file_digest,
                                           entry.filename), entry.extend_digest(SHA384))
        bank = parse_event_log(log_bytes("bios-good.bin")).replay(SHA384, startup_locality=3)
        pcrs = b"".join(bank.value(p) for p in range(10))
        self.assertEqual(entries[0].file_digest, hashlib.sha384(pcrs).digest())
        self.assertEqual(boot_aggregates(bank)[0], entries[0].file_digest)
        # the SHA-1 bank's aggregate is over PCR 0-7 only
        sha1_bank = parse_event_log(log_bytes("bios-good.bin")).replay(SHA1, startup_locality=3)
        self.assertEqual(boot_aggregates(sha1_bank), (hashlib.sha1(b"".join(sha1_bank.value(p) for p in range(8)))
                                                      .digest(),))


class SoftwareTpmReplayTests(unittest.TestCase):
    """Logs extended into a real TPM: the replay must give the PCRs it reports."""

    def setUp(self):
        self.tpm = started_tpm(self)

    def test_crypto_agile_log(self):
        events = [(0, 0x8, b"S-CRTM version"), (0, 0x1, b"POST code"), (4, 0x80000003, b"shim"),
                  (4, 0x80000003, b"grub"), (7, 0x800000E0, b"db"), *((p, EV_SEPARATOR, bytes(4)) for p in range(8))]
        # EV_NO_ACTION events (the StartupLocality one here) are never extended
        data = spec_id_record({0x0004: 20, 0x000B: 32}) + event2_record(0, EV_NO_ACTION, b"StartupLocality\0\0")
        for pcr, event_type, payload in events:
            data += event2_record(pcr, event_type, payload)
            self.tpm.extend(pcr, sha1=hashlib.sha1(payload).digest(), sha256=hashlib.sha256(payload).digest())
        log = parse_event_log(data)
        self.assertEqual((log.format, log.digest_sizes, log.startup_locality),
                         (LogFormat.CRYPTO_AGILE, {0x0004: 20, 0x000B: 32}, 0))
        self.assertEqual(len(log.measured()), len(events))
        for algorithm in (SHA1, SHA256):
            bank = log.replay(algorithm)
            self.assertEqual({p: bank.value(p) for p in range(8)}, self.tpm.read_pcrs(algorithm.name, range(8)))
        # nac's writer lays out the same bytes
        self.assertEqual(build_spec_id_event({0x0004: 20, 0x000B: 32}), spec_id_record({0x0004: 20, 0x000B: 32}))
        self.assertEqual(build_event2(4, 0x80000003, {0x0004: hashlib.sha1(b"shim").digest(),
                                                      0x000B: hashlib.sha256(b"shim").digest()}, b"shim"),
                         event2_record(4, 0x80000003, b"shim"))

    def test_ima_templates_and_violation(self):
        file_a, file_b = hashlib.sha256(b"contents a").digest(), hashlib.sha1(b"contents b").digest()
        records = [
            ("ima-ng", ima_ng_data("sha256", file_a, "/usr/bin/a"), False),
            ("ima-sig", ima_ng_data("sha256", file_a, "/usr/bin/signed", H("030204") + bytes(8)), False),
            ("ima-sig", ima_ng_data("sha256", file_a, "/usr/bin/unsigned", b""), False),
            # legacy: SHA-1 digest and the name NUL-padded to 256 bytes
            ("ima", file_b + b"/boot/legacy".ljust(256, b"\0"), False),
            ("ima-ng", ima_ng_data("sha256", file_a, "/var/log/written"), True),  # a violation
        ]
        wire = []
        for template, hashed, violation in records:
            logged = bytes(20) if violation else hashlib.sha1(hashed).digest()
            if template == "ima":
                body = file_b + struct.pack("<I", len(b"/boot/legacy")) + b"/boot/legacy"
            else:
                body = struct.pack("<I", len(hashed)) + hashed
            wire.append(struct.pack("<I", 10) + logged + struct.pack("<I", len(template)) + template.encode() + body)
            self.tpm.extend(10, sha1=b"\xff" * 20 if violation else logged,
                            sha256=b"\xff" * 32 if violation else hashlib.sha256(hashed).digest())
        entries = parse_ima_log(b"".join(wire))
        self.assertEqual([e.template for e in entries], ["ima-ng", "ima-sig", "ima-sig", "ima", "ima-ng"])
        self.assertEqual(entries[1].signature, H("030204") + bytes(8))
        self.assertEqual(entries[2].signature, b"")
        self.assertEqual((entries[3].digest_algorithm, entries[3].file_digest, entries[3].filename),
                         ("sha1", file_b, "/boot/legacy"))
        self.assertTrue(entries[4].violation)
        for algorithm in (SHA1, SHA256):
            self.assertEqual(replay(entries, algorithm).value(10), self.tpm.read_pcrs(algorithm.name, [10])[10])
        # nac's writer lays out what the kernel does
        for (template, _, violation), entry, record in zip(records, entries, wire):
            self.assertEqual(build_entry(template, entry.digest_algorithm, entry.file_digest, entry.filename,
                                         signature=entry.signature, violation=violation), record)
        self.assertEqual(template_data("ima", "sha1", file_b, "/boot/legacy"), records[3][1])


class RefusalTests(unittest.TestCase):
    def test_event_log_errors_name_the_record(self):
        good = log_bytes("bios-good.bin")
        second = parse_event_log(good).events[1].offset
        error = self.assertRaises(EventLogError, parse_event_log, good[:second + 30])
        self.assertEqual(error.offset, second)
        error = self.assertRaises(EventLogError, parse_event_log, good, max_events=5)
        self.assertIn("more than 5 events", str(error))
        # an event of 2 GiB of data
        huge = struct.pack("<III", 0, 1, 1) + struct.pack("<H", 0x000B) + bytes(32) + struct.pack("<I", 1 << 31)
        self.assertIn("event data of", str(self.assertRaises(EventLogError, parse_event_log, huge)))
        # a digest of an algorithm of unknown size (no Spec ID header to say)
        unknown = struct.pack("<III", 0, 1, 1) + struct.pack("<H", 0x00FF) + bytes(40)
        self.assertRaises(EventLogError, parse_event_log, unknown)
        # a header naming a wrong size for SHA-256
        self.assertRaises(EventLogError, parse_event_log, spec_id_record({0x000B: 20}))

    def test_replay_needs_the_bank(self):
        data = spec_id_record({0x0004: 20}) + event2_record(0, 1, b"x", ("sha1",))
        self.assertRaises(EventLogError, parse_event_log(data).replay, SHA256)

    def test_sha1_log_of_tpm_1_2(self):
        data = legacy_record(0, 0x8, hashlib.sha1(b"a").digest(), b"a") + legacy_record(
            4, 0x5, hashlib.sha1(b"b").digest(), b"b")
        log = parse_event_log(data)
        self.assertEqual(log.format, LogFormat.SHA1)
        bank = log.replay(SHA1)
        self.assertEqual(bank.value(4), hashlib.sha1(bytes(20) + hashlib.sha1(b"b").digest()).digest())

    def test_ima_errors(self):
        good = log_bytes("ima-good.bin")
        entries = parse_ima_log(good)
        error = self.assertRaises(ImaLogError, parse_ima_log, good[:entries[2].offset + 40])
        self.assertEqual(error.offset, entries[2].offset)
        self.assertIn("more than 2 entries", str(self.assertRaises(ImaLogError, parse_ima_log, good, max_entries=2)))
        bad_name = struct.pack("<I", 10) + bytes(20) + struct.pack("<I", 1 << 30)
        self.assertRaises(ImaLogError, parse_ima_log, bad_name)
        big = struct.pack("<I", 10) + bytes(20) + struct.pack("<I", 6) + b"ima-ng" + struct.pack("<I", 1 << 30)
        self.assertIn("template data of", str(self.assertRaises(ImaLogError, parse_ima_log, big)))
        fields = struct.pack("<I", 10) + bytes(20) + struct.pack("<I", 6) + b"ima-ng" + struct.pack("<I", 8) \
            + struct.pack("<I", 9) + b"abcd"
        self.assertRaises(ImaLogError, parse_ima_log, fields)

    def test_unknown_templates_are_kept_and_replayed(self):
        data = struct.pack("<I", 10) + hashlib.sha1(b"\x01\0\0\0x").digest() + struct.pack("<I", 6) + b"custom" \
            + struct.pack("<I", 5) + b"\x01\0\0\0x"
        entry = parse_ima_log(data)[0]
        self.assertEqual((entry.template, entry.filename, entry.file_digest), ("custom", "", b""))
        self.assertEqual(entry.extend_digest(SHA256), hashlib.sha256(b"\x01\0\0\0x").digest())

    def test_pcr_bank_initial_values_and_sizes(self):
        bank = PcrBank(SHA256, startup_locality=3)
        self.assertEqual(bank.value(0), bytes(31) + b"\x03")
        self.assertEqual(bank.value(17), b"\xff" * 32)
        self.assertEqual(bank.value(10), bytes(32))
        self.assertRaises(ValueError, bank.extend, 0, bytes(20))

    @FAST
    @given(st.binary(max_size=300))
    def test_random_event_logs(self, data):
        try:
            parse_event_log(data)
        except EventLogError as err:
            self.assertTrue(0 <= err.offset <= len(data))

    @FAST
    @given(st.binary(max_size=300))
    def test_random_ima_lists(self, data):
        try:
            parse_ima_log(data)
        except ImaLogError as err:
            self.assertTrue(0 <= err.offset <= len(data))

    @FAST
    @given(st.data())
    def test_mutated_logs(self, data):
        for name, parse, error in (("bios-good.bin", parse_event_log, EventLogError),
                                   ("ima-good.bin", parse_ima_log, ImaLogError)):
            mutated = bytearray(log_bytes(name))
            for _ in range(data.draw(st.integers(1, 4))):
                mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
            try:
                parse(bytes(mutated[:data.draw(st.integers(0, len(mutated)))]))
            except error:
                pass
