"""ISO/IEC 19770-2 SWID tags: the fields nac keeps (the SWIMA IMV, the HTTP API's
sw-collector endpoints), parsed safely.

A SWIMA record (RFC 8412 §5.10) carries a SWID tag as XML in one of two data
models (§10.2): ISO/IEC 19770-2:2015 (``SoftwareIdentity``, data model type
0) or ISO/IEC 19770-2:2009 (``software_identification_tag``, type 1).  The
XML comes from the endpoint, so it is parsed with defusedxml (no DTDs, no
entities, no external references) and only after a size check.

Its Software Identifier (RFC 8412 §3.4.1) is the tag creator's regid, two
underscores and the tag's unique id, e.g.
``strongswan.org__Debian_12-x86_64-bash-5.2.15-2~b8``; :class:`SwidTag`
derives it so a record whose identifier does not match its tag is caught.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as SafeElementTree

__all__ = [
    "DEFAULT_MAX_TAG_SIZE",
    "ISO_2009_NAMESPACE",
    "ISO_2015_NAMESPACE",
    "SwidTag",
    "SwidTagError",
    "SwidTagFormat",
    "parse_swid_tag",
]

ISO_2015_NAMESPACE = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
ISO_2009_NAMESPACE = "http://standards.iso.org/iso/19770/-2/2009/schema.xsd"

#: Largest tag accepted by default; package tags are a few hundred bytes.
DEFAULT_MAX_TAG_SIZE = 64 * 1024
#: Longest text kept from one field (names, versions, ids).
MAX_FIELD_LENGTH = 1024

_SOFTWARE_IDENTITY = f"{{{ISO_2015_NAMESPACE}}}SoftwareIdentity"
_ENTITY = f"{{{ISO_2015_NAMESPACE}}}Entity"
_TAG_2009 = f"{{{ISO_2009_NAMESPACE}}}software_identification_tag"


class SwidTagFormat(enum.IntEnum):
    """The SWIMA Software Data Model Types of SWID tags (RFC 8412 §10.2)."""

    ISO_2015 = 0
    ISO_2009 = 1


class SwidTagError(ValueError):
    """A SWID tag that is too large, not well-formed, unsafe or incomplete."""


@dataclass(frozen=True, slots=True)
class SwidTag:
    """The parts of a SWID tag nac stores and logs (ISO/IEC 19770-2 §8)."""

    tag_id: str
    name: str
    version: str
    version_scheme: str
    tag_creator_regid: str
    tag_creator_name: str = ""
    corpus: bool = False
    patch: bool = False
    supplemental: bool = False
    format: SwidTagFormat = SwidTagFormat.ISO_2015

    @property
    def software_identifier(self) -> str:
        """RFC 8412 §3.4.1: tag creator regid + '__' + unique id."""
        return f"{self.tag_creator_regid}__{self.tag_id}"


def parse_swid_tag(data: bytes | str, *, max_size: int = DEFAULT_MAX_TAG_SIZE) -> SwidTag:
    """The :class:`SwidTag` in ``data`` (2015 or 2009 format); :class:`SwidTagError` otherwise."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > max_size:
        raise SwidTagError(f"SWID tag of {len(raw)} bytes exceeds the {max_size}-byte limit")
    try:
        root = SafeElementTree.fromstring(raw, forbid_dtd=True, forbid_entities=True,
                                          forbid_external=True)
    except ParseError as exc:
        raise SwidTagError(f"SWID tag is not well-formed XML: {exc}") from None
    except defusedxml.DefusedXmlException as exc:
        raise SwidTagError(f"SWID tag refused: {type(exc).__name__}") from None
    if root.tag == _SOFTWARE_IDENTITY:
        return _parse_2015(root)
    if root.tag == _TAG_2009:
        return _parse_2009(root)
    raise SwidTagError(f"not a SWID tag: root element {_shorten(root.tag)!r}")


def _parse_2015(root: Element) -> SwidTag:
    tag_id = _field(root.get("tagId"), "tagId")
    name = _field(root.get("name"), "name")
    creator = None
    for entity in root.iter(_ENTITY):
        if "tagCreator" in (entity.get("role") or "").split():
            creator = entity
            break
    if creator is None:
        raise SwidTagError("SWID tag has no Entity with role tagCreator")
    return SwidTag(
        tag_id=tag_id,
        name=name,
        version=_field(root.get("version", "0.0"), "version", required=False),
        version_scheme=_field(root.get("versionScheme", "multipartnumeric"), "versionScheme",
                              required=False),
        tag_creator_regid=_field(creator.get("regid", "http://invalid.unavailable"), "regid"),
        tag_creator_name=_field(creator.get("name"), "Entity name", required=False),
        corpus=_boolean(root.get("corpus")),
        patch=_boolean(root.get("patch")),
        supplemental=_boolean(root.get("supplemental")),
        format=SwidTagFormat.ISO_2015,
    )


def _child_text(parent: Element, *path: str) -> str | None:
    node = parent
    for step in path:
        node = node.find(f"{{{ISO_2009_NAMESPACE}}}{step}")
        if node is None:
            return None
    return (node.text or "").strip()


def _parse_2009(root: Element) -> SwidTag:
    return SwidTag(
        tag_id=_field(_child_text(root, "unique_id"), "unique_id"),
        name=_field(_child_text(root, "product_title"), "product_title"),
        version=_field(_child_text(root, "product_version", "name"), "product_version",
                       required=False),
        version_scheme="",
        tag_creator_regid=_field(_child_text(root, "tag_creator", "regid"), "tag_creator regid"),
        tag_creator_name=_field(_child_text(root, "tag_creator", "name"), "tag_creator name",
                                required=False),
        format=SwidTagFormat.ISO_2009,
    )


def _field(value: str | None, what: str, *, required: bool = True) -> str:
    if value is None or not value.strip():
        if required:
            raise SwidTagError(f"SWID tag lacks its {what}")
        return ""
    if len(value) > MAX_FIELD_LENGTH:
        raise SwidTagError(f"SWID tag {what} is longer than {MAX_FIELD_LENGTH} characters")
    return value.strip()


def _boolean(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1")


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
