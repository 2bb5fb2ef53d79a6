"""nac's attestation collector answering strongSwan's attestation IMV: the
requests strongSwan's PDP sent in a captured session (its four PTS round
trips, byte for byte) delivered to nac's collector on a software TPM; its
answers have the shape of strongSwan's own collector's answers in that
session, and pass the verification both IMVs make (the quote over the D-H
secret, the evidence replaying to the quoted PCRs, each IMA entry rebuilt
from its file's digest).  strongSwan's IMV itself is not in Debian; its
checks are those nac's verification functions reproduce on its captures."""

from __future__ import annotations

import struct

from twisted.trial import unittest

from nac.ifimv import ConnectionState
from nac.pa import PaMessage, PaVendor
from nac.pa.tcg_pts import (
    PTS_SUBTYPE,
    AttestationIdentityKey,
    ComponentValidation,
    DhNonceParametersResponse,
    PtsDhGroup,
    PtsHashAlgorithm,
    PtsMeasurementAlgorithmSelection,
    PtsProtocolCapabilities,
    QuoteMode,
    SimpleComponentEvidence,
    SimpleEvidenceFinal,
    TpmVersionInfo,
    is_pts_error,
)
from nac.pts.evidence import FileStatus, check_evidence
from nac.pts.hashes import SHA384
from nac.pts.tpm2 import load_public_key
from nac.tnccs.imv_manager import ReceivedPaMessage
from tests.attested_host import AttestedHost
from tests.test_pa_tcg_pts import pts_attributes
from tests.vectors import records

SESSION = "strongswan-attestation/tpm2-bios-ima-allowed.jsonl"


class CapturingConnection:
    """The TNC client as one IMC sees it: what the IMC sends is kept."""

    connection_id = 1
    imc_id = 2
    imc_name = "Attestation"
    max_message_size = 128 * 16384

    def __init__(self):
        self.state = None
        self.sent: list[bytes] = []

    def send_message(self, vendor_id, subtype, body, validator_id=0xFFFF, exclusive=False):
        self.sent.append(body)


def strongswan_requests() -> list[ReceivedPaMessage]:
    """The TCG/PTS messages strongSwan's attestation IMV sent, in wire order."""
    found = []
    for record in records(SESSION):
        if record["layer"] != "pb-tnc" or record["dir"] != "s2c":
            continue
        batch, pos = bytes.fromhex(record["hex"]), 8
        while pos < len(batch):
            vendor_type, length = struct.unpack_from(">QI", batch, pos)
            value = batch[pos + 12:pos + length]
            if vendor_type & 0xFFFFFFFF == 1 and value[1:4] == bytes.fromhex("005597") \
                    and int.from_bytes(value[4:8], "big") == PTS_SUBTYPE:
                body = value[12:]
                found.append(ReceivedPaMessage(PaVendor.TCG, PTS_SUBTYPE, 0xFFFF,
                                               int.from_bytes(value[10:12], "big"), False, body,
                                               PaMessage.parse(body)))
            pos += length
    return found


class StrongswanRequestsTests(unittest.TestCase):
    def setUp(self):
        self.host = AttestedHost(self)
        self.imc = self.host.imc()
        self.connection = CapturingConnection()
        self.imc.notify_connection_change(self.connection, ConnectionState.CREATE)
        self.requests = strongswan_requests()
        self.answers = []
        for message in self.requests:
            before = len(self.connection.sent)
            self.imc.receive_message(self.connection, message)
            self.answers.append([a for body in self.connection.sent[before:]
                                 for a in PaMessage.parse(body).attributes])

    def test_every_request_is_answered_as_strongswans_collector_answered(self):
        self.assertEqual(len(self.requests), 5)  # strongSwan's IMV: 4 PTS round trips and the result
        theirs = pts_attributes("tpm2-bios-ima-allowed", "c2s")
        mine = [a for answer in self.answers for a in answer]
        self.assertFalse([a for a in mine if is_pts_error(a)])

        def kinds(attributes):
            out = []
            for attribute in attributes:
                name = type(attribute).__name__
                if name in ("ItaSymlinks", "MaxAttributeSizeResponse"):
                    continue  # Get Symlinks is not a PTS request nac's collector serves
                if not out or out[-1] != name or name != "SimpleComponentEvidence":
                    out.append(name)
            return out

        self.assertEqual(kinds(mine), kinds(theirs))
        [caps] = [a for a in mine if isinstance(a, PtsProtocolCapabilities)]
        self.assertEqual(caps.capabilities.letters, "..DT.")
        [algorithm] = [a for a in mine if isinstance(a, PtsMeasurementAlgorithmSelection)]
        self.assertEqual(algorithm.algorithms, PtsHashAlgorithm.SHA384)  # strongSwan's choice among e000
        [response] = [a for a in mine if isinstance(a, DhNonceParametersResponse)]
        self.assertEqual((response.group, len(response.nonce), len(response.public_value)),
                         (PtsDhGroup.ECP_256, 20, 64))  # strongSwan offers f000: no ECP-384
        [version] = [a for a in mine if isinstance(a, TpmVersionInfo)]
        self.assertEqual((version.tpm_version, version.vendor), ("2.0", "IBM"))
        [aik] = [a for a in mine if isinstance(a, AttestationIdentityKey)]
        self.assertTrue(aik.naked)
        evidence = [a for a in mine if isinstance(a, SimpleComponentEvidence)]
        theirs_evidence = [a for a in theirs if isinstance(a, SimpleComponentEvidence)]
        # the same encoding: PCR info on every measurement, a validated policy URI on IMA entries
        self.assertEqual({(e.component, e.validation, e.pcr_before is not None, e.hash_algorithm)
                          for e in evidence},
                         {(e.component, e.validation, e.pcr_before is not None, e.hash_algorithm)
                          for e in theirs_evidence})
        self.assertEqual([e.policy_uri for e in evidence if e.validation is ComponentValidation.PASSED][:2],
                         ["sha384:boot_aggregate", "sha256:/usr/bin/bash"])
        [final] = [a for a in mine if isinstance(a, SimpleEvidenceFinal)]
        [their_final] = [a for a in theirs if isinstance(a, SimpleEvidenceFinal)]
        self.assertEqual((final.quote_mode, final.composite_algorithm, len(final.clock_info),
                          len(final.firmware_version), final.pcr_selection),
                         (QuoteMode.TPM2, their_final.composite_algorithm, 17, 8, their_final.pcr_selection))

    def test_the_answers_pass_the_verification(self):
        mine = [a for answer in self.answers for a in answer]
        secret = self.imc.pts(self.connection).secret
        self.assertEqual(len(secret), 48)  # SHA-384, as strongSwan's IMV selected in its D-H Nonce Finish
        aik = load_public_key([a for a in mine if isinstance(a, AttestationIdentityKey)][0].key)
        references = {}
        for path, algorithm, digest in self.host.references():
            references.setdefault(path, {}).setdefault(algorithm, set()).add(bytes.fromhex(digest))
        report = check_evidence([a for a in mine if isinstance(a, SimpleComponentEvidence)],
                                next(a for a in mine if isinstance(a, SimpleEvidenceFinal)), aik=aik,
                                secret=secret, measurement_hash=SHA384, references=references)
        self.assertIsNone(report.quote_error)
        self.assertEqual((report.boot_aggregate, report.counts()["ok"]), ("ok", 4))
        self.assertEqual(report.names(FileStatus.DIFFERS), [])
