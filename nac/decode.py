"""``nac-decode``: dump one PB-TNC batch and the PA-TNC messages inside it.

    nac-decode [--json] (--hex HEX | FILE)

FILE holds the raw batch bytes or their hex text (``-`` reads stdin).  The
dump names things the way strongSwan logs them
(``'IETF/Product Information' 0x000000/0x00000002``); ``--json`` prints one
JSON object instead.  Both say whether re-encoding reproduced the input
exactly.  Malformed input exits with status 1 and the failing byte offset.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import string
import sys
from typing import Any

from nac.console import print_output
from nac.pa import PaMessage, PaTncError
from nac.pb import (
    PbBatch,
    PbError,
    PbMessage,
    PbPa,
    PbTncError,
    UnknownPbMessage,
    vendor_name,
)

__all__ = ["DecodeError", "decode", "main"]

_HEX_DIGITS = frozenset(string.hexdigits + string.whitespace)
_SKIP = object()
_MAX_INLINE_ITEMS = 32
_MAX_INLINE_BYTES = 64
_MAX_INLINE_TEXT = 512


class DecodeError(Exception):
    """Malformed input; ``str()`` names the layer and the batch byte offset."""


def parse_hex(text: str) -> bytes:
    """The bytes of hex digits (blanks between them allowed); DecodeError
    naming the position in ``text`` (counted from 0, blanks included) of a
    character that is no hex digit, or of a last digit without its pair."""
    try:
        return bytes.fromhex("".join(text.split()))
    except ValueError:
        pass  # find what is wrong, and where in what was given
    digits = []
    for position, char in enumerate(text):
        if char in string.hexdigits:
            digits.append((position, char))
        elif not char.isspace():
            raise DecodeError(f"invalid hex input: {char!r} at position {position} is not a hex digit")
    if len(digits) % 2:
        position, char = digits[-1]
        raise DecodeError(f"invalid hex input: an odd number of hex digits ({len(digits)}); the last, "
                          f"{char!r} at position {position}, has no pair")
    raise DecodeError("invalid hex input")  # not reached: fromhex takes what passed the checks


def read_input(raw: bytes) -> bytes:
    """Raw batch bytes, or hex text of them (whitespace allowed)."""
    stripped = raw.strip()
    if stripped and all(chr(b) in _HEX_DIGITS for b in stripped):
        return parse_hex(stripped.decode("ascii"))
    return raw


# -- PA-TNC ------------------------------------------------------------------


def _attr_ids(attr: Any) -> tuple[int | None, int | None]:
    vendor = getattr(attr, "VENDOR", None)
    if vendor is None:
        vendor = getattr(attr, "vendor", None)
    attr_type = getattr(attr, "TYPE", None)
    if attr_type is None:
        attr_type = getattr(attr, "type", None)
    return vendor, attr_type


def _attr_description(attr: Any) -> str:
    describe = getattr(attr, "describe", None)
    if callable(describe):
        return describe()
    vendor, attr_type = _attr_ids(attr)
    name = getattr(attr, "full_name", None) or f"{vendor_name(vendor or 0)}/{type(attr).__name__}"
    return f"'{name}' 0x{vendor or 0:06x}/0x{attr_type or 0:08x}"


def _simple(value: Any, depth: int = 0) -> Any:
    """A JSON-friendly rendering of a field when it is small and simple."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, enum.Enum):
        return value.name if value.name else int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= _MAX_INLINE_TEXT else _SKIP
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex() if len(value) <= _MAX_INLINE_BYTES else _SKIP
    if depth < 2 and isinstance(value, (tuple, list)) and len(value) <= _MAX_INLINE_ITEMS:
        items = [_simple(v, depth + 1) for v in value]
        return _SKIP if any(i is _SKIP for i in items) else items
    if depth < 2 and dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields(value, depth + 1) or _SKIP
    return _SKIP


def _fields(obj: Any, depth: int = 0, *, exclude: frozenset[str] = frozenset({"noskip"})) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.name in exclude or f.name.startswith("_"):
            continue
        value = getattr(obj, f.name)
        rendered = _simple(value, depth)
        if rendered is not _SKIP:
            out[f.name] = rendered
        elif isinstance(value, (tuple, list)):
            out[f"{f.name}_count"] = len(value)
        elif isinstance(value, (bytes, bytearray, str)):
            out[f"{f.name}_length"] = len(value)
    return out


def _decode_pa(message: PbPa, body_offset: int) -> dict[str, Any]:
    try:
        parsed = PaMessage.parse(message.body)
    except PaTncError as exc:
        where = getattr(exc, "offset", None)
        at = f" at batch offset {body_offset + where}" if isinstance(where, int) else ""
        raise DecodeError(f"PA-TNC error in PB-PA message{at}: {exc}") from None
    attributes = []
    for attr in parsed.attributes:
        vendor, attr_type = _attr_ids(attr)
        entry: dict[str, Any] = {
            "vendor": vendor,
            "type": attr_type,
            "name": getattr(attr, "full_name", None) or getattr(attr, "NAME", type(attr).__name__),
            "description": _attr_description(attr),
            "noskip": bool(getattr(attr, "noskip", False)),
        }
        if dataclasses.is_dataclass(attr):
            for key, value in _fields(attr).items():
                entry.setdefault(key, value)
        attributes.append(entry)
    return {
        "version": getattr(parsed, "version", None),
        "message_id": parsed.message_id,
        "attributes": attributes,
        "roundtrip": parsed.build() == message.body,
    }


# -- PB-TNC -----------------------------------------------------------------


def _message_entry(message: PbMessage, offset: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": message.NAME,
        "name": message.full_name,
        "vendor": message.msg_vendor,
        "type_id": message.msg_type,
        "noskip": message.noskip,
        "offset": offset,
        "length": message.size,
    }
    if isinstance(message, PbPa):
        entry.update(
            pa_vendor=message.pa_vendor,
            pa_subtype=message.pa_subtype,
            pa_subtype_name=message.subtype_name,
            collector_id=message.collector_id,
            validator_id=message.validator_id,
            exclusive=message.exclusive,
            body_length=len(message.body),
        )
    elif isinstance(message, PbError):
        fields = _fields(message)
        fields["error_vendor"] = fields.pop("vendor")
        fields["code_name"] = message.code_name
        entry.update(fields)
    elif isinstance(message, UnknownPbMessage):
        entry["value"] = message.value.hex()
    else:
        entry.update(_fields(message))
    return entry


def decode(data: bytes) -> dict[str, Any]:
    """Decode one batch into the JSON-ready structure ``--json`` prints."""
    try:
        batch = PbBatch.parse(data)
    except PbTncError as exc:
        raise DecodeError(str(exc)) from None
    messages = []
    roundtrip = batch.build() == data
    for offset, message in zip(batch.message_offsets, batch.messages):
        entry = _message_entry(message, offset)
        if isinstance(message, PbPa):
            decoded = _decode_pa(message, offset + 24)
            entry["pa_version"] = decoded["version"]
            entry["message_id"] = decoded["message_id"]
            entry["attributes"] = decoded["attributes"]
            entry["roundtrip"] = decoded["roundtrip"]
            roundtrip = roundtrip and decoded["roundtrip"]
        messages.append(entry)
    return {
        "batch_type": batch.batch_type.name,
        "direction": batch.direction.label,
        "version": batch.version,
        "length": len(data),
        "messages": messages,
        "roundtrip": roundtrip,
    }


def _format_fields(fields: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in fields.items())


def render_text(result: dict[str, Any]) -> str:
    lines = [
        f"PB-TNC {result['batch_type']} batch ({result['length']} bytes), {result['direction']}, "
        f"version {result['version']}"
    ]
    skip = {"type", "name", "vendor", "type_id", "noskip", "offset", "length", "attributes",
            "message_id", "pa_version", "roundtrip"}
    for m in result["messages"]:
        flags = ", NOSKIP" if m["noskip"] else ""
        lines.append(f"  {m['name']} message ({m['length']} bytes) at offset {m['offset']}{flags}")
        details = {k: v for k, v in m.items() if k not in skip}
        if details:
            lines.append(f"    {_format_fields(details)}")
        if "message_id" in m:
            lines.append(f"    PA-TNC message with ID 0x{m['message_id']:08x} (version {m['pa_version']})")
            for attr in m["attributes"]:
                flag = " NOSKIP" if attr["noskip"] else ""
                lines.append(f"      {attr['description']}{flag}")
                extra = {k: v for k, v in attr.items()
                         if k not in {"vendor", "type", "name", "description", "noskip"}}
                if extra:
                    lines.append(f"        {_format_fields(extra)}")
    lines.append(f"round trip: {'identical' if result['roundtrip'] else 'DIFFERENT'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nac-decode", description="Decode one PB-TNC batch (RFC 5793).")
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hex", metavar="HEX", help="the batch as hex digits")
    source.add_argument("file", nargs="?", metavar="FILE", help="file with raw or hex batch bytes ('-' = stdin)")
    args = parser.parse_args(argv)

    try:
        if args.hex is not None:
            data = parse_hex(args.hex)
        elif args.file == "-":
            data = read_input(sys.stdin.buffer.read())
        else:
            with open(args.file, "rb") as handle:
                data = read_input(handle.read())
        result = decode(data)
    except OSError as exc:
        print(f"nac-decode: {exc}", file=sys.stderr)
        return 1
    except DecodeError as exc:
        print(f"nac-decode: malformed input: {exc}", file=sys.stderr)
        return 1

    if args.json:
        print_output(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print_output(render_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
