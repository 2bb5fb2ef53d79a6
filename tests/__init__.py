"""nac's test suite, run by pytest (``python -m pytest``) or trial (``trial tests``).

Tests write only under one temporary directory made for the run, outside the
work tree: trial's ``TestCase.mktemp()`` names paths relative to the current
directory, which is the repository root under pytest (and trial's own
``_trial_temp`` under trial), so the suite roots them in :data:`TEST_ROOT`
instead, removed when the run ends.  Hypothesis keeps its example database
and caches there too, not in ``.hypothesis/`` of the current directory; examples worth
keeping are written into the tests with ``@example``.

Each test starts with nac's limiter of repeated log lines (:data:`nac.log.repeats`)
empty, so that a line an earlier test wrote cannot hold back one a test expects.
"""

import atexit
import os
import shutil
import tempfile

from hypothesis import settings as _hypothesis_settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase
from twisted.trial import unittest as _trial

TEST_ROOT = tempfile.mkdtemp(prefix="nac-tests-")
atexit.register(shutil.rmtree, TEST_ROOT, ignore_errors=True)

_MAX_NAME = 32  # as trial: some file systems limit the length of names


def _mktemp(self) -> str:
    """A new path under :data:`TEST_ROOT` (trial's layout: module, class,
    test method, a unique directory); its parent exists, the path not."""
    base = os.path.join(TEST_ROOT, self.__class__.__module__[:_MAX_NAME],
                        self.__class__.__name__[:_MAX_NAME], self._testMethodName[:_MAX_NAME])
    os.makedirs(base, exist_ok=True)
    return os.path.join(tempfile.mkdtemp("", "", base), "temp")


_trial.SynchronousTestCase.mktemp = _mktemp

_run = _trial.SynchronousTestCase.run


def _run_afresh(self, result):
    from nac.log import repeats

    repeats.reset()
    return _run(self, result)


_trial.SynchronousTestCase.run = _run_afresh

set_hypothesis_home_dir(os.path.join(TEST_ROOT, "hypothesis"))
_hypothesis_settings.register_profile(
    "nac", database=DirectoryBasedExampleDatabase(os.path.join(TEST_ROOT, "hypothesis")))
_hypothesis_settings.load_profile("nac")
