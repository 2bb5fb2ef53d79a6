"""RADIUS (RFC 2865, RFC 3579): nac as the EAP server behind a NAS.

A NAS, 802.1X switch, WLAN controller or VPN gateway (strongSwan's
eap-radius) relays the endpoint's EAP conversation to nac in Access-Requests;
nac answers with Access-Challenge until the EAP method and the posture
exchange inside it end, then with Access-Accept (MS-MPPE keys, Filter-Id or
VLAN for the decision) or Access-Reject.

``transports.radius.packet`` is the packet codec with the attributes used
and the RADIUS cryptography (authenticators, MS-MPPE key hiding);
``transports.radius.clients`` the NASes (``[radius-client:NAME]``) and
which one a datagram comes from; ``transports.radius.server`` the sans-IO
server (duplicate cache,
EAP conversations, timeouts); ``transports.radius.enforcement`` the mapping
from a posture decision to reply attributes; ``transports.radius.service``
the Twisted UDP listeners.  ``transports.radius.accounting`` is the sans-IO
accounting server (RFC 2866, records kept by ``nac.db.accounting``);
``transports.radius.coa`` the sans-IO CoA / Disconnect client (RFC 5176) and
``transports.radius.dynamic`` what sends it when a recorded decision
changes.
"""
