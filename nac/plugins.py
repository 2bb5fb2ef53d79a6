"""The transports nac can serve, found as plugins: every ``nac.transports``
entry point names an object providing :class:`nac.interfaces.ITransportPlugin`
(PT-TLS, RADIUS and IKEv2 are registered so, in nac's own setup.cfg, as a
third party's would be).  IMVs are found the same way under ``nac.imvs``
(:mod:`nac.tnccs.imv_manager`).

The plugins are loaded once per process, when a configuration is first read
(:func:`nac.config.load`): each declares its configuration section then.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from nac.interfaces import ITransportPlugin

__all__ = ["ENTRY_POINT_GROUP", "TransportPluginError", "transport_plugin", "transport_plugins"]

ENTRY_POINT_GROUP = "nac.transports"

_loaded: dict[str, object] | None = None
_broken: dict[str, str] = {}


class TransportPluginError(Exception):
    """A transport named in the configuration is not installed or cannot be loaded."""


def transport_plugins() -> dict[str, object]:
    """Every installed transport plugin by name, loaded and its options
    declared (once); a plugin that cannot be loaded is left out and its
    reason kept for :func:`transport_plugin`."""
    global _loaded
    if _loaded is None:
        found: dict[str, object] = {}
        for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if entry.name in found:
                continue  # the first distribution on the path wins, as for IMVs
            try:
                plugin = entry.load()
                verifyObject(ITransportPlugin, plugin)
                if plugin.name != entry.name:
                    raise TransportPluginError(f"it calls itself {plugin.name!r}")
                plugin.declare_options()
            except (Exception, Invalid) as exc:
                _broken[entry.name] = f"entry point {entry.value} cannot be loaded: {type(exc).__name__}: {exc}"
                continue
            found[entry.name] = plugin
        _loaded = found
    return _loaded


def transport_plugin(name: str):
    """The plugin of transport ``name``; TransportPluginError saying why not."""
    plugins = transport_plugins()
    try:
        return plugins[name]
    except KeyError:
        pass
    if name in _broken:
        raise TransportPluginError(f"transport {name!r}: {_broken[name]}")
    raise TransportPluginError(f"no transport {name!r} is installed (installed: {', '.join(plugins) or 'none'}; "
                               f"transports register under the {ENTRY_POINT_GROUP!r} entry points)")

