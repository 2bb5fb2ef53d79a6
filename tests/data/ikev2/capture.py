"""Capture real IKEv2 exchanges with Debian's strongSwan as the initiator.

Run as root:  python tests/data/ikev2/capture.py OUTDIR [SCENARIO ...]

It creates a network namespace, starts ``charon-systemd`` in it (its own
mount namespace with a tmpfs on /run, so it runs beside any other charon),
and plays a scripted IKEv2 responder built from nac's codec and crypto on
127.0.0.1:500/4500 for each scenario: IKE_SA_INIT, then IKE_AUTH with a
pre-shared key, certificates (RFC 7427 signatures both ways) or EAP-MD5.
strongSwan logs at level 4 for IKE and CHD, so the keys it derived are in
its log; they are stored beside the wire bytes and the responder's
ephemeral secrets, so tests can recompute everything offline.

Every scenario writes OUTDIR/<scenario>.json.  The tests import this module
too, to run one scenario live against the installed strongSwan.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.charon import CHARON, SWANCTL, CharonDaemon  # noqa: E402
from transports.ikev2 import crypto  # noqa: E402
from transports.ikev2.fragment import FragmentReassembly, fragment_message  # noqa: E402
from transports.ikev2.message import (  # noqa: E402
    AuthMethod,
    Authentication,
    CertEncoding,
    Certificate,
    CertRequest,
    CfgType,
    Configuration,
    ConfigurationAttribute,
    Eap,
    ExchangeType,
    IDi,
    IDr,
    IkeMessage,
    KeyExchange,
    Nonce,
    Notify,
    NotifyType,
    ProtocolId,
    SecurityAssociation,
    TrafficSelector,
    TSi,
    TSr,
    frame_nat_t,
    unframe_nat_t,
)
from transports.ikev2.transforms import Algorithms, parse_proposals, select_proposal  # noqa: E402

INITIATOR_PORT = 5500
INITIATOR_NAT_PORT = 5501
LOCALHOST = "127.0.0.1"
PSK = "nac-test-psk-0123456789"
EAP_PASSWORD = "carol-eap-password"
PLUGINS = ("random nonce openssl kdf pem pkcs1 pkcs8 x509 pubkey curve25519 socket-default vici "
           "eap-identity eap-md5 kernel-libipsec kernel-netlink")


@dataclass
class Scenario:
    name: str
    ike: str                      # strongSwan IKE proposal of the initiator (and of our responder)
    esp: str
    local_auth: str               # initiator's local.auth
    remote_auth: str              # what the initiator expects of us
    initiator_id: str
    responder_id: str
    initiator_cert: str | None = None   # key name in the PKI
    responder_cert: str | None = None
    responder_pss: bool = False
    fake_nat: bool = False        # NAT_DETECTION_SOURCE_IP that does not match: the initiator floats to 4500
    fragment_size: int = 1280
    virtual_ip: bool = False
    note: str = ""


SCENARIOS = {s.name: s for s in (
    Scenario("psk-x25519-aescbc", "aes256-sha256-x25519", "aes256gcm16", "psk", "psk",
             "carol@strongswan.org", "moon.strongswan.org",
             note="PSK both ways, AES-CBC-256/HMAC-SHA2-256, Curve25519"),
    Scenario("psk-ecp384-aesgcm-natt", "aes256gcm16-prfsha384-ecp384", "aes128-sha256", "psk", "psk",
             "carol@strongswan.org", "moon.strongswan.org", fake_nat=True,
             note="PSK, AES-GCM-16-256 with PRF-SHA384 and ECP-384; our NATD_S_IP says NAT, so IKE_AUTH "
                  "comes on port 4500 with the non-ESP marker"),
    Scenario("psk-modp3072-aescbc", "aes128-sha256-modp3072", "aes128-sha256-modp3072", "psk", "psk",
             "carol@strongswan.org", "moon.strongswan.org",
             note="PSK, AES-CBC-128/HMAC-SHA2-256, MODP-3072; ESP proposal with PFS (DH ignored in IKE_AUTH)"),
    Scenario("ecdsa-ecp256", "aes128gcm16-prfsha256-ecp256", "aes256gcm16", "pubkey", "pubkey",
             "carol@strongswan.org", "moon.strongswan.org", initiator_cert="carol", responder_cert="moon",
             note="certificates both ways, RFC 7427 ECDSA (P-256 initiator, P-384 responder), ECP-256"),
    Scenario("rsa-pss-modp2048-fragmented", "aes256-sha384-modp2048", "aes256gcm16", "rsa/pss-sha256",
             "pubkey", "dave@strongswan.org", "moonrsa.strongswan.org", initiator_cert="dave",
             responder_cert="moonrsa", responder_pss=True, fragment_size=560,
             note="RSA-PSS (RFC 7427) both ways, MODP-2048, fragment_size 560: IKE_AUTH in RFC 7383 "
                  "fragments both ways"),
    Scenario("eap-md5-x25519", "aes256-sha256-x25519", "aes256gcm16", "eap-md5", "pubkey",
             "carol@strongswan.org", "moon.strongswan.org", responder_cert="moon", virtual_ip=True,
             note="EAP-MD5 client (no AUTH in the first IKE_AUTH, AUTH from SK_pi/SK_pr since MD5 makes "
                  "no MSK), gateway certificate (ECDSA P-384), virtual IP by configuration payload"),
)}


# -- PKI -----------------------------------------------------------------------------------


def make_pki(directory: Path) -> dict[str, tuple[object, x509.Certificate]]:
    """A CA and end-entity certificates; keys as PKCS#8 in swanctl's layout."""
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    later = now + datetime.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nac test"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "nac test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(later)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    entities = {
        "carol": (ec.generate_private_key(ec.SECP256R1()), x509.RFC822Name("carol@strongswan.org")),
        "dave": (rsa.generate_private_key(65537, 2048), x509.RFC822Name("dave@strongswan.org")),
        "moon": (ec.generate_private_key(ec.SECP384R1()), x509.DNSName("moon.strongswan.org")),
        "moonrsa": (rsa.generate_private_key(65537, 2048), x509.DNSName("moonrsa.strongswan.org")),
    }
    pki = {"ca": (ca_key, ca)}
    for folder in ("x509", "x509ca", "pkcs8"):
        (directory / folder).mkdir(parents=True, exist_ok=True)
    (directory / "x509ca" / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for serial, (name, (key, san)) in enumerate(entities.items(), 2):
        subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nac test"),
                             x509.NameAttribute(NameOID.COMMON_NAME, san.value)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
                .serial_number(serial).not_valid_before(now).not_valid_after(later)
                .add_extension(x509.SubjectAlternativeName([san]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        pki[name] = (key, cert)
        (directory / "x509" / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / "pkcs8" / f"{name}.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return pki


# -- strongSwan ------------------------------------------------------------------------------


def write_config(directory: Path, scenarios: list[Scenario]) -> None:
    fragment_size = min(s.fragment_size for s in scenarios)
    (directory / "strongswan.conf").write_text(f"""
charon-systemd {{
  load = {PLUGINS}
  port = {INITIATOR_PORT}
  port_nat_t = {INITIATOR_NAT_PORT}
  fragment_size = {fragment_size}
  retransmit_tries = 2
  install_routes = no
  install_virtual_ip = yes
  filelog {{
    capture {{
      path = {directory}/charon.log
      flush_line = yes
      default = 1
      ike = 4
      chd = 4
      cfg = 2
      enc = 1
    }}
  }}
  journal {{
    default = -1
  }}
  plugins {{
    vici {{
      socket = unix://{directory}/charon.vici
    }}
  }}
}}
swanctl {{
  socket = unix://{directory}/charon.vici
}}
""")
    connections = []
    for s in scenarios:
        local = [f"auth = {s.local_auth}", f"id = {s.initiator_id}"]
        if s.initiator_cert:
            local.append(f"certs = {s.initiator_cert}.pem")
        if s.local_auth.startswith("eap"):
            local.append("eap_id = carol")
        remote = [f"auth = {s.remote_auth}", f"id = {s.responder_id}"]
        connections.append(f"""
  {s.name} {{
    version = 2
    local_addrs = {LOCALHOST}
    remote_addrs = {LOCALHOST}
    local_port = {INITIATOR_PORT}
    remote_port = 500
    proposals = {s.ike}
    fragmentation = yes
    {"vips = 0.0.0.0" if s.virtual_ip else ""}
    local {{
      {chr(10).join(local)}
    }}
    remote {{
      {chr(10).join(remote)}
    }}
    children {{
      {s.name} {{
        esp_proposals = {s.esp}
        local_ts = dynamic
        remote_ts = 10.1.0.0/16
        start_action = none
      }}
    }}
  }}""")
    (directory / "swanctl.conf").write_text(f"""
connections {{{''.join(connections)}
}}
secrets {{
  ike-psk {{
    id-1 = carol@strongswan.org
    id-2 = moon.strongswan.org
    secret = "{PSK}"
  }}
  eap-carol {{
    id-1 = carol
    id-2 = carol@strongswan.org
    secret = "{EAP_PASSWORD}"
  }}
}}
""")


class Charon(CharonDaemon):
    """charon-systemd in its own mount namespace (private /run); ``swanctl``
    can also run in the background while this script plays the responder."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, start_timeout=15)

    def swanctl(self, *args: str, wait: bool = True):
        if wait:
            return super().swanctl(*args)
        return subprocess.Popen([SWANCTL, *args, "--uri", f"unix://{self.vici}"], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_SECRET_LINE = re.compile(r"^(\d+)\[(?:IKE|CHD)\] (.+?) => (\d+) bytes @ 0x[0-9a-f]+$")
_HEX_LINE = re.compile(r"^(\d+)\[(?:IKE|CHD)\]\s+\d+: ((?:[0-9A-F]{2} ?)+)")


def logged_secrets(log: str) -> list[tuple[str, bytes]]:
    """The byte strings strongSwan dumped at level 4, in log order."""
    found: list[tuple[str, bytearray, int, str]] = []
    open_by_thread: dict[str, int] = {}
    for line in log.splitlines():
        match = _SECRET_LINE.match(line)
        if match:
            found.append((match.group(2), bytearray(), int(match.group(3)), match.group(1)))
            open_by_thread[match.group(1)] = len(found) - 1
            continue
        match = _HEX_LINE.match(line)
        if match and match.group(1) in open_by_thread:
            index = open_by_thread[match.group(1)]
            found[index][1].extend(bytes.fromhex(match.group(2).replace(" ", "")))
    return [(name, bytes(data[:size])) for name, data, size, _ in found]


# -- the scripted responder ------------------------------------------------------------------


@dataclass
class Capture:
    scenario: Scenario
    records: list[dict] = field(default_factory=list)
    responder: dict = field(default_factory=dict)

    def add(self, direction: str, data: bytes, note: str, port: int) -> None:
        self.records.append({"dir": direction, "layer": "ikev2", "port": port, "hex": data.hex(), "note": note})


class Responder:
    def __init__(self, pki, timeout: float = 20.0) -> None:
        self.pki = pki
        self.timeout = timeout
        self.ike = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.ike.bind((LOCALHOST, 500))
        self.natt = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.natt.bind((LOCALHOST, 4500))

    def close(self) -> None:
        self.ike.close()
        self.natt.close()

    def receive(self, capture: Capture, note: str) -> tuple[bytes, tuple[str, int], socket.socket]:
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{capture.scenario.name}: no {note}")
            readable, _, _ = select.select([self.ike, self.natt], [], [], left)
            for sock in readable:
                data, peer = sock.recvfrom(65535)
                if sock is self.natt:
                    kind, data = unframe_nat_t(data)
                    if kind.value != "ike":
                        continue
                capture.add("c2s", data, note, sock.getsockname()[1])
                return data, peer, sock

    def send(self, capture: Capture, sock: socket.socket, peer, data: bytes, note: str) -> None:
        capture.add("s2c", data, note, sock.getsockname()[1])
        sock.sendto(frame_nat_t(data) if sock is self.natt else data, peer)

    def run(self, scenario: Scenario) -> Capture:
        capture = Capture(scenario)
        configured_ike = parse_proposals([scenario.ike])
        configured_esp = parse_proposals([scenario.esp], ProtocolId.ESP)

        raw1, peer, sock = self.receive(capture, "IKE_SA_INIT request")
        request = IkeMessage.parse(raw1)
        sa = next(p for p in request.payloads if isinstance(p, SecurityAssociation))
        ke = next(p for p in request.payloads if isinstance(p, KeyExchange))
        nonce_i = next(p for p in request.payloads if isinstance(p, Nonce)).data
        chosen = select_proposal(configured_ike, sa.proposals)
        algorithms = Algorithms.from_proposal(chosen)
        assert ke.group == algorithms.dh_group, "strongSwan sent a KE for another group"
        dh = crypto.DiffieHellman.generate(algorithms.dh_group)
        nonce_r = crypto.new_nonce()
        spi_r = crypto.new_spi()
        spi_i = request.spi_i
        here = ("192.0.2.1", 500) if scenario.fake_nat else (LOCALHOST, 500)
        payloads = [
            SecurityAssociation((chosen,)), KeyExchange(dh.group, dh.public_value), Nonce(nonce_r),
            Notify(NotifyType.NAT_DETECTION_SOURCE_IP, crypto.nat_detection_hash(spi_i, spi_r, *here)),
            Notify(NotifyType.NAT_DETECTION_DESTINATION_IP, crypto.nat_detection_hash(spi_i, spi_r, *peer)),
            Notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED), crypto.signature_hash_algorithms_notify(),
        ]
        if scenario.responder_cert or scenario.initiator_cert:
            ca = self.pki["ca"][1]
            spki = ca.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
            payloads.insert(3, CertRequest(CertEncoding.X509_CERT_SIGNATURE, hashlib.sha1(spki).digest()))
        response = IkeMessage(spi_i, spi_r, ExchangeType.IKE_SA_INIT, 0, tuple(payloads), response=True)
        raw2 = response.build()
        self.send(capture, sock, peer, raw2, "IKE_SA_INIT response")
        keys = crypto.derive_ike_sa_keys(algorithms, dh.shared_secret(ke.data), nonce_i, nonce_r, spi_i, spi_r)
        capture.responder = {
            "selected_proposal": SecurityAssociation((chosen,)).build_body().hex(),
            "dh_group": dh.group, "dh_private": dh.private_bytes().hex(), "nonce": nonce_r.hex(),
            "spi": spi_r.hex(), "initiator_spi": spi_i.hex(), "psk": PSK, "eap_password": EAP_PASSWORD,
        }

        message_id = 1
        inner, raw, peer, sock = self.receive_protected(capture, keys, message_id)
        id_i = next(p for p in inner if isinstance(p, IDi))
        octets_i = crypto.signed_octets(raw1, nonce_r, keys.prf, keys.sk_pi, id_i.build_body())
        id_r = IDr.of(scenario.responder_id)
        octets_r = crypto.signed_octets(raw2, nonce_i, keys.prf, keys.sk_pr, id_r.build_body())
        auth_i = next((p for p in inner if isinstance(p, Authentication)), None)
        first_inner = inner

        if scenario.local_auth.startswith("eap"):
            # round 1: our AUTH and EAP-MD5 challenge
            challenge = os.urandom(16)
            eap_request = bytes([1, 1, 0, 22, 4, 16]) + challenge
            reply = [id_r, *self.server_auth(scenario, keys, octets_r), Eap(eap_request)]
            self.respond(capture, keys, scenario, message_id, reply, peer, sock, "IKE_AUTH response (EAP-MD5 request)")
            message_id += 1
            inner, raw, peer, sock = self.receive_protected(capture, keys, message_id)
            eap = next(p for p in inner if isinstance(p, Eap)).data
            expected = hashlib.md5(bytes([1]) + EAP_PASSWORD.encode() + challenge).digest()
            assert eap[4] == 4 and eap[6:22] == expected, "EAP-MD5 response does not match"
            self.respond(capture, keys, scenario, message_id, [Eap(bytes([3, 1, 0, 4]))], peer, sock,
                         "IKE_AUTH response (EAP-Success)")
            message_id += 1
            inner, raw, peer, sock = self.receive_protected(capture, keys, message_id)
            auth_i = next(p for p in inner if isinstance(p, Authentication))
            # EAP-MD5 makes no MSK: the shared secret is SK_pi / SK_pr (RFC 7296 §2.16)
            assert auth_i.data == crypto.shared_key_auth(keys.prf, keys.sk_pi, octets_i), "EAP AUTH mismatch"
            final = [Authentication(AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE,
                                    crypto.shared_key_auth(keys.prf, keys.sk_pr, octets_r))]
        else:
            if scenario.local_auth == "psk":
                assert auth_i.data == crypto.shared_key_auth(keys.prf, PSK.encode(), octets_i), "PSK AUTH mismatch"
            else:
                cert = next(p for p in inner if isinstance(p, Certificate))
                public_key = x509.load_der_x509_certificate(cert.data).public_key()
                crypto.verify_auth(public_key, auth_i, octets_i)
            final = [id_r, *self.server_auth(scenario, keys, octets_r)]

        cp = next((p for p in first_inner if isinstance(p, Configuration)), None)
        if cp is not None:
            final.append(Configuration(CfgType.CFG_REPLY, (
                ConfigurationAttribute.ip4_address("10.10.0.1"),
                ConfigurationAttribute.ip4_dns("10.1.0.53"))))
        esp = next(p for p in first_inner if isinstance(p, SecurityAssociation))
        esp_chosen = select_proposal(configured_esp, esp.proposals, skip_dh=True)
        our_spi = os.urandom(4)
        esp_reply = dataclasses.replace(esp_chosen, spi=our_spi)
        ts_i = next(p for p in first_inner if isinstance(p, TSi))
        ts_r = next(p for p in first_inner if isinstance(p, TSr))
        # narrow TSi to the initiator's address, or to its virtual IP
        ts_i_reply = ts_i.selectors[:1] if cp is None else (TrafficSelector.from_network("10.10.0.1/32"),)
        final += [SecurityAssociation((esp_reply,)), TSi(ts_i_reply), TSr(ts_r.selectors)]
        self.respond(capture, keys, scenario, message_id, final, peer, sock, "IKE_AUTH response (final)")
        capture.responder["esp_spi"] = our_spi.hex()
        capture.responder["next_message_id"] = message_id + 1
        self.keys = keys
        capture.responder["esp_initiator_spi"] = esp_chosen.spi.hex()
        return capture

    def answer_delete(self, capture: Capture) -> None:
        keys = self.keys
        message_id = capture.responder["next_message_id"]
        inner, _raw, peer, sock = self.receive_protected(capture, keys, message_id, "INFORMATIONAL")
        header = IkeMessage(bytes.fromhex(capture.responder["initiator_spi"]),
                            bytes.fromhex(capture.responder["spi"]), ExchangeType.INFORMATIONAL, message_id,
                            response=True)
        self.send(capture, sock, peer, header.seal((), keys.responder_sk), "INFORMATIONAL response (delete)")

    def server_auth(self, scenario: Scenario, keys, octets: bytes) -> list:
        if scenario.remote_auth == "psk":
            return [Authentication(AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE,
                                   crypto.shared_key_auth(keys.prf, PSK.encode(), octets))]
        key, cert = self.pki[scenario.responder_cert]
        return [Certificate(CertEncoding.X509_CERT_SIGNATURE, cert.public_bytes(serialization.Encoding.DER)),
                crypto.sign_auth(key, octets, pss=scenario.responder_pss)]

    def receive_protected(self, capture: Capture, keys, message_id: int, exchange: str = "IKE_AUTH"):
        reassembly = FragmentReassembly()
        while True:
            raw, peer, sock = self.receive(capture, f"{exchange} request {message_id}")
            message = IkeMessage.parse(raw)
            if message.message_id != message_id or message.response:
                continue
            if message.fragment is not None:
                inner = reassembly.add(message, keys.initiator_sk)
                if inner is None:
                    continue
                return inner, raw, peer, sock
            return message.unseal(keys.initiator_sk), raw, peer, sock

    def respond(self, capture: Capture, keys, scenario: Scenario, message_id: int, inner, peer, sock, note) -> None:
        header = IkeMessage(bytes.fromhex(capture.responder["initiator_spi"]),
                            bytes.fromhex(capture.responder["spi"]), ExchangeType.IKE_AUTH, message_id,
                            response=True)
        budget = scenario.fragment_size - 20 - 8 - (4 if sock is self.natt else 0)
        whole = header.seal(inner, keys.responder_sk)
        if len(whole) <= budget:
            self.send(capture, sock, peer, whole, note)
            return
        for number, fragment in enumerate(fragment_message(header, inner, keys.responder_sk, budget), 1):
            self.send(capture, sock, peer, fragment, f"{note}, fragment {number}")


def run_inside(directory: Path, names: list[str]) -> list[Capture]:
    """In the namespace: PKI, config, charon, then every scenario in turn."""
    scenarios = [SCENARIOS[name] for name in names]
    pki = make_pki(directory)
    write_config(directory, scenarios)
    charon = Charon(directory)
    responder = Responder(pki)
    captures = []
    try:
        for scenario in scenarios:
            start = len(charon.log())
            initiate = charon.swanctl("--initiate", "--child", scenario.name, "--timeout", "30", wait=False)
            capture = responder.run(scenario)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                log = charon.log()[start:]
                if re.search(r"CHILD_SA .* established", log) or "failed to establish CHILD_SA" in log:
                    break
                time.sleep(0.2)
            initiate.wait(30)
            log = charon.log()[start:]
            capture.responder["strongswan_log"] = [
                line for line in log.splitlines()
                if re.search(r"established|authentication of|selected proposal|AUTH|failed|received|sending|NAT|"
                             r"parsed|generating|fragment", line) and "=>" not in line]
            capture.responder["strongswan_secrets"] = [[name, value.hex()] for name, value in logged_secrets(log)]
            # strongSwan deletes the IKE SA: answer its INFORMATIONAL request
            terminate = charon.swanctl("--terminate", "--ike", scenario.name, "--timeout", "10", wait=False)
            responder.answer_delete(capture)
            terminate.wait(30)
            captures.append(capture)
    finally:
        responder.close()
        charon.stop()
    return captures


def save(capture: Capture, directory: Path) -> Path:
    s = capture.scenario
    path = directory / f"{s.name}.json"
    document = {
        "scenario": s.name,
        "note": s.note,
        "initiator": f"strongSwan {strongswan_version()} charon-systemd (Debian), swanctl",
        "initiator_config": {"proposals": s.ike, "esp_proposals": s.esp, "local.auth": s.local_auth,
                             "remote.auth": s.remote_auth, "local.id": s.initiator_id, "remote.id": s.responder_id,
                             "fragment_size": s.fragment_size},
        "responder": capture.responder,
        "records": capture.records,
    }
    path.write_text(json.dumps(document, indent=1) + "\n")
    return path


def strongswan_version() -> str:
    try:
        out = subprocess.run([SWANCTL, "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "?"
    match = re.search(r"(\d+\.\d+\.\d+)", out)
    return match.group(1) if match else "?"


def available() -> str | None:
    """Why a live capture cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces)"
    for tool in (CHARON, SWANCTL):
        if not os.path.exists(tool):
            return f"{tool} is not installed"
    if not shutil.which("ip") or not shutil.which("unshare"):
        return "ip/unshare not installed"
    return None


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--inside":
        directory = Path(argv[2])
        # PKI, configuration, vici socket and log: a short path (unix sockets
        # are limited to 108 bytes), removed afterwards
        work = Path(tempfile.mkdtemp(prefix="nac-ikecap-"))
        try:
            for capture in run_inside(work, argv[3:] or list(SCENARIOS)):
                print(save(capture, directory))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    if len(argv) < 2:
        print(__doc__)
        return 2
    directory = Path(argv[1]).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    namespace = f"nac-ikecap-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
        return subprocess.run(["ip", "netns", "exec", namespace, sys.executable, __file__, "--inside",
                               str(directory), *argv[2:]]).returncode
    finally:
        subprocess.run(["ip", "netns", "delete", namespace])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
