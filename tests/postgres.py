"""A PostgreSQL server for the database tests.

``NAC_TEST_POSTGRES_URL`` names one (a SQLAlchemy URL; each test works in a
schema of its own there, dropped afterwards).  Without it, when PostgreSQL's
server programs are installed (Debian: ``postgresql``), the tests start a
private server of their own, once per test process: a new cluster in a
temporary directory, reached only through a Unix socket there (no TCP port,
so nothing else on the machine can reach it and nothing of the machine's own
PostgreSQL is touched), stopped and removed when the process ends.  As root
it runs as the ``postgres`` user (or ``nobody``), since PostgreSQL refuses
to run as root.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from functools import lru_cache

POSTGRES_URL_ENV = "NAC_TEST_POSTGRES_URL"
_PORT = 5432  # names the socket file only: the private server listens on no TCP port


def _server_programs() -> str | None:
    """The directory of ``initdb`` and ``pg_ctl``, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb and shutil.which("pg_ctl") else None


class PostgresUnavailable(Exception):
    """Why the database tests have no PostgreSQL (the text is the skip reason)."""


class PostgresCluster:
    """A private PostgreSQL server: a new cluster in a temporary directory,
    reached only through a Unix socket there, which a test may stop and
    start again (a database outage).  :meth:`remove` stops it and deletes
    it; it is also removed when the test process ends."""

    def __init__(self, prefix: str = "nac-test-postgres-"):
        programs = _server_programs()
        if programs is None:
            raise PostgresUnavailable(
                f"PostgreSQL is not installed (Debian: apt-get install postgresql) and {POSTGRES_URL_ENV} "
                "names no server: the PostgreSQL variants of the database tests do not run")
        self.programs = programs
        self.base = tempfile.mkdtemp(prefix=prefix)
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            user = next((name for name in ("postgres", "nobody") if _has_user(name)), None)
            if user is None or shutil.which("runuser") is None:
                shutil.rmtree(self.base, ignore_errors=True)
                raise PostgresUnavailable("running as root with no postgres or nobody user (or no runuser) "
                                          "to run a private PostgreSQL as")
            entry = pwd.getpwnam(user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
            self.run_as = ["runuser", "-u", user, "--"]
        os.chmod(self.base, 0o755)  # the socket is reached by its path
        self.data, self.log = os.path.join(self.base, "data"), os.path.join(self.base, "server.log")
        self._run("initdb", "-D", self.data, "-U", "nac_test", "--auth=trust", "-E", "UTF8")
        self.start()
        atexit.register(self.remove)
        self.url = f"postgresql+psycopg://nac_test@/postgres?host={self.base}&port={_PORT}"

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        done = subprocess.run([*self.run_as, os.path.join(self.programs, program), *args],
                              capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise PostgresUnavailable(f"could not run a private PostgreSQL: {program} said: "
                                      f"{(done.stderr or done.stdout).strip()[-500:]}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-o",
                  f"-c listen_addresses='' -k {self.base} -p {_PORT} -c fsync=off -c full_page_writes=off "
                  "-c synchronous_commit=off -c max_connections=200", "start")

    def running(self) -> bool:
        done = subprocess.run([*self.run_as, os.path.join(self.programs, "pg_ctl"), "-D", self.data, "status"],
                              capture_output=True, text=True, timeout=60)
        return done.returncode == 0

    def ensure_running(self) -> None:
        """Start it again should a test have left it stopped."""
        if os.path.isdir(self.data) and not self.running():
            self.start()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` ends the sessions and their transactions
        (a restart), ``immediate`` as a crash would."""
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def remove(self) -> None:
        if os.path.isdir(self.base):
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "stop", check=False)
            shutil.rmtree(self.base, ignore_errors=True)


@lru_cache(maxsize=1)
def private_cluster() -> PostgresCluster:
    """This test process's private PostgreSQL server (made once), which a
    test may stop and start; PostgresUnavailable when there is none, or when
    NAC_TEST_POSTGRES_URL names a server of someone else's instead."""
    if os.environ.get(POSTGRES_URL_ENV):
        raise PostgresUnavailable(f"{POSTGRES_URL_ENV} names a server this test must not stop and start")
    return PostgresCluster()


def _private_server() -> str:
    return private_cluster().url


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def postgres_url() -> str:
    """The URL of the tests' PostgreSQL database; PostgresUnavailable (with
    the reason to skip) when there is none."""
    return os.environ.get(POSTGRES_URL_ENV) or _private_server()
