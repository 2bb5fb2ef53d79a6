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


@lru_cache(maxsize=1)
def _private_server() -> str:
    programs = _server_programs()
    if programs is None:
        raise PostgresUnavailable(
            f"PostgreSQL is not installed (Debian: apt-get install postgresql) and {POSTGRES_URL_ENV} names "
            "no server: the PostgreSQL variants of the database tests do not run")
    base = tempfile.mkdtemp(prefix="nac-test-postgres-")
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = next((name for name in ("postgres", "nobody") if _has_user(name)), None)
        if user is None or shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root with no postgres or nobody user (or no runuser) "
                                      "to run a private PostgreSQL as")
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
        run_as = ["runuser", "-u", user, "--"]
    os.chmod(base, 0o755)  # the socket is reached by its path
    data, log = os.path.join(base, "data"), os.path.join(base, "server.log")

    def run(*command: str) -> None:
        done = subprocess.run([*run_as, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise PostgresUnavailable(f"could not start a private PostgreSQL: {command[0]} said: "
                                      f"{(done.stderr or done.stdout).strip()[-500:]}")

    run(os.path.join(programs, "initdb"), "-D", data, "-U", "nac_test", "--auth=trust", "-E", "UTF8")
    run(os.path.join(programs, "pg_ctl"), "-D", data, "-l", log, "-w", "-o",
        f"-c listen_addresses='' -k {base} -p {_PORT} -c fsync=off -c full_page_writes=off "
        "-c synchronous_commit=off -c max_connections=200", "start")

    def stop() -> None:
        subprocess.run([*run_as, os.path.join(programs, "pg_ctl"), "-D", data, "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)

    atexit.register(stop)
    return f"postgresql+psycopg://nac_test@/postgres?host={base}&port={_PORT}"


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
