"""hostapd as the real NAS of nac: an 802.1X switch port (``driver=wired``)
whose authentication and accounting server is nac and whose Dynamic
Authorization Server (RFC 5176, ``radius_das_port``) takes nac's CoA and
Disconnect requests.

Two network namespaces made for the test, joined by a veth pair (the wire
between switch port and endpoint): in the first, ``twistd -n nac`` (RADIUS
1812, accounting 1813 on 127.0.0.1) and hostapd on its end of the wire,
with ``auth_server_addr`` / ``acct_server_addr`` pointing at nac and
``radius_das_client`` naming nac; in the second, ``wpa_supplicant -Dwired``
with EAP-TTLS / EAP-MD5 and its IF-TNCCS 1.1 client.  Shown:

* the endpoint's port is authorized (hostapd's control interface, the
  supplicant's status), hostapd's Accounting-Request Start reaches nac with
  hostapd's Acct-Session-Id and the endpoint's MAC as Calling-Station-Id,
  linked to nac's assessment of the endpoint;
* ``nac-admin coa ID --access isolate``: hostapd 2.10's DAS answers
  CoA-NAK with Error-Cause Unsupported-Attribute (401) for the Filter-Id
  (its CoA handles only Hotspot 2.0 Terms-and-Conditions filtering), and
  nac records that answer; the port stays authorized;
* a Disconnect-Request signed with a secret hostapd does not share is
  dropped by hostapd, and nac records "no answer after 2 tries";
* ``nac-admin disconnect ID``: hostapd finds the session by nac's
  Calling-Station-Id, Acct-Session-Id and User-Name, de-authorizes the
  port, sends its accounting Stop and answers Disconnect-ACK, which nac
  records with the accounting session.  hostapd's accounting carries a
  NAS-Port, as a Wi-Fi hostapd's does: nac leaves it out of its requests,
  for hostapd's DAS refuses (NAK Unsupported-Attribute) what it does not
  match on;
* ``wpa_cli reauthenticate`` (as hostapd's periodic re-authentication):
  a second authentication and assessment, the port authorized throughout
  (the supplicant runs with ``fast_reauth=0``: README, "Periodic
  re-assessment").
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from twisted.trial import unittest

from tests.nacserver import NacServer, netns_unavailable, repo_env

SECRET = "hostapd-das-s3cret"
OWN_IP = "192.0.2.99"
WRONG_SECRET = "not-the-das-secret"
PASSWORD = "K8FW9-carol"
STATION = "02:00:00:00:0a:01"
CALLING_STATION_ID = "02-00-00-00-0A-01"  # as hostapd writes it (RADIUS_802_1X_ADDR_FORMAT)
PORT = "swport0"  # hostapd's end of the wire
READY = "RADIUS accounting server listening"


def unavailable() -> str | None:
    for program, package in (("hostapd", "hostapd"), ("hostapd_cli", "hostapd"),
                             ("wpa_supplicant", "wpasupplicant"), ("wpa_cli", "wpasupplicant")):
        if shutil.which(program) is None:
            return f"{program} is not installed (Debian package {package})"
    if not os.path.exists("/etc/tnc_config"):
        return "wpa_supplicant's TNC client needs /etc/tnc_config (tests/run.sh creates it)"
    return netns_unavailable()


def wait_for(what: str, probe, timeout: float = 15.0, interval: float = 0.1, detail=lambda: ""):
    """Poll ``probe`` until it returns something true; that value, or
    AssertionError naming ``what`` (and ``detail()``) after ``timeout``
    seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s\n{detail()}")
        time.sleep(interval)


class Daemon:
    """A program run in a network namespace, its output in a file."""

    def __init__(self, netns: str, argv: list[str], log: Path):
        self.log = log
        self._out = open(log, "wb")
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdout=self._out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


class Environment:
    """The namespaces and the wire, nac, hostapd and wpa_supplicant."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.nas_ns, self.endpoint_ns = f"nac-hapd-{tag}", f"nac-hapd-sta-{tag}"
        self.dir = Path(tempfile.mkdtemp(prefix="nac-hostapd-"))
        self.namespaces: list[str] = []
        self.server: NacServer | None = None
        self.hostapd: Daemon | None = None
        self.supplicant: Daemon | None = None
        self.supplicants = 0
        #: hostapd's Acct-Session-Id -> nac's accounting session, as first seen
        self.rows: dict[str, dict] = {}
        try:
            self._wire()
            self._nac()
            self._hostapd()
            self.start_supplicant()
        except BaseException:
            self.stop()
            raise

    def _wire(self) -> None:
        for netns in (self.nas_ns, self.endpoint_ns):
            made = subprocess.run(["ip", "netns", "add", netns], capture_output=True, text=True)
            if made.returncode != 0:
                raise unittest.SkipTest(f"cannot create a network namespace: {made.stderr.strip()}")
            self.namespaces.append(netns)
            subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "link", "add", PORT, "netns", self.nas_ns, "type", "veth", "peer", "name", "eth0",
                        "netns", self.endpoint_ns], check=True)
        subprocess.run(["ip", "-n", self.endpoint_ns, "link", "set", "eth0", "address", STATION], check=True)
        for netns, link in ((self.nas_ns, PORT), (self.endpoint_ns, "eth0")):
            subprocess.run(["ip", "-n", netns, "link", "set", link, "up"], check=True)

    def _nac(self) -> None:
        (self.dir / "nac").mkdir()
        self.server = NacServer({
            "nac": {"transports": "pt-tls,radius", "imvs": "imvs.os:OsImv"},
            "imv:os": {"non_compliant_major": "isolate", "no_result": "allow"},
            "radius": {"listen": "127.0.0.1", "port": 1812, "acct_port": 1813,
                       "coa_timeout": "0.3", "coa_attempts": "2"},
            "radius-client:sw1": {"address": "127.0.0.1", "secret": SECRET, "coa_port": 3799},
            "eap": {"tnc": "eap-tnc"},
        }, workdir=str(self.dir / "nac"), netns=self.nas_ns, ready=READY)
        self.server.start()  # creating its SQLite database
        self.server.admin("user", "add", "carol", "--password", PASSWORD, "--eap")

    def _hostapd(self) -> None:
        conf = self.dir / "hostapd.conf"
        conf.write_text("\n".join([
            f"interface={PORT}", "driver=wired", f"ctrl_interface={self.dir / 'hostapd'}",
            "ieee8021x=1", "eapol_version=2", "use_pae_group_addr=1",
            # the NAS-IP-Address hostapd reports and its DAS checks: not the
            # address its RADIUS packets leave from (as behind NAT), which nac
            # must not take for it
            f"own_ip_addr={OWN_IP}", "nas_identifier=sw1",
            "auth_server_addr=127.0.0.1", "auth_server_port=1812", f"auth_server_shared_secret={SECRET}",
            "acct_server_addr=127.0.0.1", "acct_server_port=1813", f"acct_server_shared_secret={SECRET}",
            "radius_das_port=3799", f"radius_das_client=127.0.0.1 {SECRET}",
            "radius_das_require_event_timestamp=1",
            # the NAS-Port a Wi-Fi hostapd reports (the station's AID); a
            # wired port has no AID, and hostapd would leave NAS-Port out
            "radius_acct_req_attr=5:d:1", ""]))
        self.hostapd = Daemon(self.nas_ns, ["hostapd", "-d", str(conf)], self.dir / "hostapd.log")
        wait_for("hostapd's control interface answers", lambda: self.hostapd_cli("ping").strip() == "PONG"
                 or not self.hostapd.alive())
        if not self.hostapd.alive():
            raise RuntimeError(f"hostapd exited:\n{self.hostapd.text()[-3000:]}")

    def start_supplicant(self) -> None:
        self.supplicants += 1
        conf = self.dir / f"wpa_supplicant-{self.supplicants}.conf"
        # fast_reauth=0: wpa_supplicant 2.10 re-authenticating with the EAP-TTLS
        # state of an authentication whose phase 2 ended with EAP-TNC Naks the
        # phase 2 EAP-MD5 it is configured for (README, "Periodic re-assessment")
        conf.write_text(f'ctrl_interface={self.dir / "wpa"}\nap_scan=0\nfast_reauth=0\n'
                        f'network={{\n  key_mgmt=IEEE8021X\n'
                        f'  eapol_flags=0\n  eap=TTLS\n  identity="carol"\n  password="{PASSWORD}"\n'
                        f'  ca_cert="{self.server.ca}"\n  phase2="autheap=MD5"\n}}\n')
        self.supplicant = Daemon(self.endpoint_ns, ["wpa_supplicant", "-Dwired", "-ieth0", "-c", str(conf), "-d"],
                                 self.dir / f"wpa_supplicant-{self.supplicants}.log")

    def stop_supplicant(self) -> None:
        if self.supplicant is not None:
            self.supplicant.stop()
            self.supplicant = None

    # -- the control interfaces -----------------------------------------------------------------

    def hostapd_cli(self, *args: str) -> str:
        done = subprocess.run(["hostapd_cli", "-p", str(self.dir / "hostapd"), "-i", PORT, *args],
                              capture_output=True, text=True, timeout=10)
        return done.stdout

    def station(self) -> dict:
        """hostapd's record of the endpoint (``hostapd_cli sta``); {} when it has none."""
        lines = self.hostapd_cli("sta", STATION).splitlines()
        if not lines or lines[0].strip() != STATION:
            return {}
        return dict(line.split("=", 1) for line in lines[1:] if "=" in line)

    def wpa_cli(self, *args: str) -> str:
        done = subprocess.run(["wpa_cli", "-p", str(self.dir / "wpa"), "-i", "eth0", *args],
                              capture_output=True, text=True, timeout=10)
        return done.stdout

    def supplicant_status(self) -> dict:
        return dict(line.split("=", 1) for line in self.wpa_cli("status").splitlines() if "=" in line)

    def admin(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess:
        """``nac-admin`` in nac's namespace (where the NAS's DAS is reachable)."""
        return subprocess.run(self.server.in_netns([sys.executable, "-m", "nac.admin", "--config",
                                                    str(config or self.server.config), *args]),
                              env=repo_env(), capture_output=True, text=True, timeout=60)

    def accounting(self, acct_session_id: str) -> dict | None:
        rows = json.loads(self.server.admin("accounting", "list", "--json", "--limit", "100"))
        return next((r for r in rows if r["acct_session_id"] == acct_session_id), None)

    def stop(self) -> None:
        self.stop_supplicant()
        for part in (self.hostapd, self.server):
            if part is not None:
                part.stop()
        for netns in self.namespaces:
            subprocess.run(["ip", "netns", "delete", netns], capture_output=True)
        self.namespaces = []
        shutil.rmtree(self.dir, ignore_errors=True)


class HostapdNasTests(unittest.TestCase):
    env: Environment | None = None

    def setUp(self):
        cls = type(self)
        why = unavailable()
        if why:
            raise unittest.SkipTest(why)
        if cls.env is None:
            cls.env = Environment()
            atexit.register(cls.env.stop)

    def tearDown(self):
        server = self.env.server
        self.assertTrue(server.alive(), server.log_text()[-4000:])
        self.assertTrue(self.env.hostapd.alive(), self.env.hostapd.text()[-4000:])
        self.assertNotIn(SECRET, server.log_text())
        self.assertNotIn(WRONG_SECRET, server.log_text())

    # -- helpers -----------------------------------------------------------------------------------

    def admitted(self) -> tuple[dict, dict, str]:
        """(hostapd's record of the endpoint, nac's accounting session of it
        as first seen, hostapd's Acct-Session-Id) once the endpoint's port
        is authorized and its accounting Start is in.  A port the NAS
        de-authorized after the supplicant's last authentication ended is
        authenticated again by the supplicant's own re-authentication
        (``wpa_cli reauthenticate``)."""
        env = self.env
        if ("[AUTHORIZED]" not in env.station().get("flags", "")
                and env.supplicant_status().get("EAP state") in ("SUCCESS", "FAILURE")):
            # hostapd ignores EAPOL frames of a station it de-authorized until
            # it forgets it (AP_MAX_INACTIVITY_AFTER_DEAUTH, 5 s)
            wait_for("hostapd forgets the de-authorized station", lambda: not env.station(), timeout=10)
            self.assertEqual(env.wpa_cli("reauthenticate").strip(), "OK")
        station = wait_for("the endpoint's port is authorized at hostapd",
                           lambda: (lambda s: s if "[AUTHORIZED]" in s.get("flags", "") else None)(env.station()),
                           detail=lambda: env.server.log_text()[-3000:] + env.hostapd.text()[-3000:])
        session = station["dot1xAuthSessionId"]
        if session not in env.rows:  # each nac-admin run takes a second: ask once per session
            env.rows[session] = wait_for(f"nac has hostapd's accounting session {session}",
                                         lambda: env.accounting(session))
        return station, env.rows[session], session

    def hostapd_log_after(self, mark: int, text: str, timeout: float = 5.0) -> str:
        """hostapd's log from offset ``mark``, once it holds ``text``."""
        return wait_for(f"hostapd logs {text!r}", lambda: (lambda t: t if text in t else None)(
            self.env.hostapd.text()[mark:]), timeout=timeout)

    # -- tests -------------------------------------------------------------------------------------

    def test_admission_is_accounted_by_hostapd(self):
        station, row, session = self.admitted()
        status = wait_for("wpa_supplicant reports its port authorized",
                          lambda: (lambda s: s if s.get("suppPortStatus") == "Authorized" else None)(
                              self.env.supplicant_status()))
        self.assertEqual((status["EAP state"], status["selectedMethod"]), ("SUCCESS", "21 (EAP-TTLS)"))
        self.assertEqual(station["dot1xAuthSessionUserName"], "carol")
        self.assertEqual(len(session), 16)
        self.assertEqual((row["nas"], row["nas_address"], row["status"], row["user_name"],
                          row["calling_station_id"], row["nas_port"]),
                         ("sw1", "127.0.0.1", "started", "carol", CALLING_STATION_ID, 1))
        self.assertIsNotNone(row["assessment_id"], "the accounting session is not linked to the assessment")
        sessions = json.loads(self.env.server.admin("sessions", "list", "--json", "--limit", "100"))
        [assessment] = [s for s in sessions if s["id"] == row["assessment_id"]]
        self.assertEqual((assessment["identity"], assessment["transport"], assessment["nas"], assessment["access"]),
                         ("carol", "radius", "sw1", "allowed"))
        self.assertIn("sending RADIUS Access-Accept for 'carol' to client 'sw1'", self.env.server.log_text())

    def test_coa_isolate_is_refused_by_hostapd(self):
        station, row, session = self.admitted()
        mark = len(self.env.hostapd.text())
        done = self.env.admin("coa", str(row["id"]), "--access", "isolate")
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertIn("CoA-NAK: Unsupported-Attribute (401)", done.stderr)
        # attribute 11: the Filter-Id of nac's isolate enforcement
        self.hostapd_log_after(mark, "DAS: Unsupported attribute 11 in CoA-Request from 127.0.0.1")
        row = self.env.accounting(session)
        self.assertEqual((row["coa_action"], row["coa_result"], row["status"]),
                         ("coa", "CoA-NAK: Unsupported-Attribute (401)", "started"))
        self.assertIn("[AUTHORIZED]", self.env.station()["flags"])

    def test_das_drops_a_request_with_the_wrong_secret(self):
        station, row, session = self.admitted()
        config = self.env.dir / "nac-wrong-secret.conf"
        text = self.env.server.config.read_text()
        self.assertEqual(text.count(f"secret = {SECRET}\n"), 1)
        config.write_text(text.replace(f"secret = {SECRET}\n", f"secret = {WRONG_SECRET}\n"))
        mark = len(self.env.hostapd.text())
        started = time.monotonic()
        done = self.env.admin("disconnect", str(row["id"]), config=config)
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertIn("no answer after 2 tries", done.stderr)
        self.assertLess(time.monotonic() - started, 10)
        drop = "DAS: Invalid authenticator or Message-Authenticator in packet from 127.0.0.1"
        log = wait_for("hostapd drops both tries", lambda: (lambda t: t if t.count(drop) >= 2 else None)(
            self.env.hostapd.text()[mark:]), timeout=5)
        self.assertEqual(log.count(drop), 2, log)
        self.assertNotIn("DAS: Reply to", log)
        row = self.env.accounting(session)
        self.assertEqual((row["coa_action"], row["coa_result"], row["status"]),
                         ("disconnect", "no answer after 2 tries", "started"))
        self.assertIn("[AUTHORIZED]", self.env.station()["flags"])

    def test_disconnect_deauthorizes_the_station(self):
        station, row, session = self.admitted()
        mark = len(self.env.hostapd.text())
        done = self.env.admin("disconnect", str(row["id"]))
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("Disconnect-ACK", done.stdout)
        log = self.hostapd_log_after(mark, "DAS: Reply to 127.0.0.1")
        # hostapd matched the session by each identification attribute nac sent
        for line in ("RADIUS DAS: Calling-Station-Id match", "RADIUS DAS: Acct-Session-Id match",
                     "RADIUS DAS: User-Name match", f"RADIUS DAS: Found a matching session {STATION} - disconnecting",
                     f"AP-STA-DISCONNECTED {STATION}", f"STA {STATION} RADIUS: stopped accounting session {session}"):
            self.assertIn(line, log)
        self.assertNotIn("[AUTHORIZED]", self.env.station().get("flags", ""))
        # hostapd's accounting Stop (its Acct-Session-Time) reaches nac
        row = wait_for("nac has hostapd's accounting Stop",
                       lambda: (lambda r: r if r["session_time"] is not None else None)(self.env.accounting(session)))
        self.assertEqual((row["coa_action"], row["coa_result"], row["status"]),
                         ("disconnect", "Disconnect-ACK", "stopped"))

    def test_reauthentication_reassesses_the_endpoint(self):
        """``wpa_cli reauthenticate`` (what hostapd's periodic re-authentication,
        asked for by nac's Session-Timeout and Termination-Action, sets off
        too): a second EAP-TTLS / EAP-MD5 / EAP-TNC authentication, a second
        assessment and Access-Accept, the port authorized throughout."""
        station, row, session = self.admitted()
        env = self.env
        accepts = "sending RADIUS Access-Accept for 'carol' to client 'sw1'"

        def assessments():
            sessions = json.loads(env.server.admin("sessions", "list", "--json", "--limit", "100"))
            return {s["id"]: s for s in sessions if s["identity"] == "carol"}

        before, accepted = assessments(), env.server.log_text().count(accepts)
        supplicant, mark = len(env.supplicant.text()), len(env.hostapd.text())
        self.assertEqual(env.wpa_cli("reauthenticate").strip(), "OK")
        wait_for("nac accepts the re-authentication", lambda: env.server.log_text().count(accepts) > accepted,
                 timeout=10, detail=lambda: env.server.log_text()[-3000:])
        log = env.supplicant.text()[supplicant:]
        self.assertNotIn("Phase 2 Request: Nak", log)
        self.assertIn("EAP-TTLS: Start TNC after completed EAP method", log)
        self.assertNotIn("Access-Reject", env.server.log_text())
        [new] = wait_for("nac records a second assessment", lambda: [
            s for i, s in assessments().items() if i not in before])
        self.assertEqual((new["identity"], new["transport"], new["nas"], new["access"]),
                         ("carol", "radius", "sw1", "allowed"))
        hostapd = self.hostapd_log_after(mark, f"STA {STATION} IEEE 802.1X: authorizing port")
        self.assertIn(f"STA {STATION} IEEE 802.1X: received EAPOL-Start from STA", hostapd)
        self.assertNotIn("unauthorizing port", hostapd)
        self.assertIn("[AUTHORIZED]", env.station()["flags"])
        status = wait_for("wpa_supplicant reports its port authorized again",
                          lambda: (lambda s: s if s.get("EAP state") == "SUCCESS" else None)(env.supplicant_status()))
        self.assertEqual((status["suppPortStatus"], status["EAP-TTLSv0 Phase2 method"]), ("Authorized", "EAP-TNC"))
