"""IKEv2 (RFC 7296): the VPN-gateway posture transport.

Sans-IO foundation for the IKE SA state machine and the Twisted service:

- ``transports.ikev2.message``: the message codec (header, every payload,
  SK/SKF sealing through a cipher object, NAT-T framing, typed errors that
  name the notify to answer with);
- ``transports.ikev2.transforms``: transform registries, strongSwan proposal
  strings and the responder's proposal selection;
- ``transports.ikev2.crypto``: Diffie-Hellman, prf/prf+, IKE SA and Child SA
  key derivation, SK payload ciphers, AUTH (shared key / EAP MSK and digital
  signatures), NAT detection hashes and cookies;
- ``transports.ikev2.fragment``: IKE message fragmentation and reassembly
  (RFC 7383).

None of them touches sockets or clocks: time is passed in.
"""
