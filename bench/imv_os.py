"""OS IMV bench: server CPU per OS assessment with installed packages checked against a large policy database.

    python bench/imv_os.py [--db URL] [--versions 100000] [--installed 3000] [--count 40] \\
        [--updates security|all|none] [--target-ms 50] [--json] [--check]

The policy database is built first: a migrated database (a temporary SQLite
file, or with ``--db`` any database nac supports; a PostgreSQL URL gets a
private schema dropped afterwards) holding ``--versions`` releases of some
30,000 Debian-like packages for one product, imported the way
``nac-admin packages import`` does it, a share of them security releases
and some blacklisted (single releases and whole packages).

An endpoint with ``--installed`` packages (mostly current, some outdated,
a few blacklisted or unknown) is then assessed by the real OsImv in a real
TnccsCore with a started PolicyStore, as the server runs it.  nac's TNC
client with its OS collector (reading fixture files: os-release, /proc,
a dpkg status database) speaks PB-TNC with the server once; its batches are
recorded and then replayed to the server for every timed assessment, so
that the figures are the server's alone: PB-TNC parsing, the IMV, the
package check in the store's thread, the session, device, measurement and
decision writes.  Every replay must reach the recorded decision.

Figures: median and p95 wall time of one assessment (first client batch to
the last database write done), CPU time per assessment (process time of
all threads, ``time.process_time()`` over the run divided by the count;
with PostgreSQL also its backends' CPU from ``/proc``), SQL statements per
assessment (a ``before_cursor_execute`` listener; the package lookups
among them), and the package check alone (query and judging, as the
store's thread runs it).  ``--check`` exits 1 when the CPU time per
assessment misses ``--target-ms``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402
from twisted.internet import defer  # noqa: E402

from nac.db.store import PolicyStore  # noqa: E402

PRODUCT = "Debian 12 x86_64"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- a Debian-like package policy ----------------------------------------------------------

_SYLLABLES = ("ac", "al", "an", "ar", "at", "ba", "be", "bi", "bo", "bz", "ca", "ce", "ch", "co",
              "cu", "da", "de", "di", "do", "el", "en", "er", "ex", "fa", "fi", "fo", "ga", "ge",
              "gi", "gl", "go", "gr", "gtk", "ha", "he", "hi", "id", "in", "io", "ja", "ka", "ke",
              "ki", "kr", "la", "le", "li", "lo", "lu", "ma", "me", "mi", "mo", "mu", "na", "ne",
              "ni", "no", "nu", "ob", "od", "ol", "om", "on", "op", "or", "os", "ox", "pa", "pe",
              "pi", "po", "pr", "py", "qt", "ra", "re", "ri", "ro", "ru", "sa", "se", "si", "so",
              "sq", "st", "su", "ta", "te", "ti", "to", "tr", "tu", "ub", "ul", "um", "un", "ur",
              "va", "ve", "vi", "vo", "wa", "we", "xa", "xe", "xml", "yo", "za", "ze", "zo")
_PREFIXES = (("", 40), ("lib", 30), ("python3-", 8), ("node-", 5), ("golang-github-", 4),
             ("librust-", 4), ("ruby-", 3), ("r-cran-", 2), ("fonts-", 1), ("gir1.2-", 1),
             ("texlive-", 1), ("php-", 1))
_SUFFIXES = (("", 50), ("-dev", 15), ("-doc", 6), ("-common", 5), ("-data", 4), ("-bin", 3),
             ("-utils", 3), ("1", 4), ("2", 2), ("6", 1), ("t64", 1), ("-dbgsym", 2),
             ("-tools", 2), ("-perl", 1))


def _weighted(rng: random.Random, table) -> str:
    return rng.choices([v for v, _ in table], [w for _, w in table])[0]


def package_name(rng: random.Random) -> str:
    stem = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
    if rng.random() < 0.2:
        stem += rng.choice(("-", ".", "")) + str(rng.randint(0, 12))
    if rng.random() < 0.15:
        stem += "-" + "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3)))
    return _weighted(rng, _PREFIXES) + stem + _weighted(rng, _SUFFIXES)


def package_releases(rng: random.Random) -> list[tuple[str, bool]]:
    """(release, security) of one package on the product, oldest first: an
    upstream release with its Debian revision, then stable updates
    (``+deb12uN``, security ones among them), binNMUs, a new upstream."""
    epoch = rng.choice(("1:", "2:")) if rng.random() < 0.1 else ""
    if rng.random() < 0.1:
        upstream = f"{rng.randint(2015, 2023)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    else:
        upstream = ".".join(str(rng.randint(0, 30)) for _ in range(rng.randint(2, 3)))
    upstream += rng.choice(("", "", "", "+dfsg", "+ds", "+really" + upstream))
    revision = str(rng.randint(1, 12))
    releases = [(f"{epoch}{upstream}-{revision}", False)]
    updates = rng.choices((0, 1, 2, 3, 4, 5, 6, 7), (35, 25, 15, 9, 6, 4, 3, 3))[0]
    n = 0
    for _ in range(updates):
        roll = rng.random()
        if roll < 0.15:
            # a binNMU of the newest release
            release = releases[-1][0]
            release = release[:-1] + str(int(release[-1]) + 1) if "+b" in release else release + "+b1"
            releases.append((release, False))
        elif roll < 0.25:
            # a new upstream release through stable-updates
            upstream = upstream.rsplit(".", 1)[0] + "." + str(rng.randint(31, 60))
            n += 1
            releases.append((f"{epoch}{upstream}-1~deb12u{n}", rng.random() < 0.5))
        else:
            n += 1
            releases.append((f"{epoch}{upstream}-{revision}+deb12u{n}", rng.random() < 0.6))
    return releases


@dataclass
class Policy:
    """What the bench puts in the database and what the endpoint reports."""

    releases: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)
    """package name → (release, security), oldest first"""
    blacklisted: list[tuple[str, str]] = field(default_factory=list)
    """(name, release); release '*' forbids every release"""
    installed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def versions(self) -> int:
        return sum(map(len, self.releases.values()))


def make_policy(versions: int, installed: int, seed: int = 4) -> Policy:
    rng = random.Random(seed)
    policy = Policy()
    total = 0
    while total < versions:
        name = package_name(rng)
        if name in policy.releases:
            continue
        releases = package_releases(rng)[:versions - total]
        policy.releases[name] = releases
        total += len(releases)
    names = list(policy.releases)
    # 0.5 % of the releases and 0.05 % of the packages are forbidden
    for name in rng.sample(names, versions // 200):
        policy.blacklisted.append((name, rng.choice(policy.releases[name])[0]))
    for name in rng.sample(names, max(1, versions // 2000)):
        policy.blacklisted.append((name, "*"))

    unknown = installed * 3 // 100
    for name in rng.sample(names, min(installed - unknown, len(names))):
        releases = policy.releases[name]
        roll = rng.random()
        if roll < 0.85 or len(releases) == 1:
            release = releases[-1][0]  # up to date
        elif roll < 0.95:
            release = rng.choice(releases[:-1])[0]  # behind: outdated if a security release is newer
        else:
            release = releases[-1][0] + "+local1"  # built locally: a release the store does not know
        policy.installed.append((name, release))
    while len(policy.installed) < installed:
        name = package_name(rng) + "-local"
        if name not in policy.releases:
            policy.installed.append((name, f"{rng.randint(0, 9)}.{rng.randint(0, 99)}-1"))
    policy.installed.sort()
    return policy


def populate(db, policy: Policy) -> None:
    """Import the releases as ``nac-admin packages import`` does (security
    releases with ``--security``), then blacklist.

    On PostgreSQL the import goes in batches with ANALYZE after each, what
    autovacuum does while a big import runs: import_packages looks the ids
    of the names it just inserted up in the same transaction, and without
    statistics the planner scans the whole packages table for each of its
    queries (a 100,000-release import then takes minutes)."""
    from nac.db.models import Package, Version

    postgresql = db.engine.dialect.name == "postgresql"

    def analyze():
        if postgresql:
            with db.engine.begin() as connection:
                connection.exec_driver_sql("ANALYZE packages, versions")

    for security in (False, True):
        releases = [(n, r) for n, rs in policy.releases.items() for r, s in rs if s is security]
        step = 10_000 if postgresql else len(releases) or 1
        for start in range(0, len(releases), step):
            db.import_packages(PRODUCT, releases[start:start + step], security=security)
            analyze()
    for name, release in policy.blacklisted:
        if release == "*":
            db.blacklist_package(PRODUCT, name)

    def blacklist(session, pairs):
        # one statement per 500 releases rather than nac-admin's one transaction per release
        table = Version.__table__
        ids = {name: id_ for name, id_ in session.execute(sa.select(Package.name, Package.id))}
        for start in range(0, len(pairs), 500):
            chunk = pairs[start:start + 500]
            session.execute(table.update().where(sa.tuple_(table.c.package_id, table.c.release).in_(
                [(ids[n], r) for n, r in chunk])).values(blacklisted=True))

    db.run(blacklist, [(n, r) for n, r in policy.blacklisted if r != "*"])
    analyze()


# -- the database --------------------------------------------------------------------------


class Database:
    """A fresh migrated database: a temporary SQLite file by default, the
    SQLite file of ``url`` (which must not exist yet), or a private schema
    in the PostgreSQL database of ``url``."""

    def __init__(self, url: str | None):
        from nac.db.engine import make_engine, sqlite_path, upgrade

        self._cleanup = []
        if url is None:
            tmp = tempfile.mkdtemp(prefix="nac-bench-imv-os-")
            self._cleanup.append(lambda: shutil.rmtree(tmp, True))
            url = f"sqlite:///{tmp}/nac.db"
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "postgresql":
            url = self._private_schema(parsed)
        elif parsed.get_backend_name() == "sqlite":
            path = sqlite_path(url)
            if path is not None and os.path.exists(path) and os.path.getsize(path):
                raise SystemExit(f"{path} exists: the bench builds its own database")
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self.backends = BackendCpu(self.engine)  # before any connection is made
        self.revision = upgrade(self.engine)

    def _private_schema(self, url) -> str:
        from tests.nacserver import private_postgres_schema

        private, drop = private_postgres_schema(url.render_as_string(hide_password=False), "nac_bench")
        self._cleanup.append(drop)
        return private

    def close(self) -> None:
        self.engine.dispose()
        for step in reversed(self._cleanup):
            step()


class StatementCounter:
    """SQL statements sent through the engine (``before_cursor_execute``)."""

    def __init__(self, engine):
        self.total = 0
        self.package_lookups = 0
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, connection, cursor, statement, parameters, context, executemany):
        self.total += 1
        text = statement.lower()
        if text.lstrip().startswith("select") and " packages" in text and " versions" in text:
            self.package_lookups += 1


class BackendCpu:
    """CPU time of the PostgreSQL backends that served the engine's
    connections (utime + stime of their /proc/PID/stat), by backend pid;
    nothing for SQLite, which runs in this process and is in its time."""

    def __init__(self, engine):
        self.pids: set[int] = set()
        if engine.dialect.name == "postgresql":
            sa.event.listen(engine, "connect", self._connected)

    def _connected(self, dbapi_connection, record):
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT pg_backend_pid()")
            self.pids.add(cursor.fetchone()[0])
        finally:
            cursor.close()

    def snapshot(self) -> dict[int, float]:
        seconds = {}
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    seconds[pid] = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13]) / CLK_TCK
            except (OSError, ValueError):
                pass  # gone, or the database is on another machine
        return seconds

    def since(self, before: dict[int, float]) -> float | None:
        """Seconds used since ``before`` (a connection opened meanwhile: all of its time)."""
        after = self.snapshot()
        if not after:
            return None
        return sum(t - before.get(pid, 0.0) for pid, t in after.items())


class DrainingStore(PolicyStore):
    """The server's PolicyStore, which also tells when the work queued in
    its thread pool is done (the core records the decision after
    answering: the bench waits for that too)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending: set = set()
        self._waiters: list = []

    def _defer(self, fn, *args, **kwargs):
        d = super()._defer(fn, *args, **kwargs)
        self._pending.add(d)

        def done(result):
            self._pending.discard(d)
            if not self._pending:
                # after the callers' callbacks, which may queue more work
                self.reactor.callLater(0, self._wake)
            return result

        return d.addBoth(done)

    def _wake(self) -> None:
        if not self._pending:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def drained(self) -> defer.Deferred:
        d = defer.Deferred()
        self._waiters.append(d)
        self.reactor.callLater(0, self._wake)
        return d


# -- assessments ------------------------------------------------------------------------------


def _server(store, options):
    from imvs.os import OsImv
    from nac.tnccs.core import TnccsCore
    from nac.tnccs.imv_manager import ImvManager

    return TnccsCore(ImvManager([OsImv(options)]), store=store)


def _peer():
    from nac.tnccs.assessment import PeerInfo

    return PeerInfo("pt-tls", "127.0.0.1", 40000, "carol", auth_method="sasl-plain")


@defer.inlineCallbacks
def run_client(core, store, imcs, call=lambda fn, *args: fn(*args)):
    """One assessment of ``imcs`` by nac's TNC client against ``core``: the
    client's batches and the decision.  ``call`` runs each of the client's
    steps (a bench may time them)."""
    from nac.client.pb_client import PbTncClient
    from nac.tnccs.assessment import TransportLimits

    limits = TransportLimits()
    connection = core.open_connection(_peer(), limits)
    client = PbTncClient(imcs, max_batch_size=limits.max_batch_size,
                         max_message_size=limits.max_message_size, language="en")
    data = call(client.start)
    batches = []
    while True:
        batches.append(data)
        outcome = yield connection.receive_batch(data)
        if outcome.close:
            break
        step = None
        for batch in outcome.batches:
            step = call(client.receive_batch, batch)
        if step.close:
            if step.batch is not None:
                batches.append(step.batch)
                yield connection.receive_batch(step.batch)
            break
        data = step.batch
    yield store.drained()
    if not client.outcome.completed:
        raise RuntimeError(f"the assessment did not complete: {client.outcome.error}")
    return batches, connection.decision


def record_client(core, store, host):
    """One assessment with nac's TNC client and its OS collector: the
    client's batches and the decision."""
    return run_client(core, store, [host.os_imc()])


@defer.inlineCallbacks
def replay(core, store, batches):
    """One timed assessment: the recorded client batches to a new connection."""
    connection = core.open_connection(_peer())
    for data in batches:
        outcome = yield connection.receive_batch(data)
        if outcome.close:
            break
    yield store.drained()
    return connection.decision


def _verdict(decision):
    [verdict] = decision.imv_results
    return decision.access, verdict.evaluation, verdict.reason


def _percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def package_check_alone(db, policy: Policy, updates, count: int) -> dict:
    """The IMV's package check as the store's thread runs it, called directly."""
    from imvs.os import check_installed_packages

    report = None
    wall, cpu = [], []
    for _ in range(count):
        w, c = time.perf_counter(), time.thread_time()
        report = db.run(check_installed_packages, PRODUCT, policy.installed, updates)
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - w)
    return {"median_ms": round(statistics.median(wall) * 1e3, 2),
            "cpu_ms": round(statistics.median(cpu) * 1e3, 2),
            "summary": report.summary()}


@defer.inlineCallbacks
def bench(reactor, ns, out: dict):
    from imvs.os import UpdatePolicy
    from tests.test_collectors import Host

    db = Database(ns.db)
    tmp = Path(tempfile.mkdtemp(prefix="nac-bench-host-"))
    store = None
    try:
        policy = make_policy(ns.versions, ns.installed, ns.seed)
        began = time.perf_counter()
        store = DrainingStore(db.engine)
        populate(store.db, policy)
        out.update({
            "database": db.dialect, "schema_revision": db.revision, "product": PRODUCT,
            "package_versions": policy.versions, "packages": len(policy.releases),
            "blacklisted": len(policy.blacklisted), "installed_packages": len(policy.installed),
            "updates": ns.updates, "populate_s": round(time.perf_counter() - began, 1),
        })
        if not ns.json:
            print(f"{db.dialect} database (schema {db.revision}): {policy.versions} versions of "
                  f"{len(policy.releases)} packages for {PRODUCT!r}, {len(policy.blacklisted)} blacklisted; "
                  f"built in {out['populate_s']} s", flush=True)
        # the bench's own copy of the policy would only make the server's
        # garbage collector walk a bigger heap than a server has
        policy.releases.clear()
        gc.collect()

        updates = UpdatePolicy(ns.updates)
        check = package_check_alone(store.db, policy, updates, max(3, ns.count // 4))
        out["package_check"] = check

        store.start()
        core = _server(store, {"package_updates": ns.updates})
        host = Host(tmp, policy.installed)
        batches, decision = yield record_client(core, store, host)
        expected = _verdict(decision)
        out["verdict"] = {"access": expected[0], "evaluation": expected[1].label}
        out["client_batches"] = len(batches)
        out["client_bytes"] = sum(map(len, batches))
        for _ in range(ns.warmup):
            yield replay(core, store, batches)

        counter = StatementCounter(db.engine)
        backend_before = db.backends.snapshot()
        walls = []
        cpu_before = time.process_time()
        for _ in range(ns.count):
            began = time.perf_counter()
            decision = yield replay(core, store, batches)
            walls.append(time.perf_counter() - began)
            if _verdict(decision) != expected:
                raise RuntimeError(f"a replayed assessment ended with {_verdict(decision)}, "
                                   f"not {expected}")
        cpu = (time.process_time() - cpu_before) / ns.count
        backend = db.backends.since(backend_before)
        backend = None if backend is None else backend / ns.count
        out.update({
            "assessments": ns.count,
            "wall_median_ms": round(statistics.median(walls) * 1e3, 2),
            "wall_p95_ms": round(_percentile(walls, 0.95) * 1e3, 2),
            "cpu_ms_per_assessment": round(cpu * 1e3, 2),
            "database_backend_cpu_ms_per_assessment": None if backend is None else round(backend * 1e3, 2),
            "sql_statements_per_assessment": counter.total / ns.count,
            "package_lookup_statements_per_assessment": counter.package_lookups / ns.count,
            "target_ms": ns.target_ms,
            "target_met": cpu * 1e3 <= ns.target_ms,
        })
    finally:
        if store is not None:
            store.stop()
        shutil.rmtree(tmp, True)
        db.close()


def report(out: dict) -> None:
    check = out["package_check"]
    print(f"endpoint: {out['installed_packages']} installed packages in {out['client_batches']} client "
          f"batches ({out['client_bytes']} bytes); verdict {out['verdict']['evaluation']}, "
          f"access {out['verdict']['access']}")
    print(f"package check alone (query + judging): {check['median_ms']} ms median, "
          f"{check['cpu_ms']} ms CPU — {check['summary']}")
    print(f"{out['assessments']} assessments: wall median {out['wall_median_ms']} ms, "
          f"p95 {out['wall_p95_ms']} ms")
    backend = out["database_backend_cpu_ms_per_assessment"]
    print(f"CPU per assessment: {out['cpu_ms_per_assessment']} ms (this process, all threads)"
          + ("" if backend is None else f" + {backend} ms in PostgreSQL backends"))
    print(f"SQL statements per assessment: {out['sql_statements_per_assessment']:g} "
          f"({out['package_lookup_statements_per_assessment']:g} package lookups)")
    met = "met" if out["target_met"] else "MISSED"
    print(f"target ≤ {out['target_ms']:g} ms CPU per assessment: {met}")


def run_in_reactor(fn, *args):
    """Run ``fn(reactor, *args)`` (a Deferred) in a reactor until it is done,
    the server's log lines written (to nowhere) as twistd would write them;
    its Failure, or None."""
    from twisted.internet import task
    from twisted.logger import globalLogBeginner, textFileLogObserver

    devnull = open(os.devnull, "w")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(devnull)], redirectStandardIO=False)
    failure = []

    def run(reactor):
        return fn(reactor, *args).addErrback(failure.append)

    try:
        task.react(run)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    return failure[0] if failure else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--db", metavar="URL",
                   help="database to build the policy in (default: a temporary SQLite file); "
                        "PostgreSQL gets a private schema, dropped afterwards")
    p.add_argument("--versions", type=int, default=100_000, help="package versions (default: %(default)s)")
    p.add_argument("--installed", type=int, default=3000,
                   help="packages the endpoint reports (default: %(default)s)")
    p.add_argument("--count", type=int, default=40, help="timed assessments (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed assessments first (default: %(default)s)")
    p.add_argument("--updates", default="security", choices=("security", "all", "none"),
                   help="[imv:os] package_updates (default: %(default)s)")
    p.add_argument("--seed", type=int, default=4, help="of the generated policy (default: %(default)s)")
    p.add_argument("--target-ms", type=float, default=50.0,
                   help="CPU per assessment to meet (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    p.add_argument("--json", action="store_true", help="print JSON")
    ns = p.parse_args(argv)
    if ns.count < 1 or ns.installed < 1 or ns.versions < 1:
        p.error("--count, --installed and --versions must be positive")

    out: dict = {}
    failure = run_in_reactor(bench, ns, out)
    if failure is not None:
        failure.printTraceback(file=sys.stderr)
        return 2
    if ns.json:
        print(json.dumps(out, indent=2))
    else:
        report(out)
    return 0 if out["target_met"] or not ns.check else 1


if __name__ == "__main__":
    sys.exit(main())
