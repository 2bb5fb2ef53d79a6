"""Combining IMV recommendations: strongSwan's default / any / all semantics."""

from twisted.trial import unittest

from nac.ifimv import ActionRecommendation as A, EvaluationResult as E, RecommendationPolicy as P
from nac.tnccs.recommendations import ImvVerdict, choose_language, combine


def v(rec, ev, provided=True, i=1):
    return ImvVerdict(imv_id=i, imv_name=f"imv{i}", provided=provided, recommendation=rec, evaluation=ev)


class CombineTests(unittest.TestCase):
    def test_no_imvs_is_no_recommendation(self):
        self.assertEqual(combine(P.DEFAULT, []), (A.NO_RECOMMENDATION, E.DONT_KNOW))

    def test_pending_imv_means_no_decision_yet(self):
        self.assertIsNone(combine(P.DEFAULT, [v(A.ALLOW, E.COMPLIANT), v(A.ALLOW, E.COMPLIANT, False, 2)]))

    def test_default_most_restrictive_wins(self):
        self.assertEqual(combine(P.DEFAULT, [v(A.ALLOW, E.COMPLIANT), v(A.ISOLATE, E.NONCOMPLIANT_MINOR, i=2)]),
                         (A.ISOLATE, E.NONCOMPLIANT_MINOR))
        self.assertEqual(combine(P.DEFAULT, [v(A.ISOLATE, E.NONCOMPLIANT_MAJOR), v(A.NO_ACCESS, E.NONCOMPLIANT_MINOR, i=2)]),
                         (A.NO_ACCESS, E.NONCOMPLIANT_MAJOR))
        self.assertEqual(combine(P.DEFAULT, [v(A.NO_ACCESS, E.ERROR), v(A.ALLOW, E.COMPLIANT, i=2)]),
                         (A.NO_ACCESS, E.ERROR))

    def test_default_no_recommendation_is_replaced_by_the_next(self):
        self.assertEqual(combine(P.DEFAULT, [v(A.NO_RECOMMENDATION, E.DONT_KNOW), v(A.ALLOW, E.COMPLIANT, i=2)]),
                         (A.ALLOW, E.COMPLIANT))
        # but a later "no recommendation" does not weaken an earlier verdict
        self.assertEqual(combine(P.DEFAULT, [v(A.ALLOW, E.COMPLIANT), v(A.NO_RECOMMENDATION, E.DONT_KNOW, i=2)]),
                         (A.ALLOW, E.COMPLIANT))

    def test_all_requires_agreement(self):
        self.assertEqual(combine(P.ALL, [v(A.ALLOW, E.COMPLIANT), v(A.ALLOW, E.COMPLIANT, i=2)]),
                         (A.ALLOW, E.COMPLIANT))
        self.assertEqual(combine(P.ALL, [v(A.ALLOW, E.COMPLIANT), v(A.ISOLATE, E.COMPLIANT, i=2)]),
                         (A.NO_RECOMMENDATION, E.COMPLIANT))
        self.assertEqual(combine(P.ALL, [v(A.ALLOW, E.COMPLIANT), v(A.ALLOW, E.NONCOMPLIANT_MINOR, i=2)]),
                         (A.ALLOW, E.DONT_KNOW))

    def test_any_one_allow_is_enough(self):
        self.assertEqual(combine(P.ANY, [v(A.NO_ACCESS, E.NONCOMPLIANT_MAJOR), v(A.ALLOW, E.COMPLIANT, i=2)]),
                         (A.ALLOW, E.COMPLIANT))
        self.assertEqual(combine(P.ANY, [v(A.NO_ACCESS, E.NONCOMPLIANT_MAJOR), v(A.ISOLATE, E.NONCOMPLIANT_MINOR, i=2)]),
                         (A.ISOLATE, E.NONCOMPLIANT_MINOR))
        self.assertEqual(combine(P.ANY, [v(A.ALLOW, E.COMPLIANT), v(A.NO_ACCESS, E.ERROR, i=2)]),
                         (A.ALLOW, E.COMPLIANT))


class LanguageTests(unittest.TestCase):
    def test_exact_and_quality(self):
        self.assertEqual(choose_language("de, en;q=0.5", ["en", "de"]), "de")
        self.assertEqual(choose_language("fr;q=0.9, en;q=0.8", ["en", "de"]), "en")

    def test_prefix_match_and_wildcard(self):
        self.assertEqual(choose_language("en-US", ["de", "en"]), "en")
        self.assertEqual(choose_language("*", ["de", "en"]), "de")

    def test_no_match(self):
        self.assertIsNone(choose_language("fr", ["en"]))
        self.assertIsNone(choose_language("", ["en"]))
        self.assertIsNone(choose_language("en;q=0", ["en"]))
