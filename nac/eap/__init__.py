"""EAP (RFC 3748) authenticator and methods, shared by the RADIUS and IKEv2 transports.

Sans-IO throughout; Deferreds only where a step waits for the password
store or the TNCS core.

* :mod:`nac.eap.outcome` — what a conversation tells its transport (the contract).
* :mod:`nac.eap.server` — :class:`~nac.eap.server.EapServerSession` (the
  authenticator, ``IEapSession``) and :func:`~nac.eap.server.session_factory`,
  which the transports call with the ``[eap]`` configuration.
* :mod:`nac.eap.packet` — EAP packet codec; :mod:`nac.eap.method` — the
  interface every server-side method has.
* Methods: :mod:`nac.eap.md5` (EAP-MD5), :mod:`nac.eap.mschapv2`
  (EAP-MSCHAPv2 with the RFC 2759 / RFC 3079 computations, MD4 in
  :mod:`nac.eap.md4`), :mod:`nac.eap.ttls` (EAP-TTLS over
  :mod:`nac.eap.tls`, Diameter AVPs in :mod:`nac.eap.avp`) and the posture
  methods PT-EAP and EAP-TNC in :mod:`nac.eap.tnc`; the L/M/S framing they
  share is :mod:`nac.eap.fragments`.
* :mod:`nac.eap.logins` — the failed-login throttle of :mod:`nac.auth_throttle`
  around the methods that check a password, and which source a peer counts as.
"""
