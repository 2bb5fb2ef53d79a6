"""Loading IMVs and dispatching PA messages to them (the TNCS side of IF-IMV).

IMVs are named in ``[nac] imvs`` either by a name registered under the
``nac.imvs`` entry-point group or by a dotted path ``package.module:Class``
(or ``package.module.Class``).  Each loaded IMV gets an IMV id, starting at 1
like strongSwan's, which is the PB-PA Posture Validator Identifier of the
messages it sends.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from zope.interface import implementer
from zope.interface.exceptions import BrokenImplementation, BrokenMethodImplementation, DoesNotImplement, Invalid
from zope.interface.verify import verifyObject

from nac.log import Logger
from nac.ifimv import (
    ANY_IMC_ID,
    ANY_SUBTYPE,
    ANY_SUBTYPE_LONG,
    ANY_VENDOR,
    ActionRecommendation,
    EvaluationResult,
)
from nac.interfaces import IImv, IImvConnection
from nac.pa.message import PaMessage
from nac.tnccs.recommendations import ImvVerdict

log = Logger(namespace="nac.imv")

ENTRY_POINT_GROUP = "nac.imvs"


class ImvLoadError(Exception):
    """An IMV named in the configuration could not be loaded."""


@dataclass(frozen=True, slots=True)
class ReceivedPaMessage:
    """A PA-TNC message as delivered to an IMV, or on the client side to an
    IMC (IF-IMV / IF-IMC ReceiveMessageLong), with its PB-PA header fields.

    ``pa`` is the parsed :class:`nac.pa.PaMessage` (parsed once for all
    subscribed IMVs or IMCs); ``body`` the exact bytes received.
    """

    vendor_id: int
    subtype: int
    collector_id: int
    validator_id: int
    exclusive: bool
    body: bytes
    pa: PaMessage


@dataclass(frozen=True, slots=True)
class OutgoingPaMessage:
    vendor_id: int
    subtype: int
    collector_id: int
    validator_id: int
    exclusive: bool
    body: bytes


@dataclass(frozen=True, slots=True)
class Remediation:
    imv_id: int
    instructions: str
    language: str
    uri: str | None


@implementer(IImvConnection)
class ImvConnection:
    """One IMV's handle on one TNCCS connection."""

    def __init__(self, connection, imv_id: int, imv_name: str):
        self._conn = connection
        self.imv_id = imv_id
        self.verdict = ImvVerdict(imv_id=imv_id, imv_name=imv_name)
        self.state = None

    @property
    def connection_id(self) -> int:
        return self._conn.connection_id

    @property
    def peer(self):
        return self._conn.peer

    @property
    def preferred_language(self) -> str:
        return self._conn.preferred_language

    @property
    def max_message_size(self) -> int:
        return self._conn.limits.max_message_size

    @property
    def store(self):
        """The core's policy store (nac.db.store.PolicyStore) or None."""
        return self._conn.core.store

    @property
    def reassembly(self):
        """The connection's budget for unfinished segmented attributes
        (nac.pa.segmentation.ReassemblyBudget) or None."""
        return getattr(self._conn, "reassembly", None)

    def session_id(self):
        """A Deferred firing with this assessment's session id in the
        policy store, or with None when nothing is recorded."""
        return self._conn.session_id()

    def send_message(self, vendor_id, subtype, body, collector_id=ANY_IMC_ID, exclusive=False):
        self._conn.queue_pa_message(OutgoingPaMessage(
            vendor_id=vendor_id, subtype=subtype, collector_id=collector_id,
            validator_id=self.imv_id, exclusive=exclusive, body=bytes(body)))

    def provide_recommendation(self, recommendation, evaluation):
        v = self.verdict
        v.recommendation = ActionRecommendation(recommendation)
        v.evaluation = EvaluationResult(evaluation)
        v.provided = True
        log.debug("IMV {imv_id} provides recommendation '{rec}' and evaluation '{ev}'",
                  imv_id=self.imv_id, rec=v.recommendation.label, ev=v.evaluation.label)

    def set_reason(self, reason, language="en"):
        self.verdict.reason = str(reason)
        self.verdict.reason_language = str(language)

    def add_remediation(self, instructions, language="en", uri=None):
        self.verdict.remediation.append(
            Remediation(self.imv_id, str(instructions), str(language), uri))

    def request_handshake_retry(self, reason):
        self._conn.request_handshake_retry(self.imv_id, reason)

    def identify_device(self, device_id, product=None):
        self._conn.identify_device(device_id, product)

    def endpoint_policy(self):
        return self._conn.endpoint_policy()

    def clear(self) -> None:
        """Forget the verdict (a handshake retry starts a new assessment)."""
        self.verdict = ImvVerdict(imv_id=self.imv_id, imv_name=self.verdict.imv_name)


@dataclass(slots=True)
class LoadedImv:
    imv_id: int
    name: str
    imv: Any
    subscriptions: tuple[tuple[int, int], ...] = field(default_factory=tuple)

    def subscribed(self, vendor_id: int, subtype: int) -> bool:
        return any(v in (vendor_id, ANY_VENDOR) and s in (subtype, ANY_SUBTYPE, ANY_SUBTYPE_LONG)
                   for v, s in self.subscriptions)


class ImvManager:
    """The IMVs of a nac process, in configuration order."""

    def __init__(self, imvs=()):
        self._imvs: list[LoadedImv] = []
        for imv in imvs:
            self.add(imv)

    def add(self, imv) -> LoadedImv:
        verifyObject(IImv, imv)
        loaded = LoadedImv(imv_id=len(self._imvs) + 1, name=imv.name, imv=imv,
                           subscriptions=tuple((int(v), int(s)) for v, s in imv.subscriptions))
        self._imvs.append(loaded)
        log.info("IMV {imv_id} \"{name}\" loaded", imv_id=loaded.imv_id, name=loaded.name)
        return loaded

    def __iter__(self):
        return iter(self._imvs)

    def __len__(self) -> int:
        return len(self._imvs)

    def get(self, imv_id: int):
        return self._imvs[imv_id - 1].imv

    def recipients(self, vendor_id: int, subtype: int, exclusive: bool,
                   validator_id: int) -> list[LoadedImv]:
        """The IMVs a PB-PA message goes to (RFC 5793 §4.5 EXCL semantics)."""
        out = []
        for loaded in self._imvs:
            if not loaded.subscribed(vendor_id, subtype):
                continue
            if exclusive and loaded.imv_id != validator_id:
                continue
            out.append(loaded)
        return out


def load_imv(spec: str, options_for) -> Any:
    """Instantiate the IMV named ``spec``.

    ``options_for(name, options)`` validates the IMV's ``[imv:NAME]`` section
    against the IMV's declared options and returns the typed values; an IMV
    class declares them as ``OPTIONS`` (a list of nac.config.Option) and takes
    them as keyword ``options`` in its constructor.
    """
    factory = _resolve(spec)
    name = getattr(factory, "name", None) or spec.rsplit(".", 1)[-1].rsplit(":", 1)[-1]
    declared = list(getattr(factory, "OPTIONS", ()))
    options = options_for(name, declared)
    try:
        imv = factory(options=options)
    except Exception as exc:  # an IMV failing to start is a start-up error
        raise ImvLoadError(f"IMV {spec!r} failed to start: {exc}") from exc
    try:
        verifyObject(IImv, imv)
    except Invalid as exc:
        raise ImvLoadError(f"IMV {spec!r} does not provide nac.interfaces.IImv: {_first_fault(exc)}") from exc
    return imv


def _first_fault(exc: Invalid) -> str:
    """What verifyObject found wrong, in one line."""
    faults = getattr(exc, "exceptions", None) or [exc]
    said = []
    if any(isinstance(fault, DoesNotImplement) for fault in faults):
        said.append("the class is not declared with @implementer(IImv)")
    missing = [getattr(fault.name, "__name__", str(fault.name)) for fault in faults
               if isinstance(fault, BrokenImplementation)]
    if missing:
        said.append("it lacks " + ", ".join(missing))
    wrong = [fault.method.__name__ for fault in faults if isinstance(fault, BrokenMethodImplementation)
             and hasattr(fault.method, "__name__")]
    if wrong:
        said.append("these methods do not match the interface: " + ", ".join(wrong))
    return "; ".join(said) or " ".join(str(exc).split())


def _resolve(spec: str):
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == spec:
            try:
                return ep.load()
            except Exception as exc:
                raise ImvLoadError(f"IMV {spec!r} (entry point {ep.value}) cannot be loaded: {exc}") from exc
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
    elif "." in spec:
        module_name, _, attr = spec.rpartition(".")
    else:
        raise ImvLoadError(
            f"unknown IMV {spec!r}: not a registered '{ENTRY_POINT_GROUP}' entry point "
            "nor a dotted path like 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ImvLoadError(f"IMV {spec!r} cannot be loaded: {exc}") from exc
