"""RadSec interoperability: FreeRADIUS (Debian's `freeradius`) as a RadSec
proxy in front of nac.  eapol_test speaks UDP RADIUS to FreeRADIUS, which
proxies every Access-Request over RadSec (RFC 6614: TCP, mutual TLS with a
client certificate of nac's ``[radius] radsec_ca``, the secret "radsec") to
nac; EAP-TTLS/PAP with eapol_test's EAP-TNC posture client (IF-TNCCS 1.1:
eapol_test has no PT-EAP) ends in Access-Accept with nac's Filter-Id.

FreeRADIUS runs with a configuration of its own written into a temporary
directory (no module, a home server with ``proto = tcp`` and a ``tls``
block), listening on 127.0.0.1 only."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.trial import unittest

from tests.nacserver import NacServer, free_port
from tests.test_radsec_e2e import nas_certificate

FREERADIUS = "/usr/sbin/freeradius"
SECRET = "proxy-s3cret"
PASSWORD = "K8FW9"


def proxy_config(conf: Path, udp_port: int, radsec_port: int, cert: Path, key: Path, ca: Path) -> None:
    """A FreeRADIUS 3 configuration in ``conf`` that proxies every
    Access-Request from 127.0.0.1 (UDP ``udp_port``) to nac's RadSec port."""
    (conf / "log").mkdir(parents=True)
    (conf / "run").mkdir()
    (conf / "radiusd.conf").write_text(f"""
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = {conf}
sbindir = /usr/sbin
logdir = {conf}/log
raddbdir = {conf}
radacctdir = {conf}/log
name = freeradius
confdir = {conf}
modconfdir = {conf}
certdir = {conf}
cadir = {conf}
run_dir = {conf}/run
db_dir = {conf}
libdir = /usr/lib/freeradius
pidfile = {conf}/run/radiusd.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {{
    destination = stderr
    auth = no
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}
proxy_requests = yes
proxy server {{
    default_fallback = no
}}
thread pool {{
    start_servers = 2
    max_servers = 4
    min_spare_servers = 1
    max_spare_servers = 3
    max_requests_per_server = 0
}}
modules {{
}}
client eapol_test {{
    ipaddr = 127.0.0.1
    secret = {SECRET}
}}
home_server nac {{
    ipaddr = 127.0.0.1
    port = {radsec_port}
    type = auth
    proto = tcp
    secret = radsec
    status_check = none
    response_window = 20
    tls {{
        private_key_file = {key}
        certificate_file = {cert}
        ca_file = {ca}
        fragment_size = 8192
        cipher_list = "DEFAULT"
        connect_timeout = 10
    }}
}}
home_server_pool nac {{
    type = fail-over
    home_server = nac
}}
realm nac {{
    auth_pool = nac
}}
server default {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {udp_port}
    }}
    authorize {{
        update control {{
            &Proxy-To-Realm := "nac"
        }}
    }}
    authenticate {{
    }}
    post-proxy {{
    }}
}}
""")


class FreeRadiusRadsecProxyTests(unittest.TestCase):
    def setUp(self):
        for program in (FREERADIUS, shutil.which("eapol_test") or "/usr/bin/eapol_test"):
            if not os.access(program, os.X_OK):
                raise unittest.SkipTest(f"{program} is not installed (Debian packages freeradius, eapoltest)")
        if not os.path.exists("/etc/tnc_config"):
            raise unittest.SkipTest("eapol_test's TNC client needs /etc/tnc_config (empty: no IMCs); "
                                    "tests/run.sh creates it")
        self.dir = Path(tempfile.mkdtemp(prefix="nac-radsec-freeradius-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    def start_nac(self) -> NacServer:
        self.nas_cert, self.nas_key = nas_certificate(self.dir / "nas-pki", "proxy.example.org")
        self.radsec_port = free_port()
        (self.dir / "nac").mkdir()
        server = NacServer({
            "nac": {"transports": "pt-tls,radius", "imvs": "imvs.swima:SwimaImv"},
            "radius": {"listen": "127.0.0.1", "port": free_port(socket.SOCK_DGRAM), "secret": "unused-udp",
                       "clients": "127.0.0.1/32", "radsec_port": self.radsec_port, "radsec_listen": "127.0.0.1",
                       "radsec_ca": self.dir / "nas-pki" / "ca.pem"},
            "radius-client:edge-proxy": {"radsec_name": "proxy.example.org", "filter_id_allow": "via-radsec"},
            "eap": {"tnc": "eap-tnc"},
            # eapol_test has no IMCs: the SWIMA IMV's no-result recommendation decides
            "imv:swima": {"no_result": "allow"},
        }, workdir=str(self.dir / "nac"))
        server.admin("init")
        server.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
        server.start()
        self.addCleanup(server.stop)
        server.wait_listening(self.radsec_port)
        return server

    def start_freeradius(self, server: NacServer) -> int:
        udp_port = free_port(socket.SOCK_DGRAM)
        conf = self.dir / "raddb"
        proxy_config(conf, udp_port, self.radsec_port, self.nas_cert, self.nas_key, server.ca)
        self.freeradius_log = self.dir / "freeradius.log"
        out = open(self.freeradius_log, "wb")
        self.addCleanup(out.close)
        proc = subprocess.Popen([FREERADIUS, "-f", "-xx", "-l", "stdout", "-d", str(conf)],
                                stdout=out, stderr=subprocess.STDOUT)

        def stop():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.addCleanup(stop)
        deadline = time.monotonic() + 20
        while "Ready to process requests" not in self.freeradius_log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.fail(f"FreeRADIUS did not start:\n{self.freeradius_log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.1)
        return udp_port

    def test_eapol_test_through_a_freeradius_radsec_proxy_is_accepted(self):
        server = self.start_nac()
        udp_port = self.start_freeradius(server)
        conf = self.dir / "eapol_test.conf"
        conf.write_text("network={\n  key_mgmt=WPA-EAP\n  eap=TTLS\n  identity=\"carol\"\n"
                        "  anonymous_identity=\"anonymous\"\n"
                        f"  password=\"{PASSWORD}\"\n  ca_cert=\"{server.ca}\"\n  phase2=\"auth=PAP\"\n}}\n")
        done = subprocess.run(["eapol_test", "-c", str(conf), "-a", "127.0.0.1", "-p", str(udp_port),
                               "-s", SECRET, "-r", "0", "-t", "30"], capture_output=True, text=True, timeout=90)
        out = done.stdout + done.stderr
        context = (out[-2500:] + "\n--- FreeRADIUS ---\n" + self.freeradius_log.read_text(errors="replace")[-3000:]
                   + "\n--- nac ---\n" + server.log_text()[-3000:])
        self.assertEqual(done.returncode, 0, context)
        self.assertTrue(out.rstrip().endswith("SUCCESS"), context)
        self.assertIn("RADIUS message: code=2 (Access-Accept)", out)
        self.assertIn("TNC: TNCCS-Recommendation: 'allow'", out)
        log = server.log_text()
        # the request came over RadSec, from the NAS its certificate names
        self.assertIn("RadSec connection from 127.0.0.1", log)
        self.assertIn("NAS 'edge-proxy'", log)
        self.assertIn("Filter-Id 'via-radsec'", log)
