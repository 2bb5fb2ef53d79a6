"""The OS IMC (IETF PA subtype Operating System): what strongSwan's imc-os
sends, read from the host.

First message (to any IMV): Product Information (vendor PEN of the
distribution, product 0, the distribution name), String Version ("12
x86_64"), Numeric Version (12.0), Operational Status (operational since the
last boot), Forwarding Enabled (``/proc/sys/net/ipv4/ip_forward``), Factory
Default Password Enabled (no, unless configured) and the ITA-HSR Device ID
(the machine id).  On an Attribute Request it answers with the attributes
asked for, Installed Packages included (from the dpkg status database, the
packages whose status is "install ok installed").

Every host path is a constructor argument, so tests use fixture files.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nac.log import Logger

from nac.client.imc import PaTncImc, ReceivedPaMessage
from nac.pa import PaAttribute, PaSubtype, PaVendor
from nac.pa.ietf import (
    NEVER_USED,
    AttributeRequest,
    FactoryDefaultPasswordEnabled,
    ForwardingEnabled,
    ForwardingStatus,
    IetfAttributeType,
    InstalledPackages,
    NumericVersion,
    OperationalResult,
    OperationalStatus,
    OperationalStatusCode,
    ProductInformation,
    StringVersion,
)
from nac.pa.ita import DeviceId, ItaAttributeType

__all__ = [
    "DEFAULT_MACHINE_ID_PATHS",
    "DEFAULT_OS_RELEASE_PATHS",
    "DpkgPackage",
    "OsImc",
    "OsInfo",
    "forwarding_status",
    "installed_packages",
    "last_boot",
    "read_device_id",
    "read_os_info",
]

log = Logger(namespace="nac.client.os")

DEFAULT_OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release", "/etc/lsb-release", "/etc/debian_version")
# strongSwan reads the D-Bus copy; systemd's is the same id
DEFAULT_MACHINE_ID_PATHS = ("/var/lib/dbus/machine-id", "/etc/machine-id")
DPKG_STATUS = "/var/lib/dpkg/status"

# Product Vendor IDs (SMI PENs) strongSwan gives the distributions it knows,
# matched on the start of the distribution name.
_VENDOR_PENS = (
    ("Debian", 0x002572),
    ("Ubuntu", 0x007132),
    ("Fedora", 0x0076C1),
    ("Red Hat", 0x000908),
    ("Android", 0x002B79),
)


@dataclass(frozen=True, slots=True)
class OsInfo:
    """The endpoint's operating system as strongSwan's imc-os describes it."""

    name: str
    """Distribution name from the os-release ID, first letter upper case ('Debian')."""
    version: str
    """Release (VERSION_ID), e.g. '12'."""
    arch: str
    """Machine architecture (uname -m), e.g. 'x86_64'."""

    @property
    def vendor_id(self) -> int:
        for prefix, pen in _VENDOR_PENS:
            if self.name.startswith(prefix):
                return pen
        return PaVendor.IETF

    @property
    def version_string(self) -> str:
        """String Version's product version: '12 x86_64'."""
        return f"{self.version} {self.arch}"

    @property
    def numeric_version(self) -> tuple[int, int]:
        """(major, minor) read like atol() does: leading digits, 0 if none."""
        major, _, rest = self.version.partition(".")
        return _leading_int(major), _leading_int(rest)


def _leading_int(text: str) -> int:
    digits = ""
    for ch in text.strip():
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else 0


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _key_values(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            out[key.strip()] = _unquote(value)
    return out


def read_os_info(paths: Sequence[str | Path] = DEFAULT_OS_RELEASE_PATHS, *, machine: str | None = None) -> OsInfo | None:
    """The OS from the first readable release file (os-release format,
    lsb-release format, or debian_version), or None."""
    arch = machine or os.uname().machine
    for path in paths:
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        path = Path(path)
        if path.name == "debian_version":
            name, version = "Debian", text.strip().split(".")[0]
        elif path.name == "lsb-release":
            fields = _key_values(text)
            name, version = fields.get("DISTRIB_ID", ""), fields.get("DISTRIB_RELEASE", "")
        else:
            fields = _key_values(text)
            name, version = fields.get("ID", ""), fields.get("VERSION_ID", "")
            name = name[:1].upper() + name[1:]
        if not name or not version:
            log.warn("{path}: no distribution name or version found", path=str(path))
            continue
        if name.startswith("Raspbian") and arch == "armv7l":
            arch = "armhf"  # as strongSwan names it
        return OsInfo(name, version, arch)
    return None


def last_boot(proc_stat: str | Path = "/proc/stat", proc_uptime: str | Path = "/proc/uptime",
              now: Callable[[], float] | None = None) -> datetime.datetime | None:
    """Boot time from /proc/stat ``btime``, else now minus /proc/uptime."""
    try:
        for line in Path(proc_stat).read_text().splitlines():
            if line.startswith("btime "):
                return datetime.datetime.fromtimestamp(int(line.split()[1]), datetime.timezone.utc)
    except (OSError, ValueError, IndexError):
        pass
    try:
        uptime = int(float(Path(proc_uptime).read_text().split()[0]))  # whole seconds, as strongSwan
    except (OSError, ValueError, IndexError):
        return None
    current = now() if now is not None else datetime.datetime.now(datetime.timezone.utc).timestamp()
    return datetime.datetime.fromtimestamp(int(current) - uptime, datetime.timezone.utc)


def forwarding_status(path: str | Path = "/proc/sys/net/ipv4/ip_forward") -> ForwardingStatus:
    try:
        first = Path(path).read_text()[:1]
    except OSError:
        return ForwardingStatus.UNKNOWN
    return {"0": ForwardingStatus.DISABLED, "1": ForwardingStatus.ENABLED}.get(first, ForwardingStatus.UNKNOWN)


def read_device_id(paths: Iterable[str | Path] = DEFAULT_MACHINE_ID_PATHS) -> str | None:
    for path in paths:
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        if value:
            return value
    return None


# -- the dpkg status database -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DpkgPackage:
    name: str
    version: str
    architecture: str = ""


_status_cache: dict[str, tuple[tuple[int, int], tuple[DpkgPackage, ...]]] = {}


def installed_packages(path: str | Path = DPKG_STATUS) -> tuple[DpkgPackage, ...]:
    """The packages the dpkg status file says are 'install ok installed',
    sorted by name then architecture (the order dpkg-query lists them).

    Parsed once per file version (size and modification time), so many
    assessments in one process do not re-read it.  Missing file: ().
    """
    key = str(path)
    try:
        st = os.stat(path)
        cached = _status_cache.get(key)
        stamp = (st.st_mtime_ns, st.st_size)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        raw = Path(path).read_bytes()
    except OSError as exc:
        log.warn("cannot read the dpkg status file {path}: {err}", path=key, err=exc.strerror)
        return ()
    packages = tuple(sorted(_parse_status(raw.decode("utf-8", "replace")),
                            key=lambda p: (p.name, p.architecture)))
    _status_cache[key] = (stamp, packages)
    return packages


def _parse_status(text: str) -> Iterable[DpkgPackage]:
    # paragraphs of "Field: value" lines; continuation lines start with a blank
    for paragraph in text.split("\n\n"):
        name = version = status = arch = ""
        for line in paragraph.splitlines():
            if not line or line[0] in " \t":
                continue
            field, _, value = line.partition(":")
            if field == "Package":
                name = value.strip()
            elif field == "Version":
                version = value.strip()
            elif field == "Status":
                status = " ".join(value.split())
            elif field == "Architecture":
                arch = value.strip()
        if name and status == "install ok installed":
            yield DpkgPackage(name, version, arch)


# -- the IMC ------------------------------------------------------------------------------


class OsImc(PaTncImc):
    """strongSwan's OS IMC, reading this host (or the given files)."""

    name = "OS"
    subtype = PaSubtype.OPERATING_SYSTEM

    def __init__(
        self,
        *,
        os_release: Sequence[str | Path] = DEFAULT_OS_RELEASE_PATHS,
        machine: str | None = None,
        proc_stat: str | Path = "/proc/stat",
        proc_uptime: str | Path = "/proc/uptime",
        ip_forward: str | Path = "/proc/sys/net/ipv4/ip_forward",
        machine_id: Sequence[str | Path] = DEFAULT_MACHINE_ID_PATHS,
        dpkg_status: str | Path = DPKG_STATUS,
        device_id: str | None = None,
        default_password_enabled: bool = False,
        push_info: bool = True,
    ):
        self.os_release = tuple(os_release)
        self.machine = machine
        self.proc_stat = proc_stat
        self.proc_uptime = proc_uptime
        self.ip_forward = ip_forward
        self.machine_id = tuple(machine_id)
        self.dpkg_status = dpkg_status
        self.device_id = device_id
        self.default_password_enabled = default_password_enabled
        self.push_info = push_info
        self._packages: tuple[tuple[DpkgPackage, ...], InstalledPackages] | None = None

    # -- measurements, one method per attribute ---------------------------------------------

    def os_info(self) -> OsInfo | None:
        return read_os_info(self.os_release, machine=self.machine)

    def product_information(self) -> ProductInformation | None:
        info = self.os_info()
        return None if info is None else ProductInformation(info.vendor_id, 0, info.name)

    def string_version(self) -> StringVersion | None:
        info = self.os_info()
        return None if info is None else StringVersion(info.version_string, "", "")

    def numeric_version(self) -> NumericVersion | None:
        info = self.os_info()
        if info is None:
            return None
        major, minor = info.numeric_version
        return NumericVersion(major, minor, 0, 0, 0)

    def operational_status(self) -> OperationalStatus:
        boot = last_boot(self.proc_stat, self.proc_uptime)
        stamp = NEVER_USED if boot is None else boot.strftime("%Y-%m-%dT%H:%M:%SZ")
        return OperationalStatus(OperationalStatusCode.OPERATIONAL, OperationalResult.SUCCESSFUL, stamp)

    def forwarding_enabled(self) -> ForwardingEnabled:
        return ForwardingEnabled(forwarding_status(self.ip_forward))

    def factory_default_password_enabled(self) -> FactoryDefaultPasswordEnabled:
        return FactoryDefaultPasswordEnabled(self.default_password_enabled)

    def device(self) -> DeviceId | None:
        value = self.device_id or read_device_id(self.machine_id)
        return None if value is None else DeviceId(value)

    def installed_packages(self) -> InstalledPackages:
        found = installed_packages(self.dpkg_status)
        if self._packages is not None and self._packages[0] is found:
            return self._packages[1]  # the status file has not changed: nor has the attribute
        attribute = self._installed_packages(found)
        self._packages = (found, attribute)
        return attribute

    def _installed_packages(self, found: tuple[DpkgPackage, ...]) -> InstalledPackages:
        packages = []
        for pkg in found:
            if len(pkg.name.encode()) > 255 or len(pkg.version.encode()) > 255:
                log.warn("package {name} skipped: name or version longer than 255 bytes", name=pkg.name[:40])
                continue
            packages.append((pkg.name, pkg.version))
        if len(packages) > 0xFFFF:
            log.warn("{n} packages installed, Installed Packages carries the first 65535", n=len(packages))
            packages = packages[:0xFFFF]
        return InstalledPackages(tuple(packages))

    def _by_type(self):
        ietf, ita = PaVendor.IETF, PaVendor.ITA_HSR
        return {
            (ietf, IetfAttributeType.PRODUCT_INFORMATION): self.product_information,
            (ietf, IetfAttributeType.STRING_VERSION): self.string_version,
            (ietf, IetfAttributeType.NUMERIC_VERSION): self.numeric_version,
            (ietf, IetfAttributeType.OPERATIONAL_STATUS): self.operational_status,
            (ietf, IetfAttributeType.FORWARDING_ENABLED): self.forwarding_enabled,
            (ietf, IetfAttributeType.FACTORY_DEFAULT_PASSWORD_ENABLED): self.factory_default_password_enabled,
            (ietf, IetfAttributeType.INSTALLED_PACKAGES): self.installed_packages,
            (ita, ItaAttributeType.DEVICE_ID): self.device,
        }

    # -- PaTncImc ------------------------------------------------------------------------------

    def handshake_attributes(self, connection) -> list[PaAttribute]:
        if not self.push_info:
            return []
        attributes = [self.product_information(), self.string_version(), self.numeric_version(),
                      self.operational_status(), self.forwarding_enabled(),
                      self.factory_default_password_enabled(), self.device()]
        info = self.os_info()
        if info is not None:
            log.info("operating system is '{name}' version '{version}'",
                     name=info.name, version=info.version_string)
        return [a for a in attributes if a is not None]

    def reply_attributes(self, connection, message: ReceivedPaMessage,
                         attributes: tuple[PaAttribute, ...]) -> list[PaAttribute]:
        out: list[PaAttribute] = []
        measure = self._by_type()
        for attribute in attributes:
            if not isinstance(attribute, AttributeRequest):
                continue
            for vendor, attr_type in attribute.requested:
                make = measure.get((vendor, attr_type))
                if make is None:
                    log.debug("IMC \"OS\" cannot provide attribute 0x{v:06x}/0x{t:08x}", v=vendor, t=attr_type)
                    continue
                value = make()
                if value is not None:
                    out.append(value)
        return out
