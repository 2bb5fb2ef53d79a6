"""The documented sample configuration, written from the declarations.

``nac-admin config sample`` prints it; ``etc/nac.conf`` in the repository is
that output (a test keeps them equal).  Every section declared in
:data:`nac.config.SCHEMA` and every ``[imv:NAME]`` section of the IMVs nac
ships comes with its help (``nac.config.SECTION_HELP``, an IMV class's
``CONFIG_HELP``), and every key with its help and, commented out, its
default written as the file would say it, so that a sample loads as the
built-in defaults.
"""

from __future__ import annotations

import enum
import importlib
import ipaddress
import textwrap
from typing import Any, Iterable

from nac import config as nac_config
from nac.config import Option

__all__ = ["SHIPPED_IMVS", "imv_sections", "render_default", "sample", "sections"]

#: The IMVs of this distribution (its ``nac.imvs`` entry points), by name.
SHIPPED_IMVS = {
    "os": "imvs.os:OsImv",
    "scanner": "imvs.scanner:ScannerImv",
    "swima": "imvs.swima:SwimaImv",
    "test": "imvs.test:TestImv",
    "hcd": "imvs.hcd:HcdImv",
    "attestation": "imvs.attestation:AttestationImv",
}

WIDTH = 76

HEADER = """\
nac — sample configuration

Start with:  twistd -n nac --config /etc/nac/nac.conf
Check with:  nac-admin check-config --config /etc/nac/nac.conf
             (or twistd nac --config ... --check)
Options given to `twistd nac` on the command line override this file.
`nac-admin config sample` prints this file, written from the settings'
declarations.

Every key is shown with its default; a commented-out key (`# key =
value`) has that value anyway, an empty value means "not set".
Durations accept 30, 1.5, 30s, 2m, 500ms, 1h.  Sizes accept 65536, 64K,
2M.  Booleans accept yes/no, true/false, on/off, 1/0.  Lists are
comma-separated.  Unknown sections or keys are errors, so a typo cannot go
unnoticed.

IMV settings go in a section named after the IMV, [imv:NAME], validated
by the IMV when it is loaded; those of the IMVs nac ships end this file."""


def _size(value: int) -> str:
    for unit, factor in (("M", 1024 * 1024), ("K", 1024)):
        if value >= factor and value % factor == 0:
            return f"{value // factor}{unit}"
    return str(value)


def _duration(value: float) -> str:
    if 0 < value < 1:
        return f"{value * 1000:g}ms"
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= factor and value % factor == 0:
            return f"{value / factor:g}{unit}"
    return f"{value:g}s"


def _kind_name(kind) -> str:
    name = getattr(kind, "__name__", "")
    return name[len("optional_"):] if name.startswith("optional_") else name


def render_default(option: Option) -> str:
    """``option``'s default as written in the file ('' for not set)."""
    kind = _kind_name(option.kind)

    def word(value: enum.Enum) -> str:
        # the configuration's word for an enumeration value: the shortest
        # ending of its name the option reads back as that value
        parts = value.name.lower().split("_")
        for i in range(len(parts) - 1, -1, -1):
            for text in ("_".join(parts[i:]), "-".join(parts[i:])):
                try:
                    parsed = option.kind(text)
                except ValueError:
                    continue
                if parsed == value or parsed == [value] or parsed == (value,):
                    return text
        return str(value.value)

    def one(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, enum.Enum):
            return word(value)
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return _duration(value) if kind in ("seconds", "non_negative_seconds") else f"{value:g}"
        if isinstance(value, int) and kind == "byte_size":
            return _size(value)
        if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
            return str(value[0]) if value[0] == value[1] else f"{value[0]}-{value[1]}"  # a port range
        if isinstance(value, (list, tuple)):
            return ", ".join(one(item) for item in value)
        if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            return str(value)
        return str(value)

    return one(option.default)


def _comment(text: str, width: int = WIDTH) -> list[str]:
    """``text`` as comment lines: each line of it wrapped, except lines that
    start with blanks (tables, examples), kept as they are."""
    out = []
    for line in text.splitlines() or [""]:
        if not line.strip():
            out.append("#")
        elif line.startswith(" "):
            out.append(f"# {line}".rstrip())
        else:
            out.extend(textwrap.wrap(line, width, initial_indent="# ", subsequent_indent="# ",
                                     break_on_hyphens=False, break_long_words=False))
    return out


def imv_sections() -> list[tuple[str, str, list[Option]]]:
    """(``imv:NAME``, help, options) of each IMV nac ships, by name."""
    out = []
    for name, spec in sorted(SHIPPED_IMVS.items()):
        module, _, attr = spec.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        out.append((nac_config.IMV_SECTION_PREFIX + name, getattr(cls, "CONFIG_HELP", ""),
                    list(getattr(cls, "OPTIONS", ()))))
    return out


def _named(prefix: str) -> tuple[str, str, list[Option]]:
    name = f"{prefix}:NAME"
    return name, nac_config.SECTION_HELP.get(name, ""), list(nac_config.NAMED_SECTIONS[prefix].values())


def sections() -> list[tuple[str, str, list[Option]]]:
    """(section, help, options) of every section the sample shows, in its
    order: a ``[PREFIX:NAME]`` section (``radius-client:NAME``) after the
    section it belongs to (``radius``), the IMVs' last."""
    from nac import plugins

    transports = list(plugins.transport_plugins())  # declares their sections
    # [nac], then the transports (the built-in ones in their usual order), then the rest
    usual = ("pt-tls", "radius", "ikev2")
    transports.sort(key=lambda name: (usual.index(name) if name in usual else len(usual), name))
    order = ["nac", *transports, *(name for name in nac_config.SCHEMA if name != "nac" and name not in transports)]
    named = dict.fromkeys(getattr(nac_config, "NAMED_SECTIONS", {}))
    out = []
    for name in order:
        options = nac_config.SCHEMA[name]
        out.append((name, nac_config.SECTION_HELP.get(name, ""), list(options.values())))
        for prefix in [p for p in named if p.partition("-")[0] == name]:
            out.append(_named(prefix))
            del named[prefix]
    return out + [_named(prefix) for prefix in named] + imv_sections()


def _named_section(name: str, help_text: str, options: Iterable[Option]) -> list[str]:
    """A section that comes in any number, all commented out: its keys have
    no defaults of their own, and an example must not load as a NAS."""
    lines = [f"# [{name}]"] + _comment(help_text)
    for option in options:
        lines += ["#", f"#   {option.name} ="]
        lines += [line.replace("# ", "#     ", 1) for line in _comment(option.help, WIDTH - 4)]
    return lines


def _section(name: str, help_text: str, options: Iterable[Option]) -> list[str]:
    if name.endswith(":NAME"):
        return _named_section(name, help_text, options)
    lines = [f"[{name}]"]
    if help_text:
        lines += _comment(help_text)
    for option in options:
        lines.append("")
        if option.help:
            lines += _comment(option.help)
        lines.append(f"# {option.name} = {render_default(option)}".rstrip())
    return lines


def sample() -> str:
    """The sample configuration file."""
    lines = _comment(HEADER)
    for name, help_text, options in sections():
        lines += ["", ""] + _section(name, help_text, options)
    return "\n".join(lines) + "\n"
