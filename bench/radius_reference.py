"""nac, hostapd and FreeRADIUS measured side by side in one run, for the same EAP method.

    python bench/radius_reference.py [--servers nac,hostapd,freeradius] \\
        [--inner md5|pap|mschapv2] [--tls-version 1.3|1.2] [--groups X25519:P-256] \\
        [--key-type ecdsa|rsa] [--fragment-size 1024] [--nac-workers auto|N] \\
        [--concurrency 1,16,64] [--duration 10 | --count N] [--processes 1] [--json]

The reference servers of ../shared/baselines.md, started here on free
loopback UDP ports from configurations written into a temporary directory:

* hostapd's internal RADIUS and EAP server (``driver=none``, ``eap_server=1``,
  ``radius_server_clients``), TLS 1.3 enabled with ``tls_flags``;
* FreeRADIUS (``freeradius -f -d DIR``): Debian's installed configuration
  (/etc/freeradius/3.0) copied into the temporary directory, with its own
  clients, user, ``eap`` module, listener and paths written over the copy;
* nac (``twistd -n nac``, as bench/radius_load.py starts it).

All three use one demo PKI made by :mod:`nac.certs`, the same RADIUS
secret, user, password, TLS version (servers accept only that one) and
EAP-TTLS fragment size.  Every server is loaded in turn, level by level,
by bench/radius_load.py's client (nac's own EAP peer and RADIUS client in
``--processes`` worker processes), so the figures are those of
radius_load.py: completed authentications per second, p50/p99 latency,
RADIUS round trips per authentication and the server's CPU time (utime +
stime of its process tree, /proc/PID/stat) per completed authentication,
the fair figure when the client and the servers share the machine.

Where the servers differ, the client does what all of them accept:

* it sends its TLS 1.3 Finished alone and starts phase 2 on the server's
  next request, as wpa_supplicant does: hostapd 2.10 drops phase 2 data
  that comes with the Finished (``--phase2-with-finished`` for nac's and
  FreeRADIUS's shorter conversation);
* it offers the key exchange groups X25519 and P-256 (``--groups``):
  pyOpenSSL's own OpenSSL would lead with a post-quantum hybrid that nac
  accepts and hostapd and FreeRADIUS, on the system's OpenSSL, do not;
* it starts at most 180 authentications per second against hostapd
  (``--hostapd-max-rate``), whose RADIUS server keeps every finished
  session 5 s and holds 1000 at most: faster, it rejects new ones.

hostapd's RADIUS socket listens on the wildcard address (it has no setting
for the address) and answers only 127.0.0.1.  A server whose program is
missing or does not start is skipped with a one-line reason; every process
started here is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.radius_load import LocalNac, client_context, run_level  # noqa: E402
from nac.certs import ensure_demo_pki  # noqa: E402

IDENTITY, PASSWORD, SECRET = LocalNac.IDENTITY, LocalNac.PASSWORD, LocalNac.SECRET
FREERADIUS_CONF = Path("/etc/freeradius/3.0")
SERVERS = ("nac", "hostapd", "freeradius")
HOSTAPD_SESSIONS = ("hostapd's RADIUS server keeps each finished session 5 s and holds at most 1000 "
                    "(RADIUS_SESSION_MAINTAIN, RADIUS_MAX_SESSION in radius_server.c): above 200/s it "
                    "rejects new conversations")


class BadOption(Exception):
    """An option value found wrong only when used (TLS groups OpenSSL does not know)."""


class ServerUnavailable(Exception):
    """The server cannot be run here: not installed, or it did not start."""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _udp_bound(pid: int, port: int) -> bool:
    """Whether process ``pid`` can see a UDP socket bound to ``port`` (its
    network namespace's /proc/PID/net/udp)."""
    try:
        with open(f"/proc/{pid}/net/udp") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return False
    return any(int(row.split()[1].rsplit(":", 1)[1], 16) == port for row in rows)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the bench process dies, so even
    a SIGKILLed bench leaves no server behind (prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no output"


class Settings:
    """What every server is configured with in one run."""

    def __init__(self, workdir: Path, *, inner: str, tls_version: str, fragment_size: int, key_type: str,
                 nac_workers: str = "auto"):
        self.workdir = workdir
        self.nac_workers = nac_workers
        self.inner = inner
        self.tls_version = tls_version
        self.fragment_size = fragment_size
        pki = ensure_demo_pki(workdir / "pki", "nac.test", key_type=key_type)
        self.ca, self.cert, self.key = pki.ca_cert, pki.server_cert, pki.server_key


class Subprocess:
    """A reference server run in the foreground as a child process."""

    name = ""
    program = ""
    package = ""
    #: the client's pace for this server (authentications started per
    #: second) and its rest between two levels
    max_rate: float | None = None
    settle = 0.0

    def __init__(self, settings: Settings, program: str | None = None):
        self.settings = settings
        self.program = program or self.program
        self.ready_at = 0.0
        self.dir = settings.workdir / self.name
        self.dir.mkdir()
        self.log = self.dir / "output.log"
        self.port = _free_udp_port()
        self.proc: subprocess.Popen | None = None

    def executable(self) -> str:
        # Debian puts both daemons in /usr/sbin, which a user's PATH may lack
        found = shutil.which(self.program) or (
            None if os.sep in self.program else shutil.which(self.program, path="/usr/sbin:/sbin"))
        if found is None:
            raise ServerUnavailable(f"{self.program} is not installed (Debian package {self.package})")
        return found

    def argv(self, executable: str) -> list[str]:
        raise NotImplementedError

    def version(self, executable: str) -> str:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> None:
        executable = self.executable()
        self.version_text = self.version(executable)
        argv = self.argv(executable)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerUnavailable(f"{self.name} exited with {self.proc.returncode} at start: "
                                        f"{_last_line(self.log)} (log: {self.log})")
            if _udp_bound(self.proc.pid, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise ServerUnavailable(f"{self.name} did not listen on UDP port {self.port} within {timeout:.0f} s "
                                f"(log: {self.log})")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Hostapd(Subprocess):
    """hostapd's integrated RADIUS server with its EAP server (hostapd.conf
    ``radius_server_clients``, ``eap_server=1``; ``driver=none`` needs no
    wireless interface)."""

    name, program, package = "hostapd", "hostapd", "hostapd"
    settle = 6.0  # the finished sessions of the previous level expire

    def __init__(self, settings: Settings, program: str | None = None, max_rate: float | None = None):
        super().__init__(settings, program)
        self.max_rate = max_rate

    # phase 2 entries of the EAP user file: the inner EAP method, or the
    # non-EAP TTLS-PAP
    _PHASE2 = {"md5": "MD5", "mschapv2": "MSCHAPV2", "pap": "TTLS-PAP"}

    def version(self, executable: str) -> str:
        done = subprocess.run([executable, "-v"], capture_output=True, text=True)
        return next((ln for ln in (done.stderr + done.stdout).splitlines() if ln.startswith("hostapd v")),
                    "hostapd")

    def argv(self, executable: str) -> list[str]:
        s = self.settings
        users = self.dir / "eap_user"
        # phase 1: any outer identity gets EAP-TTLS; phase 2 ([2]): the user
        users.write_text(f'*\tTTLS\n"{IDENTITY}"\t{self._PHASE2[s.inner]}\t"{PASSWORD}"\t[2]\n')
        clients = self.dir / "radius_clients"
        clients.write_text(f"127.0.0.1/32 {SECRET}\n")
        tls_flags = ("[ENABLE-TLSv1.3][DISABLE-TLSv1.0][DISABLE-TLSv1.1][DISABLE-TLSv1.2]"
                     if s.tls_version == "1.3" else "[DISABLE-TLSv1.0][DISABLE-TLSv1.1][DISABLE-TLSv1.3]")
        conf = self.dir / "hostapd.conf"
        for path in (users, clients):
            path.chmod(0o600)
        conf.write_text("\n".join([
            "driver=none",
            "interface=nacbench0",  # a name only: driver=none touches no interface
            "logger_stdout=-1",
            "logger_stdout_level=2",
            "eap_server=1",
            f"eap_user_file={users}",
            f"ca_cert={s.ca}",
            f"server_cert={s.cert}",
            f"private_key={s.key}",
            f"tls_flags={tls_flags}",
            f"fragment_size={s.fragment_size}",
            f"radius_server_clients={clients}",
            f"radius_server_auth_port={self.port}",
            "radius_server_acct_port=0",
            "",
        ]))
        return [executable, str(conf)]


class FreeRadius(Subprocess):
    """FreeRADIUS 3 with Debian's configuration, copied, and in the copy:
    the client 127.0.0.1, the user, an ``eap`` module doing EAP-TTLS with
    the demo PKI, one auth listener on 127.0.0.1 and paths inside the
    temporary directory (no pid file, log or accounting under /var)."""

    name, program, package = "freeradius", "freeradius", "freeradius"

    def version(self, executable: str) -> str:
        done = subprocess.run([executable, "-v"], capture_output=True, text=True)
        for line in (done.stdout + done.stderr).splitlines():
            if "FreeRADIUS Version" in line:
                return "FreeRADIUS " + line.split("FreeRADIUS Version", 1)[1].split(",", 1)[0].strip()
        return "FreeRADIUS"

    def argv(self, executable: str) -> list[str]:
        if not (FREERADIUS_CONF / "radiusd.conf").is_file():
            raise ServerUnavailable(f"{FREERADIUS_CONF}/radiusd.conf is missing (Debian package "
                                    "freeradius-config)")
        conf = self.dir / "raddb"
        try:
            shutil.copytree(FREERADIUS_CONF, conf, symlinks=True)
        except (OSError, shutil.Error) as exc:
            raise ServerUnavailable(f"cannot copy {FREERADIUS_CONF}: {exc}") from None
        self._write_paths(conf)
        self._write_listeners(conf)
        (conf / "clients.conf").write_text(
            "client bench {\n"
            "\tipaddr = 127.0.0.1\n"
            f"\tsecret = {SECRET}\n"
            "\trequire_message_authenticator = no\n"
            "}\n")
        # `users` links to mods-config/files/authorize
        (conf / "mods-config" / "files" / "authorize").write_text(
            f'"{IDENTITY}"\tCleartext-Password := "{PASSWORD}"\n')
        (conf / "mods-enabled" / "eap").unlink(missing_ok=True)
        (conf / "mods-enabled" / "eap").write_text(self._eap_module())
        for path in conf.rglob("*"):
            if path.is_file() and not path.is_symlink():
                path.chmod(0o640)
        return [executable, "-f", "-d", str(conf)]

    def _write_paths(self, conf: Path) -> None:
        """Logs, pid file and accounting records in the temporary directory;
        no setuid to ``freerad``, who could not read it."""
        var = self.dir / "var"
        for sub in ("log", "run"):
            (var / sub).mkdir(parents=True, exist_ok=True)
        radiusd = conf / "radiusd.conf"
        lines = []
        for line in radiusd.read_text().splitlines():
            key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else ""
            if key == "logdir":
                line = f"logdir = {var / 'log'}"
            elif key == "run_dir":
                line = f"run_dir = {var / 'run'}"
            elif key == "raddbdir":
                line = f"raddbdir = {conf}"
            elif key == "proxy_requests":
                line = "proxy_requests = no"  # else it opens a proxy socket on the wildcard address
            elif key in ("user", "group"):
                continue
            lines.append(line)
        radiusd.write_text("\n".join(lines) + "\n")

    def _write_listeners(self, conf: Path) -> None:
        """The auth listener of the default site on 127.0.0.1 and the free
        port, in place of Debian's wildcard auth/acct listeners (IPv4 and
        IPv6); the inner-tunnel site's test listener (127.0.0.1:18120)
        removed so that several instances can run at once."""
        ours = ("listen {\n\ttype = auth\n\tipaddr = 127.0.0.1\n"
                f"\tport = {self.port}\n}}\n")
        for site, replacement in (("default", ours), ("inner-tunnel", "")):
            path = conf / "sites-available" / site
            try:
                text, found = _replace_listen_sections(path.read_text(), replacement)
            except OSError as exc:
                raise ServerUnavailable(f"cannot read the site {path.name}: {exc.strerror}") from None
            if site == "default" and not found:
                raise ServerUnavailable(f"no listen section in {FREERADIUS_CONF}/sites-available/default "
                                        "to put the bench's listener in")
            path.write_text(text)

    def _eap_module(self) -> str:
        s = self.settings
        inner = {"md5": "md5", "mschapv2": "mschapv2", "pap": "md5"}[s.inner]  # PAP: the peer's choice
        return (
            "eap {\n"
            "\tdefault_eap_type = ttls\n"
            "\ttimer_expire = 60\n"
            "\tignore_unknown_eap_types = no\n"
            "\tmax_sessions = ${max_requests}\n"
            "\tmd5 {\n\t}\n"
            "\tmschapv2 {\n\t}\n"
            "\ttls-config tls-common {\n"
            f"\t\tprivate_key_file = {s.key}\n"
            f"\t\tcertificate_file = {s.cert}\n"
            f"\t\tca_file = {s.ca}\n"
            f"\t\tfragment_size = {s.fragment_size}\n"
            '\t\tcipher_list = "DEFAULT"\n'
            f'\t\ttls_min_version = "{s.tls_version}"\n'
            f'\t\ttls_max_version = "{s.tls_version}"\n'
            '\t\tecdh_curve = ""\n'
            "\t\tcache {\n\t\t\tenable = no\n\t\t}\n"
            "\t\tocsp {\n\t\t\tenable = no\n\t\t}\n"
            "\t}\n"
            "\tttls {\n"
            "\t\ttls = tls-common\n"
            f"\t\tdefault_eap_type = {inner}\n"
            "\t\tcopy_request_to_tunnel = no\n"
            "\t\tuse_tunneled_reply = no\n"
            '\t\tvirtual_server = "inner-tunnel"\n'
            "\t}\n"
            "}\n")


def _replace_listen_sections(text: str, replacement: str) -> tuple[str, int]:
    """``text`` with every ``listen { ... }`` section (braces matched,
    comments skipped) removed and ``replacement`` put where the first was;
    and how many there were."""
    out, i, found = [], 0, 0
    while True:
        start = _find_listen(text, i)
        if start < 0:
            out.append(text[i:])
            return "".join(out), found
        out.append(text[i:start])
        if not found:
            out.append(replacement)
        found += 1
        depth, j = 0, text.index("{", start)
        while j < len(text):
            c = text[j]
            if c == "#":
                j = text.find("\n", j)
                j = len(text) if j < 0 else j
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        i = j + 1


def _find_listen(text: str, i: int) -> int:
    """Offset of the next uncommented line ``listen {`` at or after ``i``; -1 if none."""
    while True:
        at = text.find("listen", i)
        if at < 0:
            return -1
        line_start = text.rfind("\n", 0, at) + 1
        rest = text[at + len("listen"):].lstrip(" \t")
        if not text[line_start:at].strip() and rest.startswith("{"):
            return at
        i = at + 1


class Nac:
    """nac as bench/radius_load.py starts it, with the run's certificate,
    TLS version and fragment size."""

    name = "nac"
    max_rate: float | None = None
    settle = 0.0

    def __init__(self, settings: Settings):
        self.settings = settings
        self.local: LocalNac | None = None
        self.ready_at = 0.0

    def start(self) -> None:
        s = self.settings
        workdir = s.workdir / "nac"
        workdir.mkdir()
        self.local = LocalNac(imvs="", tnc="none", workdir=str(workdir), extra=[
            f"eap.cert={s.cert}", f"eap.key={s.key}",
            f"eap.min_tls_version={s.tls_version}", f"eap.max_tls_version={s.tls_version}",
            f"eap.inner_methods={s.inner}",
            f"radius.fragment_size={s.fragment_size}",
            f"radius.workers={s.nac_workers}",
        ])
        from importlib.metadata import PackageNotFoundError, version
        try:
            self.version_text = f"nac {version('nac')}"
        except PackageNotFoundError:
            self.version_text = "nac"

    @property
    def port(self) -> int:
        return self.local.radius_port

    @property
    def pid(self) -> int:
        return self.local.pid

    @property
    def log(self) -> Path:
        return self.local.server.log

    def alive(self) -> bool:
        return self.local is not None and self.local.server.alive()

    def stop(self) -> None:
        if self.local is not None:
            self.local.stop()



class Terminated(BaseException):
    """SIGTERM: leave through the ``finally`` that stops the servers."""


def _terminate(signum, frame):
    raise Terminated()


def run(ns) -> dict:
    """Start the servers, measure each at every level, stop them all."""
    levels = [int(x) for x in ns.concurrency.split(",") if x]
    method = f"EAP-TTLS/{ns.inner.upper()}"
    report = {"method": method, "tls_version": ns.tls_version, "groups": ns.groups or "default",
              "key_type": ns.key_type,
              "fragment_size": ns.fragment_size, "client_processes": ns.processes,
              "nac_workers": ns.nac_workers,
              "phase2_with_finished": ns.phase2_with_finished,
              "duration_s": None if ns.count else ns.duration, "count": ns.count, "servers": []}
    workdir = Path(tempfile.mkdtemp(prefix="nac-radius-reference-"))
    started = []
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        settings = Settings(workdir, inner=ns.inner, tls_version=ns.tls_version,
                            fragment_size=ns.fragment_size, key_type=ns.key_type, nac_workers=ns.nac_workers)
        args = {"host": "127.0.0.1", "secret": SECRET, "cacert": str(settings.ca), "identity": IDENTITY,
                "password": PASSWORD, "anonymous_identity": ns.anonymous_identity, "inner": ns.inner,
                "tnc": "none", "collectors": [], "fresh": False, "tls_version": ns.tls_version,
                "fragment_size": ns.fragment_size, "timeout": ns.timeout,
                "phase2_with_finished": ns.phase2_with_finished, "groups": ns.groups}
        try:
            client_context(args)  # before any server starts
        except ValueError as exc:
            raise BadOption(str(exc)) from None
        running = []
        for name in ns.servers:
            if name == "hostapd":
                server = Hostapd(settings, ns.hostapd, ns.hostapd_max_rate or None)
            elif name == "freeradius":
                server = FreeRadius(settings, ns.freeradius)
            else:
                server = Nac(settings)
            started.append(server)
            try:
                server.start()
            except ServerUnavailable as exc:
                report["servers"].append({"server": name, "skipped": str(exc)})
                _say(ns, f"{name}: skipped: {exc}")
                continue
            except RuntimeError as exc:  # NacServer's start failure
                report["servers"].append({"server": name, "skipped": str(exc).splitlines()[0]})
                _say(ns, f"{name}: skipped: {str(exc).splitlines()[0]}")
                continue
            entry = {"server": name, "version": server.version_text, "address": f"127.0.0.1:{server.port}",
                     "pid": server.pid, "max_rate": server.max_rate, "levels": []}
            report["servers"].append(entry)
            running.append((server, entry))
            _say(ns, f"{name}: {server.version_text} on 127.0.0.1:{server.port} (pid {server.pid})")
        duration = ns.duration if ns.count is None else 3600.0
        if not ns.json:
            _header()
        # level by level, the servers in turn: a disturbance from outside
        # (a shared machine) then touches every server's figure alike
        for level in levels:
            for server, entry in running:
                if not server.alive():
                    entry.setdefault("error", f"{server.name} exited (log: {server.log})")
                    continue
                time.sleep(max(0.0, server.ready_at - time.monotonic()))
                r = run_level({**args, "port": server.port, "max_rate": server.max_rate}, level, ns.processes,
                              duration, server.pid, ns.count)
                server.ready_at = time.monotonic() + server.settle
                entry["levels"].append(r)
                if not ns.json:
                    _row(entry["server"] + ("*" if server.max_rate else ""), method, ns.tls_version, r)
        if not ns.json and any(server.max_rate for server, _ in running):
            print(f"* at most {ns.hostapd_max_rate:g} authentications started per second: {HOSTAPD_SESSIONS}")
        report["nac_cpu_relative"] = _nac_cpu_relative(report)
        if not ns.json:
            for level, ratios in report["nac_cpu_relative"].items():
                print(f"K={level}: nac's CPU per authentication is "
                      + ", ".join(f"{ratio:.2f} × {name}'s" for name, ratio in ratios.items()))
    finally:
        for server in reversed(started):
            server.stop()
        signal.signal(signal.SIGTERM, previous)
        if ns.keep:
            _say(ns, f"configurations and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


def _nac_cpu_relative(report: dict) -> dict:
    """Level -> {server: nac's CPU per authentication / the server's}."""
    cpu: dict[str, dict[int, float]] = {}
    for entry in report["servers"]:
        for r in entry.get("levels", ()):
            if r["server_cpu_ms_per_authentication"]:
                cpu.setdefault(entry["server"], {})[r["concurrency"]] = r["server_cpu_ms_per_authentication"]
    nac = cpu.pop("nac", {})
    out: dict[int, dict[str, float]] = {}
    for level, mine in nac.items():
        ratios = {name: round(mine / theirs[level], 2) for name, theirs in cpu.items() if level in theirs}
        if ratios:
            out[level] = ratios
    return out


def _say(ns, text: str) -> None:
    print(text, file=sys.stderr if ns.json else sys.stdout, flush=True)


_COLUMNS = ("server", "method", "TLS", "K", "done/s", "p50 ms", "p99 ms", "CPU ms/auth", "round trips", "failed")
_WIDTHS = (10, 17, 3, 4, 8, 8, 8, 11, 11, 6)


def _header() -> None:
    print("  ".join(f"{c:>{w}}" if i > 2 else f"{c:<{w}}" for i, (c, w) in enumerate(zip(_COLUMNS, _WIDTHS))))


def _row(server: str, method: str, tls: str, r: dict) -> None:
    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    cells = (server, method, tls, str(r["concurrency"]), num(r["rate_per_s"], ".1f"), num(r["p50_ms"], ".1f"),
             num(r["p99_ms"], ".1f"), num(r["server_cpu_ms_per_authentication"], ".2f"),
             num(r["round_trips"], ".1f"), str(r["failed"]))
    print("  ".join(f"{c:>{w}}" if i > 2 else f"{c:<{w}}" for i, (c, w) in enumerate(zip(cells, _WIDTHS))),
          flush=True)
    for reason, n in r["failures"].items():
        print(f"{'':>12}{n} × {reason}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--servers", default=",".join(SERVERS),
                   help="servers to measure, in this order (default: %(default)s)")
    p.add_argument("--inner", default="md5", choices=("md5", "mschapv2", "pap"),
                   help="EAP-TTLS phase 2 authentication (default: %(default)s)")
    p.add_argument("--tls-version", default="1.3", choices=("1.2", "1.3"),
                   help="the one TLS version every server accepts (default: %(default)s)")
    p.add_argument("--key-type", default="ecdsa", choices=("ecdsa", "rsa"),
                   help="server certificate key: ECDSA P-256 or RSA-2048 (default: %(default)s)")
    p.add_argument("--nac-workers", default="auto", metavar="auto|N",
                   help="nac's [radius] workers (default: %(default)s, the server's default: one process "
                        "per CPU; 1: one process, as hostapd)")
    p.add_argument("--fragment-size", type=int, default=1024,
                   help="EAP-TTLS fragment size of the servers and the peer (default: %(default)s)")
    p.add_argument("--groups", default="X25519:P-256", metavar="G1:G2",
                   help="TLS key exchange groups the peer offers (default: %(default)s: X25519 is what "
                        "hostapd and FreeRADIUS on Debian 12's OpenSSL 3.0 pick, and TLS 1.2 needs P-256 "
                        "listed for a P-256 certificate; empty: the default of pyOpenSSL's OpenSSL, whose "
                        "post-quantum hybrid key share only nac accepts, in longer messages)")
    p.add_argument("--phase2-with-finished", action=argparse.BooleanOptionalAction, default=False,
                   help="TLS 1.3: the peer starts phase 2 with its Finished (default: %(default)s; "
                        "hostapd 2.10 ignores such data)")
    p.add_argument("--hostapd", default="hostapd", metavar="PROGRAM", help="hostapd to run (default: %(default)s)")
    p.add_argument("--freeradius", default="freeradius", metavar="PROGRAM",
                   help="FreeRADIUS daemon to run (default: %(default)s)")
    p.add_argument("--hostapd-max-rate", type=float, default=180.0, metavar="R",
                   help="authentications started per second against hostapd at most; 0: no limit "
                        f"(default: %(default)s; {HOSTAPD_SESSIONS})")
    p.add_argument("--anonymous-identity", help="outer EAP identity (default: the user name)")
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated levels (default: %(default)s)")
    p.add_argument("--processes", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="client worker processes (default: %(default)s)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per server and level (default: %(default)s)")
    p.add_argument("--count", type=int, metavar="N",
                   help="run exactly N authentications per server and level instead of --duration seconds")
    p.add_argument("--timeout", type=float, default=30.0, help="per-authentication timeout")
    p.add_argument("--keep", action="store_true", help="keep the temporary configurations and logs")
    p.add_argument("--json", action="store_true", help="print JSON (progress on stderr)")
    ns = p.parse_args(argv)
    ns.servers = [s for s in ns.servers.split(",") if s]
    unknown = [s for s in ns.servers if s not in SERVERS]
    if unknown or not ns.servers:
        p.error(f"--servers: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(SERVERS)}")
    try:
        report = run(ns)
    except KeyboardInterrupt:
        print("interrupted; every server started was stopped", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated; every server started was stopped", file=sys.stderr)
        return 143
    except BadOption as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    if ns.json:
        print(json.dumps(report, indent=2))
    measured = [s for s in report["servers"] if "skipped" not in s]
    ok = measured and all(s["levels"] and "error" not in s
                          and all(r["completed"] and not r["failed"] for r in s["levels"]) for s in measured)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
