"""EAP (RFC 3748) authenticator and methods, shared by the RADIUS and IKEv2 transports."""
