"""The test runners write nothing into the work tree: trial's working
directory (``_trial_temp``) and pytest's cache go elsewhere.  Each runner is
run on a small test module in a copy of the repository's tracked files (in a
temporary directory), whose tree is compared before and after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from twisted.trial import unittest

from tests.nacserver import REPO

MODULE = "tests/test_console.py"


class WorkTreeTests(unittest.TestCase):
    def setUp(self):
        self.copy = Path(self.mktemp())
        tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "setup.cfg", "tests", "nac"],
                                 capture_output=True, text=True, check=True).stdout.split()
        for name in tracked:
            target = self.copy / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO / name).is_file():
                target.write_bytes((REPO / name).read_bytes())
        self.env = {**os.environ, "PYTHONPATH": str(self.copy), "PYTHONDONTWRITEBYTECODE": "1"}

    def tree(self) -> set[str]:
        return {str(path.relative_to(self.copy)) for path in self.copy.rglob("*")}

    def run_in_copy(self, *command: str) -> None:
        before = self.tree()
        done = subprocess.run([sys.executable, *command], cwd=self.copy, env=self.env, capture_output=True,
                              text=True, timeout=300)
        self.assertEqual(done.returncode, 0, done.stdout[-2000:] + done.stderr[-2000:])
        self.assertEqual(sorted(self.tree() - before), [])

    def test_trial_keeps_its_working_directory_outside(self):
        self.run_in_copy("-m", "twisted.trial", MODULE.removesuffix(".py").replace("/", "."))

    def test_pytest_keeps_no_cache_in_the_work_tree(self):
        self.run_in_copy("-m", "pytest", "-q", MODULE)
