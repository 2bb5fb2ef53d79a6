"""nac: a Network Access Control server, the TNC Server of Trusted Network
Connect with its IMVs, over PT-TLS, RADIUS and IKEv2 (see ARCHITECTURE)."""

#: nac's version, the one place it is written (setup.cfg reads it).
__version__ = "0.1.0"
