"""nac's test suite, run by pytest (``python -m pytest``) or trial (``trial tests``).

Tests write only under one temporary directory made for the run, outside the
work tree: trial's ``TestCase.mktemp()`` names paths relative to the current
directory, which is the repository root under pytest (and trial's own
``_trial_temp`` under trial), so the suite roots them in :data:`TEST_ROOT`
instead, removed when the run ends.  Trial's working directory itself (its
``_trial_temp`` with ``test.log``, by default in the current directory) is
made there too unless ``--temp-directory`` names another; pytest keeps no
``.pytest_cache`` (setup.cfg).  Hypothesis keeps its example database
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
from twisted.trial import runner as _runner
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

_trial_directory = _runner._testDirectory


def _test_directory(working_directory: str):
    """Trial's working directory: its default (``_trial_temp`` of the current
    directory, the work tree) under :data:`TEST_ROOT`, another as given."""
    if working_directory == "_trial_temp":
        working_directory = os.path.join(TEST_ROOT, working_directory)
    return _trial_directory(working_directory)


_runner._testDirectory = _test_directory

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
