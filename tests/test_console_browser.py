"""The web console end to end in headless Chromium (Debian's ``chromium``
and ``chromium-driver``, driven by Selenium): the real ``twistd nac`` with
``transports = pt-tls, http`` and the OS and Scanner IMVs, real PT-TLS
assessments by nac's client.  An operator logs in, sees the device, sets
up a port policy for a group in the forms, moves the device into the
group, reads the reason of the isolating session, changes the policy and
sees the next assessment allowed; a read-only user has no edit buttons and
a POST of theirs is refused; three wrong passwords lock a login.

Screenshots of the main pages go to a temporary directory and, when
``NAC_SCREENSHOTS`` names a directory, there too (docs/screenshots/ holds
some).  The tests skip, saying so, only when Chromium, chromedriver or
Selenium are missing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from twisted.trial import unittest

from nac.client.collectors.os import read_os_info
from tests.nacserver import NacServer, free_port, repo_env
from tests.test_http_api import install_http

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoSuchElementException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # pragma: no cover - the skip says so
    webdriver = None


def browser_unavailable() -> str | None:
    if webdriver is None:
        return "selenium is not installed (pip install selenium, or the [test] extra)"
    if CHROMIUM is None:
        return "chromium is not installed (Debian package chromium)"
    if CHROMEDRIVER is None:
        return "chromedriver is not installed (Debian package chromium-driver)"
    return None


def chromium(profile: Path, width: int = 1280, height: int = 900):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                 # the server's certificate is from the test's own demo CA
                 "--ignore-certificate-errors"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


class ConsoleInChromiumTests(unittest.TestCase):
    def setUp(self):
        why = browser_unavailable()
        if why:
            raise unittest.SkipTest(why)
        self.base_dir = base = Path(self.mktemp()).resolve()
        base.mkdir(parents=True)
        env = repo_env()
        env["PYTHONPATH"] = f"{install_http(base / 'site')}{os.pathsep}{env['PYTHONPATH']}"
        self.env = env
        self.http_port = free_port()
        # a port held open on the host: the endpoint's scanner collector reports it
        self.listener = socket.socket()
        self.listener.bind(("0.0.0.0", 0))
        self.listener.listen()
        self.addCleanup(self.listener.close)
        self.open_port = self.listener.getsockname()[1]
        (base / "nac").mkdir()
        self.server = NacServer({
            "nac": {"transports": "pt-tls, http", "imvs": "os, scanner"},
            "http": {"listen": "127.0.0.1", "port": self.http_port, "console_max_failures": 3},
            "imv:scanner": {"closed_port_policy": "no"},
        }, workdir=str(base / "nac"), env={"PYTHONPATH": env["PYTHONPATH"]})
        self.admin("init")
        self.admin("user", "add", "dave", "--password", "pw-dave")
        self.admin("console-user", "add", "ada", "--role", "admin", "--password", "ada-secret")
        self.admin("console-user", "add", "rex", "--role", "read", "--password", "rex-secret")
        # the OS IMV knows this host's packages: it allows, and only the port policy decides
        info = read_os_info()
        listing = base / "dpkg-query.txt"
        listing.write_text(subprocess.run(["dpkg-query", "-W"], capture_output=True, text=True,
                                          check=True).stdout)
        self.admin("packages", "import", "--product", f"{info.name} {info.version_string}", str(listing))
        self.server.start()
        self.addCleanup(self.server.stop)
        self.server.wait_listening(self.http_port)
        self.shots = Path(tempfile.mkdtemp(prefix="console-shots-", dir=base))
        self.assessments = 0
        self.driver = chromium(base / "profile")
        self.addCleanup(self.driver.quit)

    def admin(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "nac.admin", "--config", str(self.server.config), *args],
                              env=self.env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"nac-admin {args} failed: {done.stderr}")
        return done.stdout

    def assess(self) -> str:
        """The recommendation of a real assessment by nac's client, once the
        server has recorded it (the decision is written just after it is sent)."""
        done = self.server.client("--client", "dave", "--secret", "pw-dave", "--collectors", "os,scanner", "--json")
        self.assertEqual(done.returncode, 0, done.stderr + self.server.log_text()[-3000:])
        self.assessments += 1
        engine = sa.create_engine(f"sqlite:///{self.server.state_dir / 'nac.db'}")
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with engine.connect() as c:
                    if c.exec_driver_sql("SELECT count(*) FROM sessions WHERE access IS NOT NULL").scalar() \
                            >= self.assessments:
                        break
                time.sleep(0.05)
            else:
                self.fail("the server did not record the decision")
        finally:
            engine.dispose()
        return json.loads(done.stdout)["recommendation"]

    # -- the browser --------------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.http_port}/console{path}"

    def open(self, path: str) -> None:
        self.driver.get(self.url(path))

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def finds(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self) -> str:
        return self.find("body").text

    def shot(self, name: str, whole: bool = True) -> None:
        """A screenshot of the page, ``whole`` of it (the window made as tall)."""
        size = self.driver.get_window_size()
        if whole:
            height = self.driver.execute_script("return document.documentElement.scrollHeight")
            self.driver.set_window_size(size["width"], min(4000, max(size["height"], height + 140)))
        self.driver.save_screenshot(str(self.shots / f"{name}.png"))
        if whole:
            self.driver.set_window_size(size["width"], size["height"])
        wanted = os.environ.get("NAC_SCREENSHOTS")
        if wanted:
            Path(wanted).mkdir(parents=True, exist_ok=True)
            shutil.copy(self.shots / f"{name}.png", Path(wanted) / f"{name}.png")

    def go(self, element) -> None:
        """Click a link or a form's button and wait for the page it leads to."""
        page = self.find("html")
        element.click()
        WebDriverWait(self.driver, 20).until(expected_conditions.staleness_of(page))

    def open_adding_forms(self) -> None:
        self.driver.execute_script("document.querySelectorAll('details.add').forEach(d => d.open = true)")

    def log_in(self, name: str, password: str) -> None:
        self.open("/login")
        self.find("#name").clear()
        self.find("#name").send_keys(name)
        self.find("#password").send_keys(password)
        self.go(self.find("#login"))

    def log_out(self) -> None:
        self.go(self.find("form.logout button"))
        self.assertIn("/console/login", self.driver.current_url)

    def fill(self, form, **fields) -> None:
        for name, value in fields.items():
            element = form.find_element(By.NAME, name)
            if element.tag_name == "select":
                Select(element).select_by_visible_text(value)
            else:
                element.clear()
                element.send_keys(value)

    # -- the test ------------------------------------------------------------------------------------------

    def test_an_operator_sees_an_assessment_changes_the_port_policy_and_the_next_decision_follows(self):
        self.assertEqual(self.assess(), "Access Allowed")

        self.log_in("ada", "ada-secret")
        self.assertIn("ada (admin)", self.text())
        self.shot("overview")
        self.open("/devices")
        rows = self.finds("#devices tbody tr")
        self.assertEqual(len(rows), 1, self.text())
        self.assertIn("allowed", rows[0].text)
        device_link = rows[0].find_element(By.CSS_SELECTOR, "a")
        device_name = device_link.text
        self.shot("devices")
        self.go(device_link)
        device_url = self.driver.current_url
        self.assertEqual(self.find("#device-name").text, device_name)

        # a group whose port policy forbids the open port, in the forms
        self.open("/policies")
        self.open_adding_forms()
        self.fill(self.find("#group-add"), name="lab")
        self.go(self.find("#group-add button"))
        self.open_adding_forms()
        self.fill(self.find("#policy-add"), name="no test port", type="blocked-tcp-ports",
                  argument=str(self.open_port))
        Select(self.find("#policy-add select[name=rec_fail]")).select_by_visible_text("isolate")
        self.go(self.find("#policy-add button"))
        self.open_adding_forms()
        form = self.find("#enforcement-add")
        self.fill(form, policy="no test port", group="lab")
        self.go(form.find_element(By.CSS_SELECTOR, "button"))
        self.assertNotIn("Not saved", self.text())
        self.assertIn("no test port", self.find("#enforcements").text)
        self.shot("policies")

        # the device moves into the group: the next assessment isolates it
        self.driver.get(device_url)
        select = Select(self.find("#group-select"))
        select.deselect_all()
        select.select_by_visible_text("lab")
        self.go(self.find("#move"))
        self.assertIn("lab", self.find("#groups p").text)
        self.assertEqual(self.assess(), "Quarantined")
        self.driver.get(device_url)
        last = self.find("#last-decision")
        self.assertIn("isolate", last.text)
        self.assertIn(f"Forbidden: tcp/{self.open_port}", self.find("#ports").text)
        self.shot("device")
        self.go(last.find_element(By.CSS_SELECTOR, "a"))
        self.assertIn("Open server ports were detected", self.find("#reasons").text)
        results = self.find("#results").text
        self.assertIn("isolate", results)
        self.assertIn(str(self.open_port), results)  # the remediation names the port
        self.shot("session")

        # another port forbidden instead: allowed at the next assessment
        self.open("/policies")
        [form] = [f for f in self.finds("form[data-policy]") if f.get_attribute("data-policy") == "no test port"]
        other = str(self.open_port + 1 if self.open_port < 65535 else 1)
        self.fill(form, argument=other)
        self.go(form.find_element(By.CSS_SELECTOR, "button[value=save]"))
        self.assertNotIn("Not saved", self.text())
        self.assertEqual(self.assess(), "Access Allowed")
        self.driver.get(device_url)
        self.assertIn("allowed", self.find("#last-decision").text)
        history = self.find("#history").text
        self.assertEqual([w for w in history.split() if w in ("allowed", "isolate")], ["allowed", "isolate",
                                                                                        "allowed"])
        self.open("/")
        self.shot("overview")
        # the releases the OS IMV compares with, imported above
        self.open("/packages?name=bash")
        self.assertIn("bash", self.find("#packages").text)
        self.assertTrue(self.finds("#packages form.edit"))
        self.open("/packages")
        self.shot("packages")

        # on a phone
        self.driver.set_window_size(390, 844)
        self.driver.get(device_url)
        self.shot("device-phone", whole=False)
        self.driver.set_window_size(1280, 900)
        self.log_out()

        # a read-only user: every page, no edit button, and a POST is refused
        self.log_in("rex", "rex-secret")
        self.assertIn("rex (read)", self.text())
        for path in ("/policies", "/packages", device_url.split("/console", 1)[1]):
            self.open(path)
            self.assertEqual(self.finds("form.edit"), [], path)
            self.assertEqual([b.text for b in self.finds("main form[method=post] button")], [], path)
        self.open("/policies")
        self.assertIn("no test port", self.text())
        page = self.find("html")
        self.driver.execute_script("""
            const f = document.createElement('form');
            f.method = 'post'; f.action = '/console/groups';
            for (const [k, v] of [['csrf', document.querySelector('form.logout input[name=csrf]').value],
                                  ['name', 'sneaky']]) {
              const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.append(i);
            }
            document.body.append(f); f.submit();""")
        WebDriverWait(self.driver, 20).until(expected_conditions.staleness_of(page))
        self.assertIn("403", self.find("h1").text)
        self.assertIn("read-only", self.text())
        self.open("/policies")
        self.assertNotIn("sneaky", self.text())
        self.log_out()

        # three wrong passwords lock the login, the right one too then
        for _ in range(3):
            self.log_in("rex", "wrong")
            self.assertIn("Wrong user name or password", self.find("#login-error").text)
        self.log_in("rex", "rex-secret")
        self.assertIn("locked", self.find("#login-error").text)
        self.shot("login-locked")
        with self.assertRaises(NoSuchElementException):
            self.find("form.logout")
