"""IKEv2 transforms (RFC 7296 §3.3.2), strongSwan proposal strings and
proposal selection.

``parse_proposal("aes256-sha256-x25519", ProtocolId.IKE)`` turns the
proposal syntax of strongSwan's ``proposals``/``esp_proposals`` settings into
a ``Proposal`` (one transform list, several algorithms per type allowed),
with strongSwan's completion rules: an IKE proposal without a PRF gets the
PRFs matching its integrity algorithms, AEAD proposals lose their integrity
algorithms, ESP/AH proposals get "no ESN" unless ESN is named.

``select_proposal(configured, received)`` is the responder's choice,
strongSwan's default (``charon.prefer_configured_proposals = yes``): the
configured proposals are tried in their order, each against every received
proposal in the initiator's order, and within a matching pair the
algorithms are taken in the configured order too.  The result carries the
initiator's proposal number and SPI, one transform per type.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from transports.ikev2.message import KEY_LENGTH_ATTRIBUTE, Proposal, ProtocolId, Transform

__all__ = [
    "AEAD_ALGORITHMS",
    "Algorithms",
    "DhGroup",
    "EncryptionAlgorithm",
    "Esn",
    "IntegrityAlgorithm",
    "PseudorandomFunction",
    "TransformType",
    "describe_proposal",
    "parse_proposal",
    "parse_proposals",
    "select_proposal",
]


class TransformType(IntEnum):
    """IKEv2 Transform Types (RFC 7296 §3.3.2, RFC 9370)."""

    ENCR = 1
    PRF = 2
    INTEG = 3
    DH = 4  # "Key Exchange Method" since RFC 9370
    ESN = 5
    ADDKE1 = 6
    ADDKE2 = 7
    ADDKE3 = 8
    ADDKE4 = 9
    ADDKE5 = 10
    ADDKE6 = 11
    ADDKE7 = 12


class EncryptionAlgorithm(IntEnum):
    """Transform Type 1 IDs (RFC 7296 §3.3.2, IANA)."""

    ENCR_DES_IV64 = 1
    ENCR_DES = 2
    ENCR_3DES = 3
    ENCR_RC5 = 4
    ENCR_IDEA = 5
    ENCR_CAST = 6
    ENCR_BLOWFISH = 7
    ENCR_3IDEA = 8
    ENCR_DES_IV32 = 9
    ENCR_NULL = 11
    ENCR_AES_CBC = 12
    ENCR_AES_CTR = 13
    ENCR_AES_CCM_8 = 14
    ENCR_AES_CCM_12 = 15
    ENCR_AES_CCM_16 = 16
    ENCR_AES_GCM_8 = 18
    ENCR_AES_GCM_12 = 19
    ENCR_AES_GCM_16 = 20
    ENCR_NULL_AUTH_AES_GMAC = 21
    ENCR_CAMELLIA_CBC = 23
    ENCR_CAMELLIA_CTR = 24
    ENCR_CAMELLIA_CCM_8 = 25
    ENCR_CAMELLIA_CCM_12 = 26
    ENCR_CAMELLIA_CCM_16 = 27
    ENCR_CHACHA20_POLY1305 = 28


class PseudorandomFunction(IntEnum):
    """Transform Type 2 IDs (RFC 7296 §3.3.2, RFC 4868, RFC 4615)."""

    PRF_HMAC_MD5 = 1
    PRF_HMAC_SHA1 = 2
    PRF_HMAC_TIGER = 3
    PRF_AES128_XCBC = 4
    PRF_HMAC_SHA2_256 = 5
    PRF_HMAC_SHA2_384 = 6
    PRF_HMAC_SHA2_512 = 7
    PRF_AES128_CMAC = 8


class IntegrityAlgorithm(IntEnum):
    """Transform Type 3 IDs (RFC 7296 §3.3.2, RFC 4868, RFC 4543)."""

    NONE = 0
    AUTH_HMAC_MD5_96 = 1
    AUTH_HMAC_SHA1_96 = 2
    AUTH_DES_MAC = 3
    AUTH_KPDK_MD5 = 4
    AUTH_AES_XCBC_96 = 5
    AUTH_HMAC_MD5_128 = 6
    AUTH_HMAC_SHA1_160 = 7
    AUTH_AES_CMAC_96 = 8
    AUTH_AES_128_GMAC = 9
    AUTH_AES_192_GMAC = 10
    AUTH_AES_256_GMAC = 11
    AUTH_HMAC_SHA2_256_128 = 12
    AUTH_HMAC_SHA2_384_192 = 13
    AUTH_HMAC_SHA2_512_256 = 14


class DhGroup(IntEnum):
    """Transform Type 4 IDs, Diffie-Hellman groups (RFC 7296, 3526, 5903, 5114, 5639, 8031)."""

    NONE = 0
    MODP_768 = 1
    MODP_1024 = 2
    MODP_1536 = 5
    MODP_2048 = 14
    MODP_3072 = 15
    MODP_4096 = 16
    MODP_6144 = 17
    MODP_8192 = 18
    ECP_256 = 19
    ECP_384 = 20
    ECP_521 = 21
    MODP_1024_160 = 22
    MODP_2048_224 = 23
    MODP_2048_256 = 24
    ECP_192 = 25
    ECP_224 = 26
    ECP_224_BP = 27
    ECP_256_BP = 28
    ECP_384_BP = 29
    ECP_512_BP = 30
    CURVE25519 = 31
    CURVE448 = 32


class Esn(IntEnum):
    """Transform Type 5 IDs, Extended Sequence Numbers (RFC 7296 §3.3.2)."""

    NO_ESN = 0
    ESN = 1


AEAD_ALGORITHMS = frozenset({
    EncryptionAlgorithm.ENCR_AES_CCM_8, EncryptionAlgorithm.ENCR_AES_CCM_12, EncryptionAlgorithm.ENCR_AES_CCM_16,
    EncryptionAlgorithm.ENCR_AES_GCM_8, EncryptionAlgorithm.ENCR_AES_GCM_12, EncryptionAlgorithm.ENCR_AES_GCM_16,
    EncryptionAlgorithm.ENCR_NULL_AUTH_AES_GMAC, EncryptionAlgorithm.ENCR_CAMELLIA_CCM_8,
    EncryptionAlgorithm.ENCR_CAMELLIA_CCM_12, EncryptionAlgorithm.ENCR_CAMELLIA_CCM_16,
    EncryptionAlgorithm.ENCR_CHACHA20_POLY1305,
})

_KE_TYPES = frozenset(range(TransformType.DH, TransformType.ADDKE7 + 1)) - {TransformType.ESN}

# -- strongSwan proposal keywords (proposal_keywords_static.txt) -------------------

_E = TransformType.ENCR
_I = TransformType.INTEG
_P = TransformType.PRF
_D = TransformType.DH
_KEYWORDS: dict[str, tuple[int, int, int]] = {
    "null": (_E, EncryptionAlgorithm.ENCR_NULL, 0),
    "3des": (_E, EncryptionAlgorithm.ENCR_3DES, 0),
    "aes": (_E, EncryptionAlgorithm.ENCR_AES_CBC, 128),
    "chacha20poly1305": (_E, EncryptionAlgorithm.ENCR_CHACHA20_POLY1305, 0),
    "sha": (_I, IntegrityAlgorithm.AUTH_HMAC_SHA1_96, 0),
    "sha1": (_I, IntegrityAlgorithm.AUTH_HMAC_SHA1_96, 0),
    "sha1_160": (_I, IntegrityAlgorithm.AUTH_HMAC_SHA1_160, 0),
    "sha256": (_I, IntegrityAlgorithm.AUTH_HMAC_SHA2_256_128, 0),
    "sha2_256": (_I, IntegrityAlgorithm.AUTH_HMAC_SHA2_256_128, 0),
    "sha384": (_I, IntegrityAlgorithm.AUTH_HMAC_SHA2_384_192, 0),
    "sha2_384": (_I, IntegrityAlgorithm.AUTH_HMAC_SHA2_384_192, 0),
    "sha512": (_I, IntegrityAlgorithm.AUTH_HMAC_SHA2_512_256, 0),
    "sha2_512": (_I, IntegrityAlgorithm.AUTH_HMAC_SHA2_512_256, 0),
    "md5": (_I, IntegrityAlgorithm.AUTH_HMAC_MD5_96, 0),
    "md5_128": (_I, IntegrityAlgorithm.AUTH_HMAC_MD5_128, 0),
    "aesxcbc": (_I, IntegrityAlgorithm.AUTH_AES_XCBC_96, 0),
    "aescmac": (_I, IntegrityAlgorithm.AUTH_AES_CMAC_96, 0),
    "prfsha1": (_P, PseudorandomFunction.PRF_HMAC_SHA1, 0),
    "prfsha256": (_P, PseudorandomFunction.PRF_HMAC_SHA2_256, 0),
    "prfsha384": (_P, PseudorandomFunction.PRF_HMAC_SHA2_384, 0),
    "prfsha512": (_P, PseudorandomFunction.PRF_HMAC_SHA2_512, 0),
    "prfmd5": (_P, PseudorandomFunction.PRF_HMAC_MD5, 0),
    "prfaesxcbc": (_P, PseudorandomFunction.PRF_AES128_XCBC, 0),
    "prfaescmac": (_P, PseudorandomFunction.PRF_AES128_CMAC, 0),
    "none": (_D, DhGroup.NONE, 0),
    "modpnone": (_D, DhGroup.NONE, 0),
    "modp768": (_D, DhGroup.MODP_768, 0),
    "modp1024": (_D, DhGroup.MODP_1024, 0),
    "modp1536": (_D, DhGroup.MODP_1536, 0),
    "modp2048": (_D, DhGroup.MODP_2048, 0),
    "modp3072": (_D, DhGroup.MODP_3072, 0),
    "modp4096": (_D, DhGroup.MODP_4096, 0),
    "modp6144": (_D, DhGroup.MODP_6144, 0),
    "modp8192": (_D, DhGroup.MODP_8192, 0),
    "ecp192": (_D, DhGroup.ECP_192, 0),
    "ecp224": (_D, DhGroup.ECP_224, 0),
    "ecp256": (_D, DhGroup.ECP_256, 0),
    "ecp384": (_D, DhGroup.ECP_384, 0),
    "ecp521": (_D, DhGroup.ECP_521, 0),
    "modp1024s160": (_D, DhGroup.MODP_1024_160, 0),
    "modp2048s224": (_D, DhGroup.MODP_2048_224, 0),
    "modp2048s256": (_D, DhGroup.MODP_2048_256, 0),
    "ecp224bp": (_D, DhGroup.ECP_224_BP, 0),
    "ecp256bp": (_D, DhGroup.ECP_256_BP, 0),
    "ecp384bp": (_D, DhGroup.ECP_384_BP, 0),
    "ecp512bp": (_D, DhGroup.ECP_512_BP, 0),
    "curve25519": (_D, DhGroup.CURVE25519, 0),
    "x25519": (_D, DhGroup.CURVE25519, 0),
    "curve448": (_D, DhGroup.CURVE448, 0),
    "x448": (_D, DhGroup.CURVE448, 0),
    "noesn": (TransformType.ESN, Esn.NO_ESN, 0),
    "esn": (TransformType.ESN, Esn.ESN, 0),
}
for _size in (128, 192, 256):
    _KEYWORDS[f"aes{_size}"] = (_E, EncryptionAlgorithm.ENCR_AES_CBC, _size)
    _KEYWORDS[f"aes{_size}ctr"] = (_E, EncryptionAlgorithm.ENCR_AES_CTR, _size)
    _KEYWORDS[f"camellia{_size}"] = (_E, EncryptionAlgorithm.ENCR_CAMELLIA_CBC, _size)
    _KEYWORDS[f"aes{_size}gmac"] = (_E, EncryptionAlgorithm.ENCR_NULL_AUTH_AES_GMAC, _size)
    # ICV length in bytes or bits, and the bare name meaning 16 bytes
    for _mode, _ids in (("gcm", (EncryptionAlgorithm.ENCR_AES_GCM_8, EncryptionAlgorithm.ENCR_AES_GCM_12,
                                 EncryptionAlgorithm.ENCR_AES_GCM_16)),
                        ("ccm", (EncryptionAlgorithm.ENCR_AES_CCM_8, EncryptionAlgorithm.ENCR_AES_CCM_12,
                                 EncryptionAlgorithm.ENCR_AES_CCM_16))):
        for _icv, _id in zip((8, 12, 16), _ids):
            _KEYWORDS[f"aes{_size}{_mode}{_icv}"] = (_E, _id, _size)
            _KEYWORDS[f"aes{_size}{_mode}{_icv * 8}"] = (_E, _id, _size)
        _KEYWORDS[f"aes{_size}{_mode}"] = (_E, _ids[2], _size)
_KEYWORDS["camellia"] = (_E, EncryptionAlgorithm.ENCR_CAMELLIA_CBC, 128)

# strongSwan's integ_prf_map: the PRF an IKE proposal without one gets
_INTEG_PRF = {
    IntegrityAlgorithm.AUTH_HMAC_SHA1_96: PseudorandomFunction.PRF_HMAC_SHA1,
    IntegrityAlgorithm.AUTH_HMAC_SHA1_160: PseudorandomFunction.PRF_HMAC_SHA1,
    IntegrityAlgorithm.AUTH_HMAC_SHA2_256_128: PseudorandomFunction.PRF_HMAC_SHA2_256,
    IntegrityAlgorithm.AUTH_HMAC_SHA2_384_192: PseudorandomFunction.PRF_HMAC_SHA2_384,
    IntegrityAlgorithm.AUTH_HMAC_SHA2_512_256: PseudorandomFunction.PRF_HMAC_SHA2_512,
    IntegrityAlgorithm.AUTH_HMAC_MD5_96: PseudorandomFunction.PRF_HMAC_MD5,
    IntegrityAlgorithm.AUTH_HMAC_MD5_128: PseudorandomFunction.PRF_HMAC_MD5,
    IntegrityAlgorithm.AUTH_AES_XCBC_96: PseudorandomFunction.PRF_AES128_XCBC,
    IntegrityAlgorithm.AUTH_AES_CMAC_96: PseudorandomFunction.PRF_AES128_CMAC,
}

# the order strongSwan writes transforms into a proposal substructure
_WIRE_ORDER = (TransformType.ENCR, TransformType.INTEG, TransformType.PRF, TransformType.DH, TransformType.ESN,
               *range(TransformType.ADDKE1, TransformType.ADDKE7 + 1))


def parse_proposal(text: str, protocol: int = ProtocolId.IKE) -> Proposal:
    """A strongSwan proposal string ("aes256gcm16-prfsha384-ecp384") as one
    ``Proposal`` for ``protocol``; ``ValueError`` saying what is wrong."""
    entries: list[tuple[int, int, int]] = []
    tokens = [t.strip() for t in text.strip().lower().split("-")]
    if not text.strip() or not all(tokens):
        raise ValueError(f"proposal {text!r} is empty or has an empty algorithm")
    for token in tokens:
        entry = _KEYWORDS.get(token)
        if entry is None:
            raise ValueError(f"algorithm '{token}' not recognized")
        if entry not in entries:
            entries.append(entry)
    kinds = {kind for kind, _, _ in entries}
    if protocol == ProtocolId.IKE:
        if TransformType.PRF not in kinds:
            for kind, algorithm, _ in list(entries):
                prf = _INTEG_PRF.get(algorithm) if kind == TransformType.INTEG else None
                if prf is not None and (TransformType.PRF, prf, 0) not in entries:
                    entries.append((TransformType.PRF, prf, 0))
        if not any(kind == TransformType.PRF for kind, _, _ in entries):
            raise ValueError("a PRF algorithm is mandatory in IKE proposals")
        entries = [e for e in entries if not (e[0] == TransformType.DH and e[1] == DhGroup.NONE)]
        if not any(kind == TransformType.DH for kind, _, _ in entries):
            raise ValueError("a DH group is mandatory in IKE proposals")
    else:
        entries = [e for e in entries if e[0] != TransformType.PRF]
    encryption = [algorithm for kind, algorithm, _ in entries if kind == TransformType.ENCR]
    if protocol in (ProtocolId.IKE, ProtocolId.ESP):
        if not encryption:
            raise ValueError(f"an encryption algorithm is mandatory in {ProtocolId(protocol).name} proposals")
        aead = [a in AEAD_ALGORITHMS for a in encryption]
        if any(aead) and not all(aead):
            raise ValueError("classic and combined-mode (AEAD) encryption algorithms can't be contained in "
                             "the same proposal")
        if all(aead):
            entries = [e for e in entries if e[0] != TransformType.INTEG]
        elif protocol == ProtocolId.IKE and not any(kind == TransformType.INTEG for kind, _, _ in entries):
            raise ValueError("an integrity algorithm is mandatory in IKE proposals with classic (non-AEAD) "
                             "encryption algorithms")
    elif protocol == ProtocolId.AH:
        entries = [e for e in entries if e[0] != TransformType.ENCR]
        if not any(kind == TransformType.INTEG for kind, _, _ in entries):
            raise ValueError("an integrity algorithm is mandatory in AH proposals")
    if protocol in (ProtocolId.ESP, ProtocolId.AH) and not any(k == TransformType.ESN for k, _, _ in entries):
        entries.append((TransformType.ESN, Esn.NO_ESN, 0))
    transforms = [Transform.of(kind, algorithm, key_length or None)
                  for wire_kind in _WIRE_ORDER
                  for kind, algorithm, key_length in entries if kind == wire_kind]
    return Proposal(1, protocol, tuple(transforms))


def parse_proposals(texts: Iterable[str], protocol: int = ProtocolId.IKE) -> tuple[Proposal, ...]:
    """Several proposal strings, numbered 1, 2, … as an SA payload needs."""
    proposals = []
    for number, text in enumerate(texts, 1):
        proposal = parse_proposal(text, protocol)
        proposals.append(Proposal(number, protocol, proposal.transforms))
    return tuple(proposals)


# -- selection ---------------------------------------------------------------------


def _algorithms(proposal: Proposal, kind: int) -> list[tuple[int, int]]:
    found = []
    for transform in proposal.transforms:
        if transform.transform_type != kind:
            continue
        # RFC 7296 §3.3.6: a transform with an attribute we do not know is rejected
        if any(a.attribute_type != KEY_LENGTH_ATTRIBUTE or not isinstance(a.value, int)
               for a in transform.attributes):
            continue
        found.append((transform.transform_id, transform.key_length or 0))
    return found


def _select_algorithm(preferred: Proposal, other: Proposal, kind: int) -> tuple[bool, tuple[int, int] | None]:
    ours = _algorithms(preferred, kind)
    theirs = _algorithms(other, kind)
    # no PFS: an ESP/AH proposal without DH matches one that offers NONE
    optional = kind == TransformType.DH and preferred.protocol in (ProtocolId.ESP, ProtocolId.AH)
    if not ours:
        if not theirs:
            return True, None
        return (optional and any(a == 0 for a, _ in theirs)), None
    if not theirs:
        return (optional and any(a == 0 for a, _ in ours)), None
    for algorithm in ours:
        # 1024-65535 is the private range: never chosen with a peer we do not know
        if algorithm[0] < 1024 and algorithm in theirs:
            return True, algorithm
    return False, None


def _select(preferred: Proposal, other: Proposal, skip_dh: bool) -> Proposal | None:
    if preferred.protocol != other.protocol:
        return None
    kinds = sorted({t.transform_type for t in preferred.transforms} | {t.transform_type for t in other.transforms})
    chosen: dict[int, Transform] = {}
    skip_integrity = False
    for kind in kinds:
        if kind == TransformType.INTEG and skip_integrity:
            continue
        if skip_dh and kind in _KE_TYPES:
            continue
        found, algorithm = _select_algorithm(preferred, other, kind)
        if not found:
            return None
        if algorithm is None or (algorithm[0] == 0 and kind != TransformType.ESN):
            continue
        chosen[kind] = Transform.of(kind, algorithm[0], algorithm[1] or None)
        if kind == TransformType.ENCR and algorithm[0] in AEAD_ALGORITHMS:
            skip_integrity = True
    transforms = tuple(chosen[kind] for kind in _WIRE_ORDER if kind in chosen)
    return Proposal(other.number, other.protocol, transforms, other.spi)


def select_proposal(configured: Sequence[Proposal], received: Sequence[Proposal], *,
                    skip_dh: bool = False, prefer_configured: bool = True) -> Proposal | None:
    """The responder's choice among the ``received`` proposals, None if none
    is acceptable (NO_PROPOSAL_CHOSEN).

    ``skip_dh`` ignores DH transforms, for the CHILD_SA of IKE_AUTH, which has
    no KE payload.  With ``prefer_configured=False`` the initiator's order
    wins (strongSwan's ``prefer_configured_proposals = no``).  The chosen
    proposal keeps the received number and SPI: a responder puts its own SPI
    in before it answers with a Child SA proposal.
    """
    if prefer_configured:
        for ours in configured:
            for theirs in received:
                selected = _select(ours, theirs, skip_dh)
                if selected is not None:
                    return selected
        return None
    for theirs in received:
        for ours in configured:
            selected = _select(theirs, ours, skip_dh)
            if selected is not None:
                return Proposal(theirs.number, theirs.protocol, selected.transforms, theirs.spi)
    return None


# -- the negotiated algorithms -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Algorithms:
    """The algorithms of a selected proposal, one per transform type."""

    protocol: int
    encryption: int | None = None
    key_length: int | None = None  # bits, from the Key Length attribute
    integrity: int | None = None
    prf: int | None = None
    dh_group: int | None = None
    esn: bool = False

    @classmethod
    def from_proposal(cls, proposal: Proposal) -> Algorithms:
        """The first transform of each type (a selected proposal has one each)."""
        first: dict[int, Transform] = {}
        for transform in proposal.transforms:
            first.setdefault(transform.transform_type, transform)
        encryption = first.get(TransformType.ENCR)
        integrity = first.get(TransformType.INTEG)
        prf = first.get(TransformType.PRF)
        dh = first.get(TransformType.DH)
        esn = first.get(TransformType.ESN)
        return cls(
            proposal.protocol,
            encryption.transform_id if encryption else None,
            encryption.key_length if encryption else None,
            integrity.transform_id if integrity and integrity.transform_id else None,
            prf.transform_id if prf else None,
            dh.transform_id if dh and dh.transform_id else None,
            bool(esn and esn.transform_id == Esn.ESN),
        )

    @property
    def aead(self) -> bool:
        return self.encryption in AEAD_ALGORITHMS


# -- names as strongSwan logs them ----------------------------------------------------------

_DH_NAMES = {DhGroup.CURVE25519: "CURVE_25519", DhGroup.CURVE448: "CURVE_448"}
_ESN_NAMES = {Esn.NO_ESN: "NO_EXT_SEQ", Esn.ESN: "EXT_SEQ"}
_ENUMS: dict[int, type[IntEnum]] = {
    TransformType.ENCR: EncryptionAlgorithm, TransformType.PRF: PseudorandomFunction,
    TransformType.INTEG: IntegrityAlgorithm, TransformType.DH: DhGroup, TransformType.ESN: Esn,
}


def transform_name(transform: Transform) -> str:
    """"AES_CBC_256", "HMAC_SHA2_256_128", "PRF_HMAC_SHA2_256", "CURVE_25519"."""
    kind = transform.transform_type
    enum = _ENUMS.get(kind, DhGroup if kind in _KE_TYPES else None)
    member = enum._value2member_map_.get(transform.transform_id) if enum else None
    if member is None:
        return f"UNKNOWN_{kind}_{transform.transform_id}"
    if kind == TransformType.ESN:
        return _ESN_NAMES[member]
    if kind in _KE_TYPES:
        return _DH_NAMES.get(member, member.name)
    name = member.name.removeprefix("ENCR_").removeprefix("AUTH_")
    if transform.key_length:
        name += f"_{transform.key_length}"
    return name


def describe_proposal(proposal: Proposal) -> str:
    """strongSwan's notation: "IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519"."""
    protocol = ProtocolId(proposal.protocol).name if proposal.protocol in ProtocolId._value2member_map_ \
        else str(proposal.protocol)
    return f"{protocol}:" + "/".join(transform_name(t) for t in proposal.transforms)
