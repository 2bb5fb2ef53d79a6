"""PT-TLS (RFC 6876): posture transport over TLS, TCP port 271.

``transports.pt_tls.wire`` is the message codec and stream framer,
``transports.pt_tls.negotiation`` the sans-IO connection state machines for
the NEA Server and the NEA Client (version negotiation, SASL PLAIN client
authentication or a TLS client certificate, then PB-TNC batches).  Neither
touches sockets, TLS or clocks: the Twisted layer feeds them the decrypted
byte stream and writes out what they return.  ``transports.pt_tls.admission``
(sans-IO too) decides which connections are taken before they authenticate
and counts the refusals for their log lines; ``transports.pt_tls.service``
is the Twisted layer.
"""
