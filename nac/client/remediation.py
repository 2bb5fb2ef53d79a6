"""Remediation instructions, as a person at the endpoint reads them.

A TNC server says what to fix in a PB-Remediation-Parameters string or URI
(RFC 5793 §4.8) and, per IMV, in the IETF Remediation Instructions
attribute (RFC 5792 §4.2.10).  strongSwan's IMVs, and nac's
(``imvs.policy.RemediationString``), write the string as XML::

    <remediationinstructions>
      <instruction>
        <title>Open Server Ports</title>
        <description>Open Internet ports have been detected</description>
        <itemsheader>Please close the following server ports:</itemsheader>
        <items><item>tcp/41963</item></items>
      </instruction>
    </remediationinstructions>

:func:`parse_instructions` reads that XML (with defusedxml: no DTD, no
entities; it comes from the network); :func:`remediation_lines` renders it,
or a plain string or URI, as lines of text with control characters made
visible, so that what the server sent cannot drive the terminal.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import defusedxml
from defusedxml.ElementTree import fromstring

__all__ = ["Instruction", "parse_instructions", "printable", "remediation_lines"]

#: C0 and C1 controls but the line feed, DEL, and the line and paragraph separators
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_ROOT = "remediationinstructions"


def printable(text: str) -> str:
    """``text`` with every control character but the line feed shown as an
    escape (``\\x1b``): safe to print on a terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", text)


@dataclass(frozen=True, slots=True)
class Instruction:
    """One ``<instruction>``: what is wrong and what to do about which items."""

    title: str = ""
    description: str = ""
    items_header: str = ""
    items: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "description": self.description, "items_header": self.items_header,
                "items": list(self.items)}

    def lines(self) -> list[str]:
        head = ": ".join(printable(" ".join(t.split())) for t in (self.title, self.description) if t.strip())
        out = [head or "(no title)"]
        if self.items_header.strip():
            out.append("  " + printable(" ".join(self.items_header.split())))
        out += ["    " + printable(item.strip()) for item in self.items]
        return out


def _text(element) -> str:
    return "".join(element.itertext()).strip() if element is not None else ""


def parse_instructions(text: str) -> tuple[Instruction, ...] | None:
    """The instructions of a ``<remediationinstructions>`` document, None
    when ``text`` is no such document (plain text, malformed XML, a DTD)."""
    if f"<{_ROOT}" not in text:
        return None
    try:
        root = fromstring(text.encode("utf-8") if text.lstrip().startswith("<?xml") else text)
    except (ET.ParseError, defusedxml.DefusedXmlException, ValueError):
        return None
    if root.tag != _ROOT:
        return None
    out = []
    for instruction in root.iter("instruction"):
        items = instruction.find("items")
        out.append(Instruction(
            title=_text(instruction.find("title")), description=_text(instruction.find("description")),
            items_header=_text(instruction.find("itemsheader")),
            items=tuple(_text(item) for item in (items.iter("item") if items is not None else ()))))
    return tuple(out)


def remediation_lines(text: str) -> list[str]:
    """``text`` (instructions in XML, a plain string, a URI) as printable
    lines; at least one."""
    instructions = parse_instructions(text)
    if instructions is not None:
        lines = [line for instruction in instructions for line in instruction.lines()]
    else:
        lines = [printable(line.rstrip()) for line in text.strip("\n").splitlines()]
    return lines or ["(empty)"]
