"""Debian package lists as nac reads them: a ``Packages`` file of an
archive (or dpkg's ``status`` file), or a ``dpkg-query -W`` listing, plain
or compressed (gzip, xz, bzip2), as (name, version) pairs to record as a
product's releases.  ``nac-admin packages import`` and the web console's
import read them here; nothing here touches the database.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re

from nac.db.models import NAME_LENGTH

__all__ = ["MAX_PACKAGE_LIST_SIZE", "PackageListError", "read_package_list"]


class PackageListError(ValueError):
    """A package list that cannot be read; the message names the source and line."""


#: Debian package names (Debian Policy §5.6.1); dpkg-query may add ":ARCH".
_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
#: Characters of a Debian version ([epoch:]upstream[-revision], Policy §5.6.12).
_PACKAGE_VERSION = re.compile(r"[A-Za-z0-9.+~:-]+")
_COMPRESSED = ((b"\x1f\x8b", gzip.decompress, "gzip"), (b"\xfd7zXZ\x00", lzma.decompress, "xz"),
               (b"BZh", bz2.decompress, "bzip2"))
#: Largest package list read (uncompressed): a whole Debian archive's Packages is ~100 MB.
MAX_PACKAGE_LIST_SIZE = 512 * 1024 * 1024


def _check_package(where: str, name: str, version: str) -> tuple[str, str]:
    if not _PACKAGE_NAME.fullmatch(name) or len(name) > NAME_LENGTH:
        raise PackageListError(f"{where}: {name[:80]!r} is not a Debian package name")
    if not _PACKAGE_VERSION.fullmatch(version) or len(version) > NAME_LENGTH:
        raise PackageListError(f"{where}: {version[:80]!r} is not a Debian version (package {name})")
    return name, version


def read_package_list(data: bytes, source: str = "-") -> list[tuple[str, str]]:
    """(name, version) pairs from a Debian ``Packages`` (or dpkg ``status``)
    file or a ``dpkg-query -W`` listing, compressed or not; PackageListError
    naming the line of the first malformed entry."""
    for magic, decompress, kind in _COMPRESSED:
        if data.startswith(magic):
            try:
                data = decompress(data)
            except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
                raise PackageListError(f"{source}: not a valid {kind} file: {exc}") from None
            break
    if len(data) > MAX_PACKAGE_LIST_SIZE:
        raise PackageListError(f"{source}: larger than {MAX_PACKAGE_LIST_SIZE // (1024 * 1024)} MB")
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PackageListError(f"{source}:{line}: not UTF-8 text") from None
    lines = text.splitlines()
    if any(line.startswith("Package:") for line in lines):
        return _read_paragraphs(lines, source)
    return _read_listing(lines, source)


def _read_paragraphs(lines: list[str], source: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    fields: dict[str, str] = {}
    start = 1

    def paragraph_done():
        if not fields:
            return
        where = f"{source}:{start}"
        name, version = fields.get("package"), fields.get("version")
        if name is None:
            raise PackageListError(f"{where}: paragraph without a Package field")
        if version is None:
            raise PackageListError(f"{where}: package {name[:80]!r} has no Version field")
        status = fields.get("status")
        if status is not None and " ".join(status.split()) != "install ok installed":
            return  # a dpkg status file's removed or half-installed package
        out.append(_check_package(where, name, version))

    for number, line in enumerate(lines, 1):
        if not line.strip():
            paragraph_done()
            fields = {}
            continue
        if not fields:
            start = number
        if line[0] in " \t":
            continue  # continuation of a multi-line field
        key, colon, value = line.partition(":")
        if not colon:
            raise PackageListError(f"{source}:{number}: expected 'Field: value'")
        fields[key.strip().lower()] = value.strip()
    paragraph_done()
    return out


def _read_listing(lines: list[str], source: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) == 1:
            continue  # dpkg-query -W lists known but not installed packages without a version
        if len(parts) != 2:
            raise PackageListError(f"{source}:{number}: expected 'NAME<TAB>VERSION' as `dpkg-query -W` prints")
        name = parts[0].partition(":")[0]  # libc6:amd64
        out.append(_check_package(f"{source}:{number}", name, parts[1]))
    return out
