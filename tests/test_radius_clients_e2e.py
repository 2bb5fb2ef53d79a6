"""Per-NAS RADIUS clients against the real server (`twistd -n nac`, two
RADIUS processes, listening on `::` so IPv4 NASes arrive as IPv4-mapped
addresses): NASes on 127.0.0.1, 127.0.0.2 and ::1 with secrets of their own
(one read from a file), and an old-style `[radius] clients` network with
`[radius] secret`.  The real `nac-eap-client` (EAP-TTLS, PT-EAP posture)
and FreeRADIUS's `radclient` authenticate through each; a NAS using another
NAS's secret is dropped; the log and the session records name the NAS.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import time

from twisted.trial import unittest

from tests.nacserver import NacServer, free_port, repo_env
from transports.radius.packet import Attribute, AttributeType, Code, RadiusPacket, sign_request, verify_response

PASSWORD = "carol's password at the NAS"
SW1, SW2, V6, LEGACY = "switch-one-secret", "switch-two-secret", "ipv6-nas-secret", "the-old-shared-secret"
EAP_IDENTITY_CAROL = bytes.fromhex("0201000a01") + b"carol"


class PerNasClientsTests(unittest.TestCase):
    server: NacServer | None = None
    radius_port = 0

    def setUp(self):
        cls = type(self)
        if cls.server is None:
            cls.radius_port = free_port(socket.SOCK_DGRAM)
            server = NacServer({
                "nac": {"transports": "pt-tls,radius", "imvs": "imvs.scanner:ScannerImv"},
                # an open-port policy with no port listed: every host is compliant
                "imv:scanner": {"closed_port_policy": "no"},
                "radius": {"listen": "::", "port": cls.radius_port, "workers": "2",
                           "secret": LEGACY, "clients": "127.0.0.3"},
                "radius-client:sw1": {"address": "127.0.0.1", "secret": SW1},
                "radius-client:sw2": {"address": "::ffff:127.0.0.2", "secret_file": "SECRET_FILE",
                                      "filter_id_allow": "gw-allow"},
                "radius-client:v6": {"address": "::1/128", "secret": V6},
                "eap": {"tnc": "pt-eap"},
            }, ready="all 1 RADIUS worker processes are accepting")
            secret_file = server.dir / "sw2.secret"
            secret_file.write_text(SW2 + "\n")
            secret_file.chmod(0o600)
            server.config.write_text(server.config.read_text().replace("SECRET_FILE", str(secret_file)))
            server.admin("init")
            server.admin("user", "add", "carol", "--password", PASSWORD)
            cls.server = server.start()
            atexit.register(server.stop)
            atexit.register(shutil.rmtree, server.dir, True)

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])
        log = self.server.log_text()
        for secret in (SW1, SW2, V6, LEGACY):
            self.assertNotIn(secret, log)

    # -- clients -------------------------------------------------------------------------------

    def eap_client(self, server: str, secret: str, source: str | None = None, *extra: str):
        argv = [sys.executable, "-m", "nac.client.eap_cli", "--server", server, "--secret", secret,
                "--identity", "carol", "--password", PASSWORD, "--inner", "pap", "--collectors", "scanner",
                "--cacert", str(self.server.ca), "--json", *extra]
        if source is not None:
            argv += ["--source", source]
        return subprocess.run(argv, env=repo_env(), capture_output=True, text=True, timeout=60)

    def radclient(self, server: str, secret: str, command: str, attributes: str) -> subprocess.CompletedProcess:
        if shutil.which("radclient") is None:
            raise unittest.SkipTest("radclient is not installed (Debian package freeradius-utils)")
        return subprocess.run(["radclient", "-x", "-r", "1", "-t", "2", server, command, secret],
                              input=attributes, capture_output=True, text=True, timeout=30)

    def newest_session(self) -> dict:
        return json.loads(self.server.admin("sessions", "list", "--limit", "1", "--json"))[0]

    # -- tests ---------------------------------------------------------------------------------

    def test_each_nas_authenticates_with_its_own_secret(self):
        port = self.radius_port
        for server, secret, source, nas, address, filter_id in (
                (f"127.0.0.1:{port}", SW1, None, "sw1", "127.0.0.1", "allow"),
                (f"127.0.0.1:{port}", SW2, "127.0.0.2", "sw2", "127.0.0.2", "gw-allow"),
                (f"[::1]:{port}", V6, None, "v6", "::1", "allow"),
                (f"127.0.0.1:{port}", LEGACY, "127.0.0.3", None, "127.0.0.3", "allow")):
            done = self.eap_client(server, secret, source)
            self.assertEqual(done.returncode, 0, done.stderr + self.server.log_text()[-3000:])
            radius = json.loads(done.stdout)["radius"]
            self.assertEqual((radius["code"], radius["mppe_keys_ok"], radius["attributes"]["Filter-Id"]),
                             ("Access-Accept", True, filter_id), nas)
            session = self.newest_session()
            self.assertEqual((session["transport"], session["nas"], session["peer_address"], session["identity"]),
                             ("radius", nas, address, "carol"))
            self.assertIn(f"sending RADIUS Access-Accept for 'carol' to client '{nas or address}'",
                          self.server.log_text())
        listing = self.server.admin("sessions", "list", "--limit", "4").splitlines()
        self.assertEqual(listing[0].split()[5:7], ["TRANSPORT", "NAS"])

    def test_radclient_through_each_nas(self):
        port = self.radius_port
        for source, secret in (("127.0.0.1", SW1), ("127.0.0.2", SW2), ("127.0.0.3", LEGACY)):
            sent = f"Message-Authenticator = 0x00\nPacket-Src-IP-Address = {source}\n"
            done = self.radclient(f"127.0.0.1:{port}", secret, "status", sent)
            self.assertIn("Received Access-Accept", done.stdout, done.stdout + done.stderr)
            eap = (f"User-Name = carol\nEAP-Message = 0x{EAP_IDENTITY_CAROL.hex()}\n"
                   f"Message-Authenticator = 0x00\nPacket-Src-IP-Address = {source}\n")
            done = self.radclient(f"127.0.0.1:{port}", secret, "auth", eap)
            self.assertIn("Received Access-Challenge", done.stdout, done.stdout + done.stderr)
        done = self.radclient(f"[::1]:{port}", V6, "status", "Message-Authenticator = 0x00\n")
        self.assertIn("Received Access-Accept", done.stdout, done.stdout + done.stderr)

    def test_a_nas_using_another_nas_secret_is_dropped(self):
        port = self.radius_port
        done = self.radclient(f"127.0.0.1:{port}", SW1, "status",
                              "Message-Authenticator = 0x00\nPacket-Src-IP-Address = 127.0.0.2\n")
        self.assertNotIn("Received", done.stdout, done.stdout)
        self.assertIn("No reply from server", done.stdout + done.stderr)
        done = self.eap_client(f"127.0.0.1:{port}", SW1, "127.0.0.2", "--timeout", "3", "--retransmit", "0.5")
        self.assertEqual(done.returncode, 6, done.stderr)
        self.assertEqual(len(done.stderr.splitlines()), 1, done.stderr)
        # the old shared secret is no good for a named NAS either
        done = self.eap_client(f"127.0.0.1:{port}", LEGACY, "127.0.0.2", "--timeout", "3", "--retransmit", "0.5")
        self.assertEqual(done.returncode, 6, done.stderr)
        self.assertIn("from client 'sw2' (127.0.0.2) discarded: bad Message-Authenticator", self.server.log_text())

    def test_unknown_nas_is_dropped_with_one_line_naming_its_address(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.4", 0))
            for _ in range(3):
                sock.sendto(self.access_request(SW1, os.urandom(16))[1], ("127.0.0.1", self.radius_port))
            where = f"127.0.0.4[{sock.getsockname()[1]}]"
        deadline = time.monotonic() + 10
        while f"unknown client {where}" not in self.server.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        lines = [line for line in self.server.log_text().splitlines() if f"unknown client {where}" in line]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("discarded: no [radius-client:NAME] address nor [radius] clients holds it", lines[0])

    def access_request(self, secret: str, authenticator: bytes) -> tuple[RadiusPacket, bytes]:
        packet = RadiusPacket(Code.ACCESS_REQUEST, authenticator[0], authenticator, (
            Attribute(AttributeType.USER_NAME, b"carol"), Attribute(AttributeType.EAP_MESSAGE, EAP_IDENTITY_CAROL),
            Attribute(AttributeType.MESSAGE_AUTHENTICATOR, bytes(16))))
        return packet, sign_request(packet, secret.encode())

    def test_both_processes_know_every_nas(self):
        """A new conversation goes to the process its Request Authenticator
        selects (its first byte modulo the processes): requests made for each
        process from each NAS are answered, signed with that NAS's secret,
        with a State naming the process that answered."""
        for source, secret in (("127.0.0.1", SW1), ("127.0.0.2", SW2), ("127.0.0.3", LEGACY)):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind((source, 0))
                sock.settimeout(5.0)
                for process in (0, 1):
                    authenticator = bytes(((os.urandom(1)[0] & 0xFE) | process,)) + os.urandom(15)
                    request, data = self.access_request(secret, authenticator)
                    sock.sendto(data, ("127.0.0.1", self.radius_port))
                    reply = verify_response(sock.recv(4096), request.authenticator, secret.encode())
                    self.assertEqual(reply.code, Code.ACCESS_CHALLENGE, source)
                    self.assertEqual(reply.get(AttributeType.STATE)[0], process, source)
