"""Re-evaluation bench: how long and how much server CPU judging every
admitted device again takes after one policy change.

    python bench/reevaluate.py [--db URL] [--devices 1000] [--images 10] \\
        [--versions 100000] [--installed 3000] [--json]

The policy database is built as ``bench/imv_os.py`` builds it (``--versions``
releases of Debian-like packages for one product, some blacklisted).  Then
``--devices`` devices are recorded as admitted the way an assessment records
them (a RADIUS session decided Access Allowed with the OS IMV's result, its
``os`` measurement, the device's kept package list, an open accounting
session), with one of ``--images`` package lists of ``--installed``
packages each (hosts installed from a few images: the package report cache
then judges each list once).  One package that half the images have is
blacklisted, and the real :class:`nac.reevaluate.Reevaluator` with the real
OS IMV in a real TNCS core and started PolicyStore notices the change and
judges every device again: about half the decisions change, each recorded
as a 'reevaluation' session (what the RADIUS transport's CoA dispatcher
then hears; no NAS here).

Figures: wall time from the change to the last decision recorded, CPU time
of this process (all threads; with PostgreSQL its backends' too) per device
judged, and the decisions changed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.imv_os import PRODUCT, Database, make_policy, populate, run_in_reactor  # noqa: E402


def record_devices(store, engine, images: list[list[tuple[str, str]]], devices: int) -> None:
    """``devices`` admitted devices, device k with package list k % len(images)."""
    import sqlalchemy as sa

    from nac.db import models as m
    from nac.db.reevaluation import keep_device_packages
    from nac.db.store import record_decision, record_device, record_measurement, record_session_start
    from nac.ifimv import ActionRecommendation as A
    from nac.ifimv import EvaluationResult as E
    from nac.tnccs.assessment import Decision, PeerInfo
    from nac.tnccs.recommendations import ImvVerdict

    decision = Decision(recommendation=A.ALLOW, evaluation=E.COMPLIANT, access="allowed",
                        imv_results=(ImvVerdict(1, "os", True, A.ALLOW, E.COMPLIANT),))
    now = datetime.datetime.now(datetime.timezone.utc)

    def admit(session, k: int) -> None:
        connection = session.connection()
        device_id = f"bench-device-{k:06d}"
        image = k % len(images)
        peer = PeerInfo(transport="radius", address="192.0.2.1", identity=f"user{k}", auth_method="eap-ttls",
                        nas="sw1", station=f"02-00-{k >> 24 & 255:02x}-{k >> 16 & 255:02x}-{k >> 8 & 255:02x}-"
                                           f"{k & 255:02x}")
        sid = record_session_start(connection, peer, k + 1)
        pk = record_device(connection, sid, device_id, PRODUCT)
        record_measurement(connection, sid, "os", "os", {
            "product": PRODUCT, "device_id": device_id, "forwarding": "disabled", "default_password": False,
            "packages": {"count": len(images[image]), "ok": 0, "unknown": 0, "vulnerable": [], "blacklisted": []},
            "evaluation": "compliant"})
        keep_device_packages(connection, sid, PRODUCT, f"{image:032x}", images[image])
        record_decision(connection, sid, decision)
        connection.execute(sa.insert(m.AccountingSession.__table__).values(
            nas="sw1", nas_address="192.0.2.1", acct_session_id=f"acct-{k}", status=m.ACCT_STARTED,
            updated=now, device_id=pk, assessment_id=sid))

    for start in range(0, devices, 200):
        store.db.run(lambda session, start=start: [admit(session, k) for k in range(start, min(devices,
                                                                                               start + 200))])


def bench(reactor, ns, out: dict):
    from twisted.internet import defer

    from imvs.os import OsImv
    from nac.db.store import PolicyStore
    from nac.ifimv import RecommendationPolicy
    from nac.reevaluate import Reevaluator
    from nac.server import attach_store
    from nac.tnccs.core import TnccsCore
    from nac.tnccs.imv_manager import ImvManager

    db = Database(ns.db)
    store = None

    @defer.inlineCallbacks
    def run():
        nonlocal store
        policy = make_policy(ns.versions, ns.installed, ns.seed)
        store = PolicyStore(db.engine)
        store.start()
        began = time.perf_counter()
        populate(store.db, policy)
        rng = random.Random(ns.seed)
        # admitted: nothing blacklisted installed (outdated packages are minor: allowed)
        forbidden = set(policy.blacklisted)
        base = [(n, r) for n, r in policy.installed if (n, r) not in forbidden and (n, "*") not in forbidden]
        # the package blacklisted later: in half of the images
        victim = next(name for name, release in base if release in {r for r, _ in policy.releases.get(name, ())})
        images = []
        for i in range(ns.images):
            image = [p for p in base if p[0] != victim or i % 2 == 0]
            extra = [(f"extra-{i}-{j}", "1.0-1") for j in range(rng.randint(1, 20))]
            images.append(sorted(image + extra))
        record_devices(store, db.engine, images, ns.devices)
        policy.releases.clear()
        out.update({"database": db.dialect, "devices": ns.devices, "images": ns.images,
                    "installed_packages": ns.installed, "package_versions": ns.versions,
                    "setup_s": round(time.perf_counter() - began, 1)})
        if not ns.json:
            print(f"{db.dialect}: {ns.versions} releases, {ns.devices} admitted devices with open accounting "
                  f"sessions, {ns.images} package lists of ~{ns.installed} packages; set up in "
                  f"{out['setup_s']} s", flush=True)
        core = TnccsCore(ImvManager([OsImv({"non_compliant_minor": "allow", "non_compliant_major": "isolate",
                                             "no_result": "allow"})]),
                         policy=RecommendationPolicy.DEFAULT)
        attach_store(core, store)
        reevaluator = Reevaluator(core, store, interval=0.5, max_devices=ns.devices, instance="bench")
        yield reevaluator.poll()  # the generations as they are now
        store.db.blacklist_package(PRODUCT, victim)
        cpu, backends = time.process_time(), db.backends.snapshot()
        wall = time.perf_counter()
        yield reevaluator.poll()
        yield store.writes.idle()
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu + (db.backends.since(backends) or 0.0)
        judged = reevaluator.judged
        out.update({"judged": judged, "changed": reevaluator.changed, "wall_s": round(wall, 2),
                    "cpu_ms_per_device": round(cpu * 1000 / max(judged, 1), 2),
                    "devices_per_cpu_second": round(judged / cpu, 1) if cpu else None})

    def cleanup(result):
        if store is not None:
            store.stop()
        db.close()
        return result

    return run().addBoth(cleanup)


def report(out: dict) -> None:
    print(f"policy change (a package blacklisted that half the images have): {out['judged']} devices judged "
          f"again, {out['changed']} decisions changed, in {out['wall_s']} s")
    print(f"server CPU per device judged again: {out['cpu_ms_per_device']} ms "
          f"({out['devices_per_cpu_second']} devices per CPU second)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--db", metavar="URL", help="database to build (default: a temporary SQLite file); "
                                               "PostgreSQL gets a private schema, dropped afterwards")
    p.add_argument("--devices", type=int, default=1000, help="admitted devices (default: %(default)s)")
    p.add_argument("--images", type=int, default=10, help="distinct package lists (default: %(default)s)")
    p.add_argument("--versions", type=int, default=100_000, help="package releases (default: %(default)s)")
    p.add_argument("--installed", type=int, default=3000, help="packages per list (default: %(default)s)")
    p.add_argument("--seed", type=int, default=4, help="of the generated policy (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON")
    ns = p.parse_args(argv)
    if min(ns.devices, ns.images, ns.versions, ns.installed) < 1:
        p.error("--devices, --images, --versions and --installed must be positive")
    out: dict = {}
    failure = run_in_reactor(bench, ns, out)
    if failure is not None:
        failure.printTraceback(file=sys.stderr)
        return 2
    if ns.json:
        print(json.dumps(out, indent=2))
    else:
        report(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
