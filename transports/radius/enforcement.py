"""What a posture decision becomes in a RADIUS reply.

As strongSwan's tnc-pdp and the tnc@fhh FreeRADIUS setups do, the NAS is told
the outcome with attributes of the Access-Accept:

* ``Filter-Id`` (RFC 2865 §5.11): the name of a filter list configured on the
  NAS, by default ``allow`` / ``isolate``; for IPsec gateways with
  ``filter_id_tunnel_type = esp``, next to an untagged ``Tunnel-Type = ESP
  (9)``: strongSwan's eap-radius takes the Filter-Id as the client's group
  only then (its tnc-pdp sends the two together);
* and/or a VLAN (RFC 3580 §3.31, RFC 2868): ``Tunnel-Type = VLAN (13)``,
  ``Tunnel-Medium-Type = IEEE-802 (6)``, ``Tunnel-Private-Group-Id = <VLAN>``,
  the three sharing one tag so that hostapd and switches group them;
* optionally ``Session-Timeout`` (RFC 2865 §5.27) so the endpoint is assessed
  again when it runs out: with ``session_timeout_action = reauthenticate``
  beside ``Termination-Action = RADIUS-Request`` (§5.29), so that the NAS
  authenticates it again (and nac re-assesses it) rather than ending its
  session.

Access Denied is an Access-Reject.  A conversation that ended without a
posture exchange (plain EAP authentication) gets a plain Access-Accept.
The endpoint's groups may set their own Filter-Id, VLAN and
Session-Timeout (the decision's ``enforcement``, from the group policy);
what they leave unset is this configuration's.
"""

from __future__ import annotations

from dataclasses import dataclass

from zope.interface import implementer

from nac.interfaces import IEnforcement
from transports.radius.packet import (
    Attribute,
    AttributeType,
    MAX_TAG,
    Tagged,
    TunnelMediumType,
    TunnelType,
    encode_value,
)

__all__ = ["DEFAULT_TUNNEL_TAG", "RadiusEnforcement", "RadiusEnforcementAction"]

# RFC 2868 lets tag 0 mean "untagged"; a non-zero tag groups the three VLAN
# attributes unambiguously, and hostapd, FreeRADIUS and switches accept it.
DEFAULT_TUNNEL_TAG = 1
#: Termination-Action RADIUS-Request (RFC 2865 §5.29)
TERMINATION_RADIUS_REQUEST = 1


@dataclass(frozen=True, slots=True)
class RadiusEnforcementAction:
    """The RADIUS side of a decision: accept with ``attributes``, or reject."""

    accept: bool
    attributes: tuple[Attribute, ...] = ()
    description: str = ""
    """What the NAS is told, for the log line ("Filter-Id 'allow', VLAN 10")."""


_REJECT = RadiusEnforcementAction(False, (), "Access-Reject (access denied)")
_PLAIN_ACCEPT = RadiusEnforcementAction(True, (), "no posture assessment, no enforcement attributes")


@implementer(IEnforcement)
class RadiusEnforcement:
    """Maps a :class:`nac.tnccs.assessment.Decision` to reply attributes.

    The attributes of each access level are built once, here: the per-reply
    path only looks them up.
    """

    def __init__(self, *, filter_id_allow: str | None = "allow", filter_id_isolate: str | None = "isolate",
                 vlan_allow: str | None = None, vlan_isolate: str | None = None,
                 session_timeout: int = 0, tunnel_tag: int = DEFAULT_TUNNEL_TAG,
                 filter_id_tunnel_type: str = "none", session_timeout_action: str = "terminate"):
        if not 0 <= tunnel_tag <= MAX_TAG:
            raise ValueError("a tunnel tag is 0-31 (RFC 2868 §3.1)")
        if filter_id_tunnel_type not in ("none", "esp"):
            raise ValueError("filter_id_tunnel_type is none or esp")
        if filter_id_tunnel_type == "esp" and tunnel_tag == 0:
            raise ValueError("the VLAN attributes need a tag of their own beside the untagged Tunnel-Type ESP")
        self.esp_with_filter_id = filter_id_tunnel_type == "esp"
        if not 0 <= session_timeout < 1 << 32:
            raise ValueError("Session-Timeout is a 32-bit number of seconds")
        if session_timeout_action not in ("terminate", "reauthenticate"):
            raise ValueError("session_timeout_action is terminate or reauthenticate")
        self.tunnel_tag = tunnel_tag
        self.session_timeout = session_timeout
        # RFC 2865 §5.29: RADIUS-Request makes the NAS authenticate the
        # endpoint again when Session-Timeout runs out (a new assessment)
        # instead of ending its session
        self.reauthenticate = session_timeout_action == "reauthenticate"
        self._configured = {"allowed": (filter_id_allow, vlan_allow), "isolate": (filter_id_isolate, vlan_isolate)}
        self._group_actions: dict[tuple, RadiusEnforcementAction] = {}
        self._actions = {
            "allowed": self._accept("access allowed", filter_id_allow, vlan_allow),
            "isolate": self._accept("isolate", filter_id_isolate, vlan_isolate),
            "denied": _REJECT,
        }

    @classmethod
    def from_config(cls, section: dict) -> "RadiusEnforcement":
        """From the typed ``[radius]`` section (``NacConfig.section('radius')``)."""
        return cls(filter_id_allow=section["filter_id_allow"], filter_id_isolate=section["filter_id_isolate"],
                   vlan_allow=section["vlan_allow"], vlan_isolate=section["vlan_isolate"],
                   session_timeout=section["session_timeout"],
                   filter_id_tunnel_type=section.get("filter_id_tunnel_type", "none"),
                   session_timeout_action=section.get("session_timeout_action", "terminate"))

    def _accept(self, what: str, filter_id: str | None, vlan: str | None,
                session_timeout: int | None = None) -> RadiusEnforcementAction:
        attrs: list[Attribute] = []
        shown: list[str] = []
        if filter_id:
            attrs.append(Attribute(AttributeType.FILTER_ID, encode_value(AttributeType.FILTER_ID, filter_id)))
            shown.append(f"Filter-Id '{filter_id}'")
        if vlan:
            tag = self.tunnel_tag
            for attr_type, value in (
                    (AttributeType.TUNNEL_TYPE, Tagged(tag, TunnelType.VLAN)),
                    (AttributeType.TUNNEL_MEDIUM_TYPE, Tagged(tag, TunnelMediumType.IEEE_802)),
                    (AttributeType.TUNNEL_PRIVATE_GROUP_ID, Tagged(tag, vlan))):
                attrs.append(Attribute(attr_type, encode_value(attr_type, value)))
            shown.append(f"VLAN '{vlan}'")
        if filter_id and self.esp_with_filter_id:
            # untagged (tag 0), and after the VLAN's tagged Tunnel-Type:
            # strongSwan's eap-radius looks at the last Tunnel-Type only
            attrs.append(Attribute(AttributeType.TUNNEL_TYPE,
                                   encode_value(AttributeType.TUNNEL_TYPE, Tagged(0, TunnelType.ESP))))
            shown.append("Tunnel-Type ESP")
        timeout = self.session_timeout if session_timeout is None else session_timeout
        if timeout:
            attrs.append(Attribute(AttributeType.SESSION_TIMEOUT,
                                   encode_value(AttributeType.SESSION_TIMEOUT, timeout)))
            shown.append(f"Session-Timeout {timeout} s")
            if self.reauthenticate:
                attrs.append(Attribute(AttributeType.TERMINATION_ACTION,
                                       encode_value(AttributeType.TERMINATION_ACTION, TERMINATION_RADIUS_REQUEST)))
        return RadiusEnforcementAction(True, tuple(attrs), f"{what}: " + (", ".join(shown) or "no attributes"))

    def enforce(self, peer, decision) -> RadiusEnforcementAction:
        """The action for ``decision`` (None: no posture exchange took place).

        An access level this code does not know is enforced as denied: a
        NAC server fails closed.
        """
        if decision is None:
            return _PLAIN_ACCEPT
        access = getattr(decision, "access", None)
        action = self._actions.get(access, _REJECT)
        group = getattr(decision, "enforcement", None)
        if group is None or access not in self._configured:
            return action
        filter_id, vlan = self._configured[access]
        prefix = "allow" if access == "allowed" else "isolate"
        key = (access, getattr(group, f"filter_id_{prefix}") or filter_id, getattr(group, f"vlan_{prefix}") or vlan,
               group.session_timeout)
        if key[1:] == (filter_id, vlan, None):
            return action
        found = self._group_actions.get(key)
        if found is None:
            if len(self._group_actions) >= 1024:
                self._group_actions.clear()
            what = "access allowed" if access == "allowed" else "isolate"
            found = self._group_actions[key] = self._accept(f"{what} (group {group.groups[0] if group.groups else '?'})",
                                                            *key[1:])
        return found
