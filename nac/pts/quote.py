"""Is a TPM 2.0 quote genuine, fresh, and what the evidence says?

Two checks, in this order, so that the reason names what failed:

1. the signature: the AIK signed a TPMS_ATTEST of a quote (magic
   TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE) whose extraData is this
   attestation's nonce (the PTS secret assessment value): a forged quote, one
   by another key, or a replayed one over an old nonce fails here;
2. the PCR digest: the digest of the PCR values replayed from the evidence
   (the BIOS event log, the IMA list) equals the quoted pcrDigest: a log
   edited after the fact, or a PCR extended without a log entry, fails here.

:func:`verify_pts_quote` checks strongSwan's Simple Evidence Final, which
carries the TPMS_ATTEST fields apart: the verifier rebuilds the structure
with its own nonce, so the nonce is never taken from the endpoint.
:func:`verify_quote` checks a whole TPMS_ATTEST as the TPM returned it.
"""

from __future__ import annotations

import hmac

from nac.pa.tcg_pts import QuoteMode, SimpleEvidenceFinal
from nac.pts.hashes import HashAlgorithm, by_pts
from nac.pts.pcr import PcrBank
from nac.pts.tpm2 import (
    CLOCK_INFO_SIZE,
    FIRMWARE_VERSION_SIZE,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    Attest,
    PcrSelection,
    QuoteError,
    TpmFormatError,
    pcr_digest,
    verify_signature,
)

__all__ = ["EvidenceMismatch", "QuoteError", "check_pcr_digest", "verify_pts_quote", "verify_quote"]


class EvidenceMismatch(QuoteError):
    """The quote is genuine, but the PCRs replayed from the evidence are not the quoted ones."""


def check_pcr_digest(selection: PcrSelection, digest: bytes, digest_hash: HashAlgorithm,
                     banks: dict[int, PcrBank]) -> None:
    """``digest`` must be the hash of the selected PCRs of ``banks`` (by TPM_ALG_ID)."""
    values = []
    for alg_id, pcrs in selection.banks:
        bank = banks.get(alg_id)
        if bank is None:
            raise EvidenceMismatch(f"the quote selects PCR bank 0x{alg_id:04x}, of which there is no evidence")
        values += bank.values_of(pcrs)
    if not hmac.compare_digest(pcr_digest(digest_hash, values), digest):
        quoted = ", ".join(f"PCR{p}" for _, pcrs in selection.banks for p in pcrs)
        raise EvidenceMismatch(f"the evidence does not match the quoted PCRs ({quoted})")


def verify_pts_quote(final: SimpleEvidenceFinal, aik, secret: bytes, banks: dict[int, PcrBank]) -> PcrSelection:
    """Check strongSwan's TPM 2.0 Simple Evidence Final against the AIK's
    public key, this attestation's ``secret`` and the replayed ``banks``.

    Returns the quoted PCR selection; raises :class:`QuoteError` (signature,
    format) or :class:`EvidenceMismatch` (PCR digest).
    """
    if final.quote_mode is not QuoteMode.TPM2:
        raise QuoteError(f"quote of kind {final.quote_mode.name} is not a TPM 2.0 quote nac verifies")
    digest_hash = by_pts(final.composite_algorithm)
    if digest_hash is None:
        raise QuoteError(f"composite hash algorithm 0x{int(final.composite_algorithm):04x} is not one nac knows")
    if len(final.clock_info) != CLOCK_INFO_SIZE or len(final.firmware_version) != FIRMWARE_VERSION_SIZE:
        raise QuoteError("the quote's clock or firmware field has the wrong size")
    try:
        selection = PcrSelection.from_bytes(final.pcr_selection)
    except TpmFormatError as err:
        raise QuoteError(f"the quote's PCR selection does not parse: {err}") from None
    attest = Attest(final.qualified_signer, secret, final.clock_info, final.firmware_version, selection,
                    final.pcr_composite)
    verify_signature(aik, attest.to_bytes(), final.quote_signature, digest_hash)
    check_pcr_digest(selection, final.pcr_composite, digest_hash, banks)
    return selection


def verify_quote(aik, attest_bytes: bytes, signature: bytes, signature_hash: HashAlgorithm, *, nonce: bytes,
                 banks: dict[int, PcrBank] | None = None) -> Attest:
    """Check a whole TPMS_ATTEST (``tpm2_quote -m``) and its signature
    (r ‖ s for ECDSA): signed by the AIK, a quote, over ``nonce``, and, with
    ``banks``, of those PCR values (its digest in ``signature_hash``)."""
    verify_signature(aik, attest_bytes, signature, signature_hash)
    try:
        attest = Attest.from_bytes(attest_bytes)
    except TpmFormatError as err:
        raise QuoteError(f"the quote does not parse: {err}") from None
    if attest.magic != TPM_GENERATED_VALUE or attest.type != TPM_ST_ATTEST_QUOTE:
        raise QuoteError("the signed structure is not a quote the TPM generated")
    if not hmac.compare_digest(attest.extra_data, nonce):
        raise QuoteError("the quote is not over this attestation's nonce (stale or replayed)")
    if banks is not None:
        check_pcr_digest(attest.pcr_select, attest.pcr_digest, signature_hash, banks)
    return attest
