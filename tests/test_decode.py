"""``nac-decode``: dumps a captured PB-TNC batch, in-process and as the
installed console script, and reports malformed input with its offset."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

from twisted.trial import unittest

from nac import decode as decode_module
from nac.pb import BatchType, Direction, PbBatch, PbPa
from nac.decode import main
from tests.vectors import records


SESSION = "strongswan-pt-tls/carol-sasl-open-ports-denied.jsonl"


def pb_batches() -> list[bytes]:
    return [bytes.fromhex(r["hex"]) for r in records(SESSION) if r["layer"] == "pb-tnc"]


def pa_available() -> bool:
    try:
        from nac.pa import PaMessage  # noqa: F401
    except ImportError:
        return False
    return True


class _StandInPaError(Exception):
    def __init__(self, reason: str, offset: int):
        super().__init__(reason)
        self.offset = offset


@dataclass(frozen=True)
class _StandInAttribute:
    vendor: int
    type: int
    value: bytes
    noskip: bool

    @property
    def full_name(self) -> str:
        return f"0x{self.vendor:06x}/0x{self.type:08x}"

    def describe(self) -> str:
        return f"'{self.full_name}' 0x{self.vendor:06x}/0x{self.type:08x}"


class _StandInPaMessage:
    """Just enough of RFC 5792 framing to exercise nac-decode's PA path."""

    def __init__(self, version, message_id, attributes):
        self.version, self.message_id, self.attributes = version, message_id, attributes

    @classmethod
    def parse(cls, data: bytes):
        if len(data) < 8:
            raise _StandInPaError("short PA-TNC header", 0)
        attributes, pos = [], 8
        while pos < len(data):
            flags_vendor, attr_type, length = struct.unpack_from(">III", data, pos)
            attributes.append(_StandInAttribute(flags_vendor & 0xFFFFFF, attr_type, data[pos + 12:pos + length],
                                                bool(flags_vendor >> 31)))
            pos += length
        return cls(data[0], struct.unpack_from(">I", data, 4)[0], attributes)

    def build(self) -> bytes:
        return bytes((self.version, 0, 0, 0)) + struct.pack(">I", self.message_id) + b"".join(
            struct.pack(">III", (a.noskip << 31) | a.vendor, a.type, 12 + len(a.value)) + a.value
            for a in self.attributes)


STAND_IN_PA = types.SimpleNamespace(PaMessage=_StandInPaMessage, PaTncError=_StandInPaError)


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


class DecodeTests(unittest.TestCase):
    def setUp(self):
        self.cdata, self.sdata, self.big, self.result, self.close = pb_batches()
        # not self.mktemp(): under pytest that would create folders in the checkout
        tmp = tempfile.TemporaryDirectory(prefix="nac-decode-")
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)

    def write(self, name: str, content: bytes) -> str:
        path = self.tmp / name
        path.write_bytes(content)
        return str(path)

    def test_json_dump_of_first_cdata_batch(self):
        code, out, err = run(["--json", "--hex", self.cdata.hex()])
        self.assertEqual((code, err), (0, ""))
        result = json.loads(out)
        self.assertEqual(result["batch_type"], "CDATA")
        self.assertEqual(result["direction"], "client-to-server")
        self.assertIs(result["roundtrip"], True)
        messages = result["messages"]
        self.assertEqual([m["type"] for m in messages], ["PB-Language-Preference"] + ["PB-PA"] * 3)
        self.assertEqual(messages[0]["language"], "en")
        self.assertFalse(messages[0]["noskip"])
        pa = messages[1]
        for key in ("vendor", "noskip", "pa_vendor", "pa_subtype", "collector_id", "validator_id", "exclusive"):
            self.assertIn(key, pa)
        self.assertEqual((pa["pa_vendor"], pa["pa_subtype"], pa["collector_id"], pa["validator_id"]),
                         (0, 1, 1, 0xFFFF))
        self.assertEqual(pa["pa_subtype_name"], "IETF/Operating System")

    def test_pa_messages_and_attributes_are_decoded(self):
        if not pa_available():
            raise unittest.SkipTest("nac.pa is not importable yet")
        code, out, _ = run(["--json", "--hex", self.cdata.hex()])
        pa = json.loads(out)["messages"][1]
        self.assertEqual(pa["message_id"], 0xD1F44CE6)
        self.assertIs(pa["roundtrip"], True)
        self.assertTrue(pa["attributes"])
        for attr in pa["attributes"]:
            for key in ("vendor", "type", "name", "noskip"):
                self.assertIn(key, attr)
        self.assertIn("IETF/Product Information", [a["name"] for a in pa["attributes"]])

    def test_pa_path_with_a_stand_in_codec(self):
        # independent of nac.pa's progress: the PA-TNC layer through a minimal stand-in
        self.patch(decode_module, "_pa_module", lambda: STAND_IN_PA)
        code, out, _ = run(["--json", "--hex", self.cdata.hex()])
        self.assertEqual(code, 0)
        result = json.loads(out)
        self.assertIs(result["roundtrip"], True)
        pa = result["messages"][1]
        self.assertEqual((pa["message_id"], pa["pa_version"]), (0xD1F44CE6, 1))
        self.assertEqual(pa["attributes"][0]["description"], "'0x000000/0x00000002' 0x000000/0x00000002")
        self.assertLessEqual({"vendor", "type", "name", "noskip"}, set(pa["attributes"][0]))
        # a PA-TNC error is reported with its offset inside the batch
        short = PbBatch(BatchType.CDATA, Direction.TO_SERVER, (PbPa(0, 1, 1, 0xFFFF, b"\x01\x00\x00"),)).build()
        code, _, err = run(["--hex", short.hex()])
        self.assertEqual(code, 1)
        self.assertIn("batch offset 32", err)

    def test_big_batch_round_trips(self):
        code, out, _ = run(["--json", self.write("big.bin", self.big)])
        self.assertEqual(code, 0)
        result = json.loads(out)
        self.assertIs(result["roundtrip"], True)
        self.assertEqual(result["length"], 19344)

    def test_text_dump_of_result_batch(self):
        code, out, _ = run([self.write("result.hex", self.result.hex().encode() + b"\n")])
        self.assertEqual(code, 0)
        self.assertIn("PB-TNC RESULT batch (186 bytes), server-to-client", out)
        self.assertIn("IETF/PB-Reason-String", out)
        self.assertIn("Open server ports were detected", out)
        self.assertIn('recommendation="DENIED"', out)
        self.assertIn("round trip: identical", out)
        if pa_available():
            self.assertIn("'IETF/Assessment Result' 0x000000/0x00000009", out)

    def test_raw_and_hex_files_decode_alike(self):
        raw = run(["--json", self.write("sdata.bin", self.sdata)])
        spaced = " ".join(self.sdata.hex()[i:i + 32] for i in range(0, len(self.sdata) * 2, 32))
        text = run(["--json", self.write("sdata.hex", spaced.encode())])
        self.assertEqual(raw, text)
        self.assertEqual(json.loads(raw[1])["direction"], "server-to-client")

    def test_malformed_batch_exits_1_with_offset(self):
        bad = bytearray(self.cdata)
        bad[39 + 8:39 + 12] = (10_000).to_bytes(4, "big")  # 2nd message length overruns
        code, out, err = run(["--hex", bytes(bad).hex()])
        self.assertEqual((code, out), (1, ""))
        self.assertIn("offset 47", err)
        code, _, err = run(["--json", "--hex", self.cdata[:-1].hex()])
        self.assertEqual(code, 1)
        self.assertIn("offset 4", err)

    def test_bad_hex_and_missing_file(self):
        self.assertEqual(run(["--hex", "02zz"])[0], 1)
        self.assertEqual(run([str(self.tmp / "absent")])[0], 1)

    def test_console_script(self):
        script = shutil.which("nac-decode")
        command = [script] if script else [sys.executable, "-m", "nac.decode"]
        path = self.write("result.bin", self.result)
        done = subprocess.run(command + ["--json", path], capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        result = json.loads(done.stdout)
        self.assertEqual(result["batch_type"], "RESULT")
        self.assertIs(result["roundtrip"], True)
        self.assertEqual([m["type"] for m in result["messages"]][-3:],
                         ["PB-Assessment-Result", "PB-Access-Recommendation", "PB-Reason-String"])
        done = subprocess.run(command + ["--hex", "0300000100000008"], capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 1)
        self.assertIn("offset 0", done.stderr)
