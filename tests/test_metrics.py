"""``/metrics`` summed over nac's processes: the snapshots worker processes
send (JSON values over their pipe), their sum with the main process's own
figures, what of an ended worker still counts; and end to end, the real
``twistd nac`` with two PT-TLS processes and the HTTP transport, whose
``/metrics`` counts every assessment whichever process served it."""

from __future__ import annotations

import re

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.trial import unittest

from nac import metrics
from tests.test_http_api import HttpApiServer


def sample(text: bytes, name: str, **labels) -> float | None:
    """The value of sample ``name`` with ``labels`` in an exposition, None if absent."""
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def worker(assessments: float, open_: float) -> metrics.Snapshot:
    """A worker's snapshot as :func:`nac.metrics.snapshot` writes it."""
    return [["nac_test_assessments", "counter", "assessments", [
                ["nac_test_assessments_total", {"decision": "allowed"}, assessments]]],
            ["nac_test_open", "gauge", "open", [["nac_test_open", {}, open_]]]]


class SumTests(unittest.TestCase):
    def setUp(self):
        self.key = object()
        self.addCleanup(metrics.remove_source, self.key)

    def test_samples_of_the_same_name_and_labels_are_summed(self):
        text = metrics.exposition([worker(3, 1), worker(4, 2)])
        self.assertEqual(sample(text, "nac_test_assessments_total", decision="allowed"), 7)
        self.assertEqual(sample(text, "nac_test_open"), 3)

    def test_the_main_process_counts_with_the_workers(self):
        # a source of this process and the same family from a worker: one family, the sum
        metrics.add_source(self.key, lambda: [GaugeMetricFamily("nac_test_open", "open", value=5)])
        text = metrics.exposition([worker(3, 1)])
        self.assertEqual(sample(text, "nac_test_open"), 6)
        self.assertEqual(len(re.findall(rb"^# TYPE nac_test_open ", text, re.M)), 1)

    def test_sources_of_this_process_are_summed_and_go_with_their_key(self):
        other = object()
        self.addCleanup(metrics.remove_source, other)
        metrics.add_source(self.key, lambda: [CounterMetricFamily("nac_test_requests", "r", value=2)])
        metrics.add_source(other, lambda: [CounterMetricFamily("nac_test_requests", "r", value=5)])
        self.assertEqual(sample(metrics.exposition(), "nac_test_requests_total"), 7)
        metrics.remove_source(other)
        self.assertEqual(sample(metrics.exposition(), "nac_test_requests_total"), 2)

    def test_an_ended_workers_counters_count_but_not_its_gauges(self):
        retired = metrics.retired(worker(3, 1))
        self.assertEqual([entry[0] for entry in retired], ["nac_test_assessments"])
        text = metrics.exposition([retired, worker(4, 2)])
        self.assertEqual(sample(text, "nac_test_assessments_total", decision="allowed"), 7)
        self.assertEqual(sample(text, "nac_test_open"), 2)

    def test_retired_workers_sum_into_one_snapshot(self):
        total = metrics.sum_snapshots([metrics.retired(worker(3, 1)), metrics.retired(worker(4, 1))])
        self.assertEqual(total, [["nac_test_assessments", "counter", "assessments",
                                  [["nac_test_assessments_total", {"decision": "allowed"}, 7]]]])

    def test_what_a_worker_sent_that_is_not_a_metric_is_left_out(self):
        bad = [["nac_x", "counter", "x", [["nac_x_total", {}, "7"], ["nac_x_total", {}, True],
                                          ["nac_x_total", ["not", "labels"], 1]]],
               "not an entry", ["too", "short"], ["nac_y", "no such type", "y", []],
               *worker(2, 0)]
        text = metrics.exposition([bad, "not a list"])
        self.assertEqual(sample(text, "nac_test_assessments_total", decision="allowed"), 2)
        self.assertIsNone(sample(text, "nac_x_total"))

    def test_a_snapshot_is_json_values_without_created_samples(self):
        import json

        snap = metrics.snapshot()
        self.assertEqual(json.loads(json.dumps(snap)), snap)
        names = [s[0] for entry in snap for s in entry[3]]
        self.assertIn("nac_assessments_open", names)
        self.assertFalse([name for name in names if name.endswith("_created")])


class WorkerMetricsEndToEndTests(HttpApiServer, unittest.TestCase):
    """Two PT-TLS processes: ``/metrics`` counts the assessments of both."""

    other_sections = {"pt-tls": {"workers": "2"}}

    @defer.inlineCallbacks
    def test_assessments_of_every_process_are_counted(self):
        assessments = 8
        for n in range(assessments):
            self.assess("carol" if n % 2 else "dave")
        status, text = yield self.call("GET", "/metrics", token=None)
        self.assertEqual(status, 200)
        body = text.encode()
        counted = sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
                      if s.name == "nac_assessments_total")
        log = self.server.log_text()
        served_by_worker = len(re.findall(r"worker 1\].*PT-TLS stream from", log))
        self.assertEqual(counted, assessments, (served_by_worker, text[:3000]))
        self.assertEqual(sample(body, "nac_worker_processes"), 1)
        self.assertEqual(sample(body, "nac_pt_tls_connections_open"), 0)
