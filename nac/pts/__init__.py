"""Remote attestation, the verifying and the measuring side's arithmetic:
pure functions and values, no I/O, no database, no clock.

- :mod:`nac.pts.hashes`: the hash algorithms by their TPM, PTS and IMA names;
- :mod:`nac.pts.nonce`: the PTS D-H nonce exchange and the secret
  assessment value the quote is made over (PTS IF-M binding §3.8);
- :mod:`nac.pts.tpm2`: TPM 2.0 structures (TPMS_ATTEST, TPML_PCR_SELECTION,
  TPMT_SIGNATURE) and quote signature verification;
- :mod:`nac.pts.pcr`: PCR banks and their replay;
- :mod:`nac.pts.eventlog`: the TCG PC Client (crypto-agile) BIOS/UEFI event log;
- :mod:`nac.pts.ima`: the Linux IMA measurement list (``ima``, ``ima-ng``,
  ``ima-sig`` templates) and the boot aggregate.

The PTS attributes that carry all this are :mod:`nac.pa.tcg_pts`; the IMV
that drives an attestation is ``imvs.attestation``, the collector
``nac.client.collectors.attestation``.
"""
