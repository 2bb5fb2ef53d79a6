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
from pathlib import Path

from twisted.trial import unittest

from nac.decode import main
from tests.vectors import records


SESSION = "strongswan-pt-tls/carol-sasl-open-ports-denied.jsonl"


def pb_batches() -> list[bytes]:
    return [bytes.fromhex(r["hex"]) for r in records(SESSION) if r["layer"] == "pb-tnc"]


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
        code, out, _ = run(["--json", "--hex", self.cdata.hex()])
        pa = json.loads(out)["messages"][1]
        self.assertEqual(pa["message_id"], 0xD1F44CE6)
        self.assertIs(pa["roundtrip"], True)
        self.assertTrue(pa["attributes"])
        for attr in pa["attributes"]:
            for key in ("vendor", "type", "name", "noskip"):
                self.assertIn(key, attr)
        self.assertIn("IETF/Product Information", [a["name"] for a in pa["attributes"]])

    def test_a_pa_tnc_error_is_reported_with_its_batch_offset(self):
        # RFC 5793: batch header (8 bytes: version 2, client, CDATA), PB-TNC
        # message header (12: IETF PB-PA), PB-PA header (12: IETF OS subtype,
        # IMC 1, any IMV); then a PA-TNC message (RFC 5792 §4.1) cut to 3 of
        # its 8 header bytes, at batch offset 8 + 12 + 12
        body = bytes.fromhex("010000")
        pb_pa = struct.pack(">B3sIHH", 0, b"\0\0\0", 1, 1, 0xFFFF) + body
        message = struct.pack(">B3sII", 0, b"\0\0\0", 1, 12 + len(pb_pa)) + pb_pa
        batch = struct.pack(">BBHI", 2, 0, 1, 8 + len(message)) + message
        code, out, err = run(["--hex", batch.hex()])
        self.assertEqual((code, out), (1, ""))
        self.assertIn("PA-TNC error in PB-PA message at batch offset 32", err)

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
