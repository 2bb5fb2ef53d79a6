"""What the RADIUS end-to-end tests share on the NAS side:

* :class:`NasListener`: a NAS's RFC 5176 Dynamic Authorization Server built
  on the project's RADIUS codec: it checks each CoA / Disconnect request
  with the shared secret, keeps it, and ACKs it, NAKs it with an
  Error-Cause, or drops it;
* :func:`accounting`: the NAS's Accounting-Request, sent by FreeRADIUS's
  ``radclient``;
* :func:`admit_host`: this host admitted through the NAS by nac's own EAP
  client (EAP-TTLS with EAP-TNC / PT-EAP and the OS collector: the host's
  real dpkg package list);
* :func:`import_host_packages`: this host's packages recorded as the
  releases of its product, so that blacklisting one of them makes it
  non-compliant.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

from nac.client.collectors.os import read_os_info
from transports.radius.packet import (
    Attribute,
    Code,
    RadiusPacket,
    request_authenticator_valid,
    sign_response,
)

__all__ = ["NasListener", "accounting", "admit_host", "host_product", "import_host_packages"]


class NasListener:
    """A NAS's Dynamic Authorization Server on a loopback UDP port: checks
    each CoA / Disconnect request with the shared secret, keeps it, and
    ACKs it, or NAKs it with ``nak_cause`` (an Error-Cause), or drops the
    next ``drop`` requests."""

    def __init__(self, secret: bytes, host: str = "127.0.0.1"):
        self.secret = secret
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[tuple[float, bytes, RadiusPacket]] = []
        self.drop = 0
        self.nak_cause: int | None = None
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            packet = RadiusPacket.parse(data)
            if not request_authenticator_valid(packet, self.secret):
                continue
            self.received.append((time.monotonic(), data, packet))
            if self.drop:
                self.drop -= 1
                continue
            coa = packet.code == Code.COA_REQUEST
            if self.nak_cause is None:
                answer = RadiusPacket(Code.COA_ACK if coa else Code.DISCONNECT_ACK, packet.identifier, bytes(16))
            else:  # with its Error-Cause (RFC 5176 §3.5)
                answer = RadiusPacket(Code.COA_NAK if coa else Code.DISCONNECT_NAK, packet.identifier, bytes(16),
                                      (Attribute(101, struct.pack(">I", self.nak_cause)),))
            self.sock.sendto(sign_response(answer, packet.authenticator, self.secret), addr)

    def wait(self, count: int, timeout: float = 10.0) -> list:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received

    def stop(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


def accounting(port: int, secret: str, status: str, session: str, station: str, *, user: str = "carol",
               nas_port: int = 3, host: str = "127.0.0.1") -> str:
    """Send an Accounting-Request with ``radclient``; its output (AssertionError
    unless it received the Accounting-Response)."""
    done = subprocess.run(["radclient", "-x", "-r", "1", "-t", "2", f"{host}:{port}", "acct", secret],
                          capture_output=True, text=True, timeout=30, input=(
        f'Acct-Status-Type = {status}\nAcct-Session-Id = "{session}"\nUser-Name = "{user}"\n'
        f'Calling-Station-Id = "{station}"\nNAS-Port = {nas_port}\n'))
    if "Received Accounting-Response" not in done.stdout:
        raise AssertionError(f"no Accounting-Response:\n{done.stdout}{done.stderr}")
    return done.stdout


def host_product() -> str | None:
    """This host's product as the OS IMV names it ('Debian 12 x86_64'), or
    None when it is no Debian host (no dpkg-query or os-release)."""
    info = read_os_info()
    if shutil.which("dpkg-query") is None or info is None:
        return None
    return f"{info.name} {info.version_string}"


def import_host_packages(server, product: str) -> None:
    """Record this host's installed packages as releases of ``product`` in
    ``server``'s database (``nac-admin packages import``)."""
    listing = server.dir / "dpkg-query.txt"
    listing.write_text(subprocess.run(["dpkg-query", "-W"], capture_output=True, text=True, check=True).stdout)
    server.admin("packages", "import", "--product", product, str(listing))


def admit_host(radius_port: int, secret: str, identity: str, password: str, station: str, cacert,
               env: dict, *, tnc: str = "eap-tnc") -> dict:
    """Admit this host through the NAS with nac's EAP client and its OS
    collector; the client's JSON report (AssertionError when it fails)."""
    done = subprocess.run(
        [sys.executable, "-m", "nac.client.eap_cli", "--server", f"127.0.0.1:{radius_port}", "--secret", secret,
         "--identity", identity, "--password", password, "--tnc", tnc, "--collectors", "os",
         "--calling-station-id", station, "--cacert", str(cacert), "--json"],
        env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"EAP client failed ({done.returncode}): {done.stderr}")
    return json.loads(done.stdout)
