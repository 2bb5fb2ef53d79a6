"""Installing negotiated CHILD_SAs in the Linux kernel (XFRM), ``[ikev2] kernel = xfrm``.

For each CHILD_SA the responder negotiated, two ESP states (inbound with
our SPI and the initiator-to-responder keys, outbound with the initiator's
SPI and the responder-to-initiator keys) and the tunnel-mode policies that
send matching traffic through them (``out`` from our traffic selectors to
the peer's, ``in`` and ``fwd`` the other way), like strongSwan's
kernel-netlink installs them.  When the IKE SA floated to the NAT-T port,
the states carry ``encap espinudp`` with both ports.

The requests are ``ip xfrm`` commands in iproute2's batch syntax, fed to
``ip -force -batch -`` on standard input so that keys never show up in a
process list; :func:`install_commands` and :func:`remove_commands` are
pure and unit-tested, :class:`XfrmKernel` only hands the text to a runner.
Log lines show the commands with the keys replaced by ``<key>``.

Machines without kernel ESP (``CONFIG_INET_ESP`` off) refuse the states
("Requested AEAD algorithm not found"); :func:`kernel_esp_available`
probes for that in a throw-away network namespace.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from transports.ikev2.message import TrafficSelector
from transports.ikev2.transforms import Algorithms, EncryptionAlgorithm, IntegrityAlgorithm

__all__ = [
    "KernelChildSa",
    "NoKernel",
    "UnsupportedAlgorithm",
    "XfrmKernel",
    "install_commands",
    "kernel_esp_available",
    "masked",
    "remove_commands",
    "run_ip_batch",
]

# Linux crypto API names (strongSwan's kernel_netlink_ipsec tables); AEADs with the ICV size in bits
_AEAD = {
    EncryptionAlgorithm.ENCR_AES_GCM_8: ("rfc4106(gcm(aes))", 64),
    EncryptionAlgorithm.ENCR_AES_GCM_12: ("rfc4106(gcm(aes))", 96),
    EncryptionAlgorithm.ENCR_AES_GCM_16: ("rfc4106(gcm(aes))", 128),
    EncryptionAlgorithm.ENCR_AES_CCM_8: ("rfc4309(ccm(aes))", 64),
    EncryptionAlgorithm.ENCR_AES_CCM_12: ("rfc4309(ccm(aes))", 96),
    EncryptionAlgorithm.ENCR_AES_CCM_16: ("rfc4309(ccm(aes))", 128),
    EncryptionAlgorithm.ENCR_NULL_AUTH_AES_GMAC: ("rfc4543(gcm(aes))", 128),
    EncryptionAlgorithm.ENCR_CHACHA20_POLY1305: ("rfc7539esp(chacha20,poly1305)", 128),
}
_ENC = {
    EncryptionAlgorithm.ENCR_AES_CBC: "cbc(aes)",
    EncryptionAlgorithm.ENCR_AES_CTR: "rfc3686(ctr(aes))",
    EncryptionAlgorithm.ENCR_3DES: "cbc(des3_ede)",
    EncryptionAlgorithm.ENCR_CAMELLIA_CBC: "cbc(camellia)",
    EncryptionAlgorithm.ENCR_NULL: "ecb(cipher_null)",
}
# integrity: (name, truncation in bits)
_AUTH = {
    IntegrityAlgorithm.AUTH_HMAC_MD5_96: ("hmac(md5)", 96),
    IntegrityAlgorithm.AUTH_HMAC_SHA1_96: ("hmac(sha1)", 96),
    IntegrityAlgorithm.AUTH_HMAC_SHA1_160: ("hmac(sha1)", 160),
    IntegrityAlgorithm.AUTH_AES_XCBC_96: ("xcbc(aes)", 96),
    IntegrityAlgorithm.AUTH_AES_CMAC_96: ("cmac(aes)", 96),
    IntegrityAlgorithm.AUTH_HMAC_SHA2_256_128: ("hmac(sha256)", 128),
    IntegrityAlgorithm.AUTH_HMAC_SHA2_384_192: ("hmac(sha384)", 192),
    IntegrityAlgorithm.AUTH_HMAC_SHA2_512_256: ("hmac(sha512)", 256),
}
# strongSwan's default replay window
REPLAY_WINDOW = 32
# key material: 16 bytes and more (SPIs are 4)
_KEY = re.compile(r"0x[0-9a-f]{32,}")


class UnsupportedAlgorithm(ValueError):
    """An ESP algorithm XFRM has no name for (nac never proposes one)."""


class KernelChildSa(Protocol):
    """What the kernel layer reads from a negotiated CHILD_SA
    (``transports.ikev2.sa.ChildSa`` has these attributes)."""

    reqid: int
    local: str
    remote: str
    inbound_spi: bytes
    outbound_spi: bytes
    algorithms: Algorithms
    keys: object  # transports.ikev2.crypto.ChildSaKeys
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    encap: tuple[int, int] | None  # (local port, remote port) when UDP-encapsulated


def _algorithms(algorithms: Algorithms, encryption_key: bytes, integrity_key: bytes) -> str:
    if algorithms.encryption in _AEAD:
        name, icv = _AEAD[algorithms.encryption]
        return f"aead {name} 0x{encryption_key.hex()} {icv}"
    if algorithms.encryption not in _ENC:
        raise UnsupportedAlgorithm(f"encryption algorithm {algorithms.encryption} has no XFRM name")
    parts = [f"enc {_ENC[algorithms.encryption]} 0x{encryption_key.hex() or '0'}"]
    if algorithms.integrity is not None:
        if algorithms.integrity not in _AUTH:
            raise UnsupportedAlgorithm(f"integrity algorithm {algorithms.integrity} has no XFRM name")
        name, bits = _AUTH[algorithms.integrity]
        parts.append(f"auth-trunc {name} 0x{integrity_key.hex()} {bits}")
    return " ".join(parts)


def _state(src: str, dst: str, spi: bytes, child: KernelChildSa, encryption_key: bytes, integrity_key: bytes,
           encap: tuple[int, int] | None) -> str:
    algorithms = child.algorithms
    line = (f"xfrm state add src {src} dst {dst} proto esp spi 0x{spi.hex()} "
            f"{_algorithms(algorithms, encryption_key, integrity_key)} mode tunnel reqid {child.reqid} "
            f"replay-window {REPLAY_WINDOW}")
    if algorithms.esn:
        line += " flag esn"
    if encap is not None:
        line += f" encap espinudp {encap[0]} {encap[1]} 0.0.0.0"
    return line


def _networks(ts: TrafficSelector) -> list[str]:
    return [str(n) for n in ipaddress.summarize_address_range(ts.start, ts.end)]


def _selectors(sources: Iterable[TrafficSelector], destinations: Iterable[TrafficSelector]) -> list[str]:
    out = []
    destinations = list(destinations)
    for src in sources:
        for dst in destinations:
            if src.start.version != dst.start.version:
                continue
            if src.ip_protocol and dst.ip_protocol and src.ip_protocol != dst.ip_protocol:
                continue
            protocol = src if src.ip_protocol else dst
            for s in _networks(src):
                for d in _networks(dst):
                    spec = ""
                    if protocol.ip_protocol:
                        spec = f" proto {protocol.ip_protocol}"
                        if src.ip_protocol and src.start_port == src.end_port:
                            spec += f" sport {src.start_port}"
                        if dst.ip_protocol and dst.start_port == dst.end_port:
                            spec += f" dport {dst.start_port}"
                    out.append(f"src {s} dst {d}{spec}")
    return out


def _policy_lines(child: KernelChildSa, verb: str) -> list[str]:
    lines = []
    out_tmpl = f" tmpl src {child.local} dst {child.remote} proto esp reqid {child.reqid} mode tunnel"
    in_tmpl = f" tmpl src {child.remote} dst {child.local} proto esp reqid {child.reqid} mode tunnel"
    for selector in _selectors(child.local_ts, child.remote_ts):
        lines.append(f"xfrm policy {verb} {selector} dir out" + (out_tmpl if verb == "add" else ""))
    for selector in _selectors(child.remote_ts, child.local_ts):
        for direction in ("in", "fwd"):
            lines.append(f"xfrm policy {verb} {selector} dir {direction}" + (in_tmpl if verb == "add" else ""))
    return lines


def install_commands(child: KernelChildSa, policies: bool = True) -> list[str]:
    """The ``ip -batch`` lines installing ``child``: inbound state, outbound
    state, then the out/in/fwd policies (states first, so no policy ever
    points at a missing state).  A rekeyed CHILD_SA keeps the reqid of the
    one it replaces and needs no policies of its own (``policies=False``):
    the kernel picks the newer states for the existing ones."""
    keys = child.keys
    encap_in = encap_out = None
    if child.encap is not None:
        local_port, remote_port = child.encap
        encap_in, encap_out = (remote_port, local_port), (local_port, remote_port)
    return [
        _state(child.remote, child.local, child.inbound_spi, child, keys.encryption_i, keys.integrity_i, encap_in),
        _state(child.local, child.remote, child.outbound_spi, child, keys.encryption_r, keys.integrity_r,
               encap_out),
        *(_policy_lines(child, "add") if policies else ()),
    ]


def remove_commands(child: KernelChildSa, policies: bool = True) -> list[str]:
    """The ``ip -batch`` lines removing what :func:`install_commands` added,
    policies first (not when another CHILD_SA with the same reqid, its
    rekeyed successor, still uses them)."""
    return [
        *(_policy_lines(child, "delete") if policies else ()),
        f"xfrm state delete src {child.remote} dst {child.local} proto esp spi 0x{child.inbound_spi.hex()}",
        f"xfrm state delete src {child.local} dst {child.remote} proto esp spi 0x{child.outbound_spi.hex()}",
    ]


def masked(lines: Sequence[str]) -> list[str]:
    """The lines (or any text from ``ip``) with key material replaced, for logs."""
    return [_KEY.sub("<key>", line) for line in lines]


def run_ip_batch(lines: Sequence[str], *, netns: str | None = None, timeout: float = 10.0) -> tuple[int, str]:
    """Run ``ip -force -batch -`` with ``lines`` on standard input (blocking:
    call it off the reactor).  Returns (exit status, error output)."""
    command = ["ip"] + (["-n", netns] if netns else []) + ["-force", "-batch", "-"]
    try:
        done = subprocess.run(command, input="\n".join(lines) + "\n", capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return -1, str(exc)
    return done.returncode, done.stderr.strip()


class NoKernel:
    """``kernel = none``: CHILD_SAs are negotiated only."""

    name = "none"

    def install(self, child, policies: bool = True) -> None:
        return None

    def remove(self, child, policies: bool = True) -> None:
        return None


class XfrmKernel:
    """``kernel = xfrm``: hands the requests to ``runner(lines)`` (in the
    service: :func:`run_ip_batch` in a thread; in tests: a recorder).  What
    the runner returns (a Deferred, say) is returned as is."""

    name = "xfrm"

    def __init__(self, runner: Callable[[list[str]], object]) -> None:
        self.runner = runner

    def install(self, child: KernelChildSa, policies: bool = True):
        return self.runner(install_commands(child, policies))

    def remove(self, child: KernelChildSa, policies: bool = True):
        return self.runner(remove_commands(child, policies))


def kernel_esp_available() -> tuple[bool, str]:
    """Whether this kernel can hold ESP states: (yes/no, what it said).

    Tries one AES-GCM state in a network namespace made for the probe
    (needs root and iproute2)."""
    namespace = "nac-xfrm-probe"
    try:
        subprocess.run(["ip", "netns", "add", namespace], capture_output=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"cannot create a network namespace: {exc}"
    try:
        status, error = run_ip_batch(
            ["xfrm state add src 127.0.0.1 dst 127.0.0.1 proto esp spi 0x00000100 "
             f"aead rfc4106(gcm(aes)) 0x{bytes(20).hex()} 128 mode tunnel"], netns=namespace)
        return status == 0, error or "ESP state accepted"
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, timeout=10)
