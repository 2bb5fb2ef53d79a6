"""nac.config: defaults, the sample file, parsers, and the error messages."""

import ipaddress
import os
import re
from pathlib import Path

from twisted.trial import unittest

from nac import config
from nac.config import SCHEMA, ConfigError, Option, load

SAMPLE = Path(__file__).resolve().parents[1] / "etc" / "nac.conf"


class ConfigFileMixin:
    def write(self, text: str) -> str:
        path = self.mktemp()
        Path(path).write_text(text, encoding="utf-8")
        return path

    def assertProblem(self, path, overrides, *fragments) -> str:
        with self.assertRaises(ConfigError) as cm:
            load(path, overrides)
        message = str(cm.exception)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message


class DefaultsTests(ConfigFileMixin, unittest.TestCase):
    def test_no_file_gives_every_default(self):
        cfg = load(None)
        self.assertIsNone(cfg.source)
        self.assertEqual(cfg.transports, ["pt-tls"])
        self.assertEqual(cfg.imvs, [])
        self.assertEqual(cfg.get("nac", "recommendation_policy"), "default")
        self.assertEqual(cfg.get("nac", "language"), ["en"])
        self.assertEqual(cfg.get("nac", "max_rounds"), 10)
        self.assertEqual(cfg.get("pt-tls", "port"), 271)
        self.assertEqual(cfg.get("pt-tls", "handshake_timeout"), 10.0)
        self.assertEqual(cfg.get("pt-tls", "sasl"), "plain")
        self.assertGreaterEqual(cfg.get("pt-tls", "max_message_size"), 64 * 1024)
        self.assertIsNone(cfg.get("pt-tls", "cert"))
        self.assertIsNone(cfg.get("radius", "secret"))
        self.assertEqual(cfg.get("radius", "clients"), [ipaddress.ip_network("127.0.0.1/32")])
        self.assertEqual(cfg.get("ikev2", "pool"), ipaddress.ip_network("10.10.0.0/24"))
        self.assertEqual(cfg.get("ikev2", "eap_only"), "auto")

    def test_section_fills_every_declared_key(self):
        cfg = load(None)
        for name, options in SCHEMA.items():
            section = cfg.section(name)
            self.assertEqual(set(section), set(options))
            for key, value in section.items():
                self.assertEqual(value, cfg.get(name, key))

    def test_db_defaults_to_sqlite_in_state_dir(self):
        state = os.path.abspath(self.mktemp())
        cfg = load(None, {("nac", "state_dir"): state})
        self.assertEqual(cfg.state_dir, state)
        self.assertEqual(cfg.db_url, f"sqlite:///{state}/nac.db")
        self.assertTrue(cfg.db_url.startswith("sqlite:////"))

    def test_empty_db_means_derived(self):
        cfg = load(self.write("[nac]\nstate_dir = /srv/nac\ndb =\n"))
        self.assertEqual(cfg.db_url, "sqlite:////srv/nac/nac.db")

    def test_relative_state_dir_is_made_absolute(self):
        cfg = load(None, {("nac", "state_dir"): "relative/state"})
        self.assertTrue(os.path.isabs(cfg.state_dir))
        self.assertTrue(cfg.state_dir.endswith(os.path.join("relative", "state")))

    def test_state_dir_default_for_root(self):
        self.patch(os, "geteuid", lambda: 0)
        self.assertEqual(load(None).state_dir, "/var/lib/nac")

    def test_state_dir_default_for_users_follows_xdg(self):
        self.patch(os, "geteuid", lambda: 1000)
        env = dict(os.environ, HOME="/home/alice", XDG_STATE_HOME="/xdg/state")
        self.patch(os, "environ", env)
        self.assertEqual(load(None).state_dir, "/xdg/state/nac")
        del env["XDG_STATE_HOME"]
        self.assertEqual(load(None).state_dir, "/home/alice/.local/state/nac")
        env["XDG_STATE_HOME"] = "relative"  # ignored, as the XDG spec says
        self.assertEqual(load(None).state_dir, "/home/alice/.local/state/nac")

    def test_get_hands_out_copies_of_lists(self):
        cfg = load(None)
        cfg.get("nac", "transports").append("radius")
        cfg.transports.append("ikev2")
        self.assertEqual(cfg.transports, ["pt-tls"])

    def test_get_of_undeclared_key_is_key_error(self):
        with self.assertRaises(KeyError):
            load(None).get("nac", "nope")
        with self.assertRaises(KeyError):
            load(None).section("nope")


class SampleFileTests(unittest.TestCase):
    def test_sample_file_loads(self):
        cfg = load(str(SAMPLE))
        self.assertEqual(cfg.source, str(SAMPLE))
        self.assertEqual(cfg.transports, ["pt-tls"])

    def test_sample_documents_every_declared_key(self):
        text = SAMPLE.read_text()
        for section, options in SCHEMA.items():
            header = re.search(rf"(?m)^\[{re.escape(section)}\]$", text)
            self.assertIsNotNone(header, f"etc/nac.conf has no [{section}] section")
            start = header.start()
            end = text.find("\n[", start + 1)
            body = text[start:end if end != -1 else len(text)]
            for key in options:
                self.assertRegex(body, rf"(?m)^#? ?{re.escape(key)} =",
                                 f"etc/nac.conf does not document [{section}] {key}")

    def test_sample_defaults_match_declared_defaults(self):
        # every "# key = value" line shows the value the key has when unset
        section = None
        defaults = load(None, {("nac", "state_dir"): "/var/lib/nac"})
        for line in SAMPLE.read_text().splitlines():
            header = re.fullmatch(r"\[([^\]]+)\]", line)
            if header:
                section = header.group(1)
                continue
            m = re.fullmatch(r"# ([a-z_]+) = (.*)", line)
            if section not in SCHEMA or not m or m.group(1) not in SCHEMA[section]:
                continue
            key, shown = m.groups()
            if config._is_secret(SCHEMA[section][key], key):
                continue
            shown_cfg = load(None, {(section, key): shown, ("nac", "state_dir"): "/var/lib/nac"})
            self.assertEqual(shown_cfg.get(section, key), defaults.get(section, key), f"[{section}] {key}")


class GeneratedSampleTests(unittest.TestCase):
    """etc/nac.conf is what `nac-admin config sample` prints, written from
    the declarations: it cannot drift from them."""

    def test_etc_nac_conf_is_the_generated_sample(self):
        import subprocess
        import sys

        from tests.nacserver import REPO, repo_env

        done = subprocess.run([sys.executable, "-m", "nac.admin", "config", "sample"], cwd=REPO,
                              env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(SAMPLE.read_text(), done.stdout,
                         "etc/nac.conf differs from `nac-admin config sample`: run "
                         "`nac-admin config sample > etc/nac.conf`")

    def test_every_key_uncommented_loads_as_its_default(self):
        from nac import sample_config

        state = self.mktemp()
        text = sample_config.sample()
        # "# key = value" lines become settings; help text never has that shape
        uncommented = re.sub(r"(?m)^# ([a-z_]+ =(?: .*)?)$", r"\1", text)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(uncommented.replace("\nstate_dir =\n", f"\nstate_dir = {state}\n"))
        cfg = load(path)
        defaults = load(None, {("nac", "state_dir"): state})
        shown = 0
        for section, options in SCHEMA.items():
            for key in options:
                self.assertEqual(cfg.get(section, key), defaults.get(section, key), f"[{section}] {key}")
                self.assertIn((section, key), cfg._origins, f"[{section}] {key} is not in the sample")
                shown += 1
        for name, _help, options in sample_config.imv_sections():
            imv = name.partition(":")[2]
            self.assertEqual(cfg.imv_options(imv, options), load(None).imv_options(imv, options), name)
            self.assertEqual(set(cfg._imv_raw[imv]), {o.name.lower() for o in options}, name)
        self.assertEqual(cfg.unused_imv_sections(), [])
        self.assertGreater(shown, 70)

    def test_every_section_and_key_has_help(self):
        from nac import sample_config

        for section, help_text, options in sample_config.sections():
            self.assertTrue(help_text, f"[{section}] has no help")
            for option in options:
                self.assertTrue(option.help, f"[{section}] {option.name} has no help")

    def test_the_shipped_imvs_are_the_distributions(self):
        import configparser

        from nac import sample_config
        from tests.nacserver import REPO

        setup = configparser.ConfigParser()
        setup.read(REPO / "setup.cfg")
        entry_points = dict(line.split(" = ") for line in
                            setup["options.entry_points"]["nac.imvs"].strip().splitlines())
        self.assertEqual(sample_config.SHIPPED_IMVS, entry_points)


class ParserTests(unittest.TestCase):
    def check(self, parser, good: dict, bad: list):
        for raw, expected in good.items():
            self.assertEqual(parser(raw), expected, raw)
        for raw in bad:
            with self.assertRaises(ValueError, msg=repr(raw)):
                parser(raw)

    def test_port(self):
        self.check(config.port, {"1": 1, "271": 271, "65535": 65535},
                   ["0", "65536", "-1", "+80", "1_000", "abc", "", "8.0", "٣"])

    def test_positive_int(self):
        self.check(config.positive_int, {"1": 1, "10000": 10000}, ["0", "-3", "1.5", "x", ""])

    def test_non_negative_int(self):
        self.check(config.non_negative_int, {"0": 0, "42": 42}, ["-1", "x", ""])

    def test_seconds(self):
        self.check(config.seconds,
                   {"30": 30.0, "1.5": 1.5, "30s": 30.0, "2m": 120.0, "500ms": 0.5, "1h": 3600.0, "2 M": 120.0,
                    "7d": 604800.0},
                   ["0", "0s", "-1", "abc", "1w", "inf", "nan", "", "s"])
        self.check(config.non_negative_seconds, {"0": 0.0, "0s": 0.0, "30d": 2592000.0, "1.5": 1.5},
                   ["-1", "abc", "inf", ""])

    def test_boolean(self):
        good = {v: True for v in ("yes", "true", "on", "1", "YES", "True")}
        good.update({v: False for v in ("no", "false", "off", "0", "Off")})
        self.check(config.boolean, good, ["y", "2", "", "enabled"])

    def test_comma_list(self):
        self.check(config.comma_list, {"a, b ,c": ["a", "b", "c"], "": [], "a,,b,": ["a", "b"]}, [])

    def test_choice(self):
        self.check(config.choice("none", "xfrm"), {"none": "none", "XFRM": "xfrm"}, ["", "netlink"])
        with self.assertRaisesRegex(ValueError, "is not one of: none, xfrm"):
            config.choice("none", "xfrm")("x")

    def test_path_expands_home(self):
        self.assertEqual(config.path("~/certs/a.pem"), os.path.expanduser("~/certs/a.pem"))
        self.assertEqual(config.path("/etc/nac/ca.pem"), "/etc/nac/ca.pem")
        self.check(config.path, {}, ["", "a\0b"])
        self.assertIsNone(config.optional(config.path)(""))

    def test_db_url(self):
        self.check(config.db_url,
                   {u: u for u in ("sqlite:////var/lib/nac/nac.db", "sqlite://",
                                   "postgresql+psycopg://nac@localhost/nac", "mysql+pymysql://u:p@h/db")},
                   ["nac.db", "/var/lib/nac/nac.db", "://x", "postgres:/x", "1sql://x", ""])

    def test_address(self):
        self.check(config.address,
                   {"0.0.0.0": "0.0.0.0", "::": "::", "127.0.0.1": "127.0.0.1", "::1": "::1",
                    "[::1]": "::1", "localhost": "localhost", "nac.example.org": "nac.example.org"},
                   ["999.1.1.1", "1.2.3", "a b", "-bad.example", "", "x" * 254, "host_name"])

    def test_cidr(self):
        self.check(config.cidr,
                   {"10.10.0.0/24": ipaddress.ip_network("10.10.0.0/24"),
                    "127.0.0.1": ipaddress.ip_network("127.0.0.1/32"),
                    "fd00::/64": ipaddress.ip_network("fd00::/64")},
                   ["10.0.0.0/33", "x", "", "10.0.0.0/"])
        with self.assertRaisesRegex(ValueError, r"has host bits set \(the network is 10.10.0.0/24\)"):
            config.cidr("10.10.0.1/24")

    def test_tls_version(self):
        self.check(config.tls_version, {"1.2": "1.2", "1.3": "1.3", "TLSv1.3": "1.3", "tls1.2": "1.2"},
                   ["1.1", "1.0", "tls", "", "3"])

    def test_byte_size(self):
        self.check(config.byte_size(4096, 2**32 - 1),
                   {"65536": 65536, "64K": 65536, "2M": 2097152, "2 MiB": 2097152},
                   ["1", "1G", "", "-5", "4095"])

    def test_comma_list_of_names_the_bad_item(self):
        parse = config.comma_list_of(config.port, allow_empty=False, unique=True)
        self.assertEqual(parse("1, 2"), [1, 2])
        with self.assertRaisesRegex(ValueError, r"has item 'x', which is not a port number"):
            parse("1, x")
        with self.assertRaisesRegex(ValueError, "more than once"):
            parse("1, 1")
        with self.assertRaisesRegex(ValueError, "is empty"):
            parse(" , ")


class ErrorMessageTests(ConfigFileMixin, unittest.TestCase):
    def test_bad_value_names_file_section_key_value_and_expectation(self):
        path = self.write("[pt-tls]\nport = 70000\n")
        message = self.assertProblem(path, None)
        self.assertEqual(message, f"{path}: [pt-tls] port: '70000' is not a port number (1-65535)")

    def test_unknown_key_lists_valid_keys_and_suggests(self):
        path = self.write("[pt-tls]\nprot = 271\n")
        self.assertProblem(path, None, f"{path}: [pt-tls] prot: unknown key", "did you mean 'port'?",
                           "valid keys: listen, port, cert")

    def test_unknown_section_names_file_and_section(self):
        path = self.write("[pt_tls]\nport = 271\n")
        self.assertProblem(path, None, f"{path}: [pt_tls]: unknown section", "did you mean 'pt-tls'?",
                           "imv:NAME")

    def test_default_section_is_not_special(self):
        path = self.write("[DEFAULT]\nport = 1\n")
        self.assertProblem(path, None, f"{path}: [DEFAULT]: unknown section")

    def test_all_problems_are_reported_at_once(self):
        path = self.write("[nac]\nmax_rounds = 0\n[pt-tls]\nport = x\nbogus = 1\n")
        with self.assertRaises(ConfigError) as cm:
            load(path)
        self.assertEqual(len(cm.exception.problems), 3)
        self.assertEqual(str(cm.exception).count("\n"), 2)

    def test_missing_file_names_file(self):
        path = self.mktemp()
        self.assertProblem(path, None, f"{path}: cannot read configuration file")

    def test_key_outside_section_names_line(self):
        self.assertProblem(self.write("port = 1\n"), None, "line 1: a setting before any [section]")

    def test_malformed_line_is_named_by_number_only(self):
        path = self.write("[radius]\nport = 1812\nsecret hunter2\n")
        message = self.assertProblem(path, None, f"{path}: line 3: not a 'key = value' setting")
        self.assertNotIn("hunter2", message)

    def test_duplicate_key_and_section(self):
        self.assertProblem(self.write("[nac]\nimvs = a\nimvs = b\n"), None, "[nac] imvs: key set twice")
        self.assertProblem(self.write("[nac]\n[nac]\n"), None, "section [nac] appears twice")

    def test_transports_must_be_known_unique_and_not_empty(self):
        self.assertProblem(None, {("nac", "transports"): "pt-tls, ipsec"},
                           "[nac] transports: 'pt-tls, ipsec' has item 'ipsec', which is not an "
                           "installed transport (installed: http, ikev2, pt-tls, radius)")
        self.assertProblem(None, {("nac", "transports"): "pt-tls,pt-tls"}, "more than once")
        self.assertProblem(None, {("nac", "transports"): ""}, "[nac] transports: '' is empty")

    def test_cert_without_key_is_an_error(self):
        self.assertProblem(None, {("pt-tls", "cert"): "/etc/nac/server.pem"},
                           "command line: [pt-tls] key: required because [pt-tls] cert is set")
        self.assertProblem(self.write("[ikev2]\nkey = /k.pem\n"), None,
                           "[ikev2] cert: required because [ikev2] key is set")

    def test_ike_ports_must_differ(self):
        self.assertProblem(None, {("ikev2", "nat_port"): "500"}, "[ikev2] nat_port: '500' is the same")

    def test_sample_values_parse(self):
        cfg = load(self.write(
            "[nac]\ntransports = pt-tls, radius, ikev2\nimvs = os, mypkg.imv:Scanner\nlanguage = de-CH, en\n"
            "[pt-tls]\nlisten = ::\nmax_message_size = 64K\nsasl =\nciphers = ECDHE+AESGCM\n"
            "[radius]\nsecret = s3cr3t\nclients = 10.0.0.0/8, ::1\nvlan_allow = 10\nfilter_id_isolate =\n"
            "[ikev2]\nallow_ts = 10.1.0.0/16, fd00::/64\neap_only = yes\nike_proposals = AES128-SHA256-MODP2048\n"))
        self.assertEqual(cfg.transports, ["pt-tls", "radius", "ikev2"])
        self.assertEqual(cfg.imvs, ["os", "mypkg.imv:Scanner"])
        self.assertEqual(cfg.get("nac", "language"), ["de-CH", "en"])
        self.assertEqual(cfg.get("pt-tls", "listen"), "::")
        self.assertEqual(cfg.get("pt-tls", "max_message_size"), 65536)
        self.assertIsNone(cfg.get("pt-tls", "sasl"))
        self.assertEqual(cfg.get("radius", "clients"),
                         [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")])
        self.assertEqual(cfg.get("radius", "vlan_allow"), "10")
        self.assertIsNone(cfg.get("radius", "filter_id_isolate"))
        self.assertEqual(len(cfg.get("ikev2", "allow_ts")), 2)
        self.assertEqual(cfg.get("ikev2", "eap_only"), "yes")
        self.assertEqual(cfg.get("ikev2", "ike_proposals"), ["aes128-sha256-modp2048"])

    def test_bad_cipher_string_is_caught_at_load(self):
        self.assertProblem(None, {("pt-tls", "ciphers"): "NO-SUCH-CIPHER"},
                           "[pt-tls] ciphers: 'NO-SUCH-CIPHER' selects no cipher")


class OverrideTests(ConfigFileMixin, unittest.TestCase):
    def test_command_line_wins_over_file(self):
        path = self.write("[nac]\ntransports = pt-tls\nrecommendation_policy = any\n")
        cfg = load(path, {("nac", "recommendation_policy"): "all"})
        self.assertEqual(cfg.get("nac", "recommendation_policy"), "all")
        self.assertEqual(cfg.origin("nac", "recommendation_policy"), "command line")
        self.assertEqual(cfg.origin("nac", "transports"), path)

    def test_command_line_errors_name_command_line(self):
        path = self.write("[pt-tls]\nport = 271\n")
        message = self.assertProblem(path, {("pt-tls", "port"): "0"},
                                     "command line: [pt-tls] port: '0' is not a port number")
        self.assertNotIn(path, message)

    def test_file_errors_still_name_the_file(self):
        path = self.write("[pt-tls]\nport = abc\n")
        self.assertProblem(path, {("nac", "imvs"): "os"}, f"{path}: [pt-tls] port: 'abc'")

    def test_unknown_section_or_key_on_command_line(self):
        self.assertProblem(None, {("nope", "port"): "1"}, "command line: [nope] port: unknown section")
        self.assertProblem(None, {("nac", "nope"): "1"}, "command line: [nac] nope: unknown key")


class RadiusSecretTests(ConfigFileMixin, unittest.TestCase):
    SECRET = "hunter2-very-secret"

    def test_radius_enabled_without_secret_fails(self):
        path = self.write("[nac]\ntransports = pt-tls, radius\n")
        self.assertProblem(path, None, f"{path}: [radius] secret: required because 'radius' is in [nac] transports")
        self.assertProblem(None, {("nac", "transports"): "radius"}, "[radius] secret: required")

    def test_radius_enabled_without_clients_fails(self):
        self.assertProblem(None, {("nac", "transports"): "radius", ("radius", "secret"): self.SECRET,
                                  ("radius", "clients"): ""}, "[radius] clients: is empty")

    def test_radius_with_secret_loads(self):
        path = self.write(f"[nac]\ntransports = radius\n[radius]\nsecret = {self.SECRET}\n")
        self.assertEqual(load(path).get("radius", "secret"), self.SECRET)

    def test_secret_is_not_required_when_radius_is_off(self):
        self.assertIsNone(load(None).get("radius", "secret"))

    def test_secret_never_in_errors(self):
        path = self.write(f"[radius]\nsecret = {self.SECRET}\nsecert = {self.SECRET}\nport = x\n")
        message = self.assertProblem(path, None, "[radius] secert: unknown key", "[radius] port: 'x'")
        self.assertNotIn(self.SECRET, message)

    def test_secret_like_imv_option_not_echoed(self):
        cfg = load(self.write(f"[imv:x]\npassword = {self.SECRET}\n"))
        with self.assertRaises(ConfigError) as cm:
            cfg.imv_options("x", [Option("password", config.positive_int, 1, "")])
        self.assertIn("[imv:x] password: the value (not shown) is not a positive whole number", str(cm.exception))
        self.assertNotIn(self.SECRET, str(cm.exception))

    def test_secret_never_in_repr(self):
        cfg = load(self.write(f"[nac]\ntransports = radius\n[radius]\nsecret = {self.SECRET}\n"
                              f"[imv:x]\napi_password = {self.SECRET}\n"))
        self.assertNotIn(self.SECRET, repr(cfg))
        self.assertIn("'secret': '***'", repr(cfg))

    def test_database_password_masked(self):
        cfg = load(None, {("nac", "db"): f"postgresql://nac:{self.SECRET}@db/nac"})
        self.assertNotIn(self.SECRET, repr(cfg))
        self.assertIn("postgresql://nac:***@db/nac", repr(cfg))
        message = self.assertProblem(None, {("nac", "db"): f"postgresql:/nac:{self.SECRET}@db/nac",
                                            ("nac", "imvs"): "!"}, "[nac] db:")
        self.assertNotIn(self.SECRET, message)


class ImvSectionTests(ConfigFileMixin, unittest.TestCase):
    OPTIONS = [Option("max_age", config.seconds, 60.0, "how old measurements may be"),
               Option("strict", config.boolean, False, "")]

    def test_imv_sections_are_kept_raw_then_validated(self):
        cfg = load(self.write("[imv:os]\nmax_age = 2m\n[imv:scanner]\nstrict = on\n"))
        self.assertEqual(sorted(cfg.imv_section_names), ["os", "scanner"])
        self.assertEqual(cfg.imv_options("os", self.OPTIONS), {"max_age": 120.0, "strict": False})
        self.assertEqual(cfg.unused_imv_sections(), ["scanner"])

    def test_imv_without_section_gets_defaults(self):
        self.assertEqual(load(None).imv_options("os", self.OPTIONS), {"max_age": 60.0, "strict": False})

    def test_imv_unknown_key_names_file_section_key(self):
        path = self.write("[imv:os]\nmax_agee = 1\n")
        cfg = load(path)
        with self.assertRaises(ConfigError) as cm:
            cfg.imv_options("os", self.OPTIONS)
        self.assertIn(f"{path}: [imv:os] max_agee: unknown key; did you mean 'max_age'? "
                      "(valid keys: max_age, strict)", str(cm.exception))
        with self.assertRaisesRegex(ConfigError, "this IMV has no options"):
            cfg.imv_options("os", [])

    def test_imv_bad_value(self):
        cfg = load(None, {("imv:os", "strict"): "maybe"})
        with self.assertRaisesRegex(ConfigError, r"^command line: \[imv:os\] strict: 'maybe' is not a boolean"):
            cfg.imv_options("os", self.OPTIONS)

    def test_imv_section_needs_a_name(self):
        self.assertProblem(self.write("[imv:]\n"), None, "[imv:]: an IMV section needs a name")


class DeclareSectionTests(ConfigFileMixin, unittest.TestCase):
    def test_declared_section_is_validated(self):
        self.addCleanup(SCHEMA.pop, "test-extra", None)
        config.declare_section("test-extra", [Option("Depth", config.positive_int, 3, "")])
        self.assertEqual(load(None).get("test-extra", "depth"), 3)
        self.assertEqual(load(self.write("[test-extra]\ndepth = 7\n")).get("test-extra", "depth"), 7)
        self.assertProblem(self.write("[test-extra]\ndepth = 0\n"), None,
                           "[test-extra] depth: '0' must be greater than zero")

    def test_imv_sections_cannot_be_declared(self):
        with self.assertRaises(ValueError):
            config.declare_section("imv:os", [])
