"""SWIMA end to end: the real `nac-pt-tls-client` with its SWIMA collector
reading this host's dpkg database, against `twistd -n nac` with the SWIMA
IMV.  The first assessment of the device stores its whole inventory; the
second asks only for the events since the last EID it stored."""

from __future__ import annotations

import json

import sqlalchemy as sa
from twisted.trial import unittest

from nac.db.engine import make_engine
from tests.nacserver import NacServer

PASSWORD = "swima e2e"


class SwimaEndToEndTests(unittest.TestCase):
    def setUp(self):
        import os
        if not os.path.exists("/var/lib/dpkg/status"):
            raise unittest.SkipTest("this host has no dpkg database for the SWIMA collector to read")
        self.server = NacServer({"nac": {"imvs": "imvs.swima:SwimaImv"}})
        self.server.admin("init")
        self.server.admin("user", "add", "swima", "--password", PASSWORD)
        self.server.start()
        self.addCleanup(self.server.stop)

    def measurements(self) -> list[tuple[int, str, dict]]:
        engine = make_engine(f"sqlite:///{self.server.state_dir}/nac.db")
        try:
            with engine.connect() as connection:
                rows = connection.execute(sa.text(
                    "SELECT session_id, kind, payload FROM measurements WHERE imv_name = 'swima' "
                    "ORDER BY id")).all()
        finally:
            engine.dispose()
        return [(r[0], r[1], r[2] if isinstance(r[2], dict) else json.loads(r[2])) for r in rows]

    def assess(self) -> dict:
        done = self.server.client("--client", "swima", "--secret", PASSWORD,
                                  "--collectors", "os,swima", "--json", timeout=120)
        self.assertEqual(done.returncode, 0, done.stderr + self.server.log_text()[-3000:])
        return json.loads(done.stdout)

    def test_second_assessment_sends_only_events_since_the_last_eid(self):
        first = self.assess()
        self.assertEqual(first["recommendation"], "Access Allowed", first)
        after_first = self.measurements()
        kinds = [kind for _, kind, _ in after_first]
        self.assertIn("swima-inventory", kinds)
        inventory = [p for _, kind, p in after_first if kind == "swima-inventory"][0]
        self.assertGreater(inventory["identifiers"], 0)

        second = self.assess()
        self.assertEqual(second["recommendation"], "Access Allowed", second)
        new = self.measurements()[len(after_first):]
        new_kinds = [kind for _, kind, _ in new]
        # nothing changed on the host between the two runs: events only, no inventory
        self.assertIn("swima-events", new_kinds)
        self.assertNotIn("swima-inventory", new_kinds)
        events = [p for _, kind, p in new if kind == "swima-events"][0]
        self.assertEqual((events["epoch"], events["last_eid"]), (inventory["epoch"], inventory["last_eid"]))
        self.assertEqual(events["created"] + events["deleted"] + events["altered"], 0)
