"""The contracts between nac's parts (zope.interface).

Transports know nothing about IMVs and IMVs know nothing about transports;
they meet in the TNCS core through these interfaces.  Tests check the real
implementations with ``zope.interface.verify.verifyObject``.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class ITnccsCore(Interface):
    """The one TNC Server of a nac process, shared by every transport."""

    def open_connection(peer, limits, protocol="pb-tnc"):
        """Start a TNCCS connection for one endpoint.

        ``protocol``: 'pb-tnc' (IF-TNCCS 2.0, RFC 5793), 'tnccs-1.1' (the TCG
        XML protocol of legacy EAP-TNC clients) or 'dynamic' (decided by the
        client's first batch, as strongSwan's tnccs-dynamic does).

        :param peer: a :class:`nac.tnccs.assessment.PeerInfo` (transport name,
            address, authenticated identity).
        :param limits: a :class:`nac.tnccs.assessment.TransportLimits` (maximum
            batch and PA message size the transport can carry).
        :returns: an :class:`ITnccsConnection`.
        """


class ITnccsConnection(Interface):
    """One posture assessment, fed batches by exactly one transport session.

    The transport hands every batch it receives to :meth:`receive_batch` and
    sends what comes back; it never looks inside the batches.
    """

    connection_id = Attribute("Connection ID, unique within the process")
    decision = Attribute("The nac.tnccs.assessment.Decision once reached, else None")
    finished = Attribute("True once nothing more may be sent or received")

    def receive_batch(data):
        """Process one whole batch from the endpoint.

        :returns: a Deferred firing with a
            :class:`nac.tnccs.assessment.BatchOutcome` (batches to send, decision
            if one was reached, whether the transport should close).  Batches
            passed while an earlier one is still being processed are queued.
        """

    def receive_acknowledgement():
        """The endpoint acknowledged the last batch without a batch of its
        own: IF-TNCCS 1.1 over EAP-TNC, whose clients answer with an empty
        message when their collectors have nothing to say (strongSwan's does
        after a request it cannot serve).

        :returns: for IF-TNCCS 1.1, a Deferred firing with the
            :class:`nac.tnccs.assessment.BatchOutcome` of the batch carrying
            the recommendation, which the IMVs are asked for now; None where
            every turn is a batch (PB-TNC, or no protocol chosen yet), and the
            transport treats the empty message as an error.
        """

    def abort(reason):
        """The transport lost the endpoint (timeout, disconnect): release all
        state, notify the IMVs, and never reply again."""


class IHandshakeRetry(Interface):
    """A TNCCS connection whose server can start a new assessment of the
    endpoint after its decision, on the same connection (PB-TNC's SRETRY
    batch, RFC 5793 §3.2): what a transport that keeps its sessions open
    calls on its re-assessment schedule (PT-TLS, RFC 6876 §3.4)."""

    def retry_handshake(reason):
        """Start a new assessment: in the Decided state, an SRETRY batch.

        :returns: a Deferred firing with a
            :class:`nac.tnccs.assessment.BatchOutcome` carrying the SRETRY
            batch to send (the endpoint's next CDATA begins the new
            assessment, recorded as a session of its own), or with None
            when the connection cannot retry now (no decision yet, ended,
            or taking part in mutual PB-TNC); queued behind batches still
            being processed, as :meth:`ITnccsConnection.receive_batch`.
        """


class IPbTncClientRole(Interface):
    """The PB-TNC client role of one connection, sans-IO
    (:class:`nac.client.pb_client.PbTncClient`): the TNC client nac plays
    for an endpoint's IMVs in mutual PB-TNC (:mod:`nac.tnccs.mutual`)."""

    connection_id = Attribute("TNCCS Connection ID (the TNCS connection's)")
    finished = Attribute("True once its exchange ended (CLOSE sent or received)")
    outcome = Attribute("nac.client.pb_client.AssessmentOutcome: the endpoint's verdict on nac so far")

    def receive_batch(data):
        """Process one batch of the endpoint's TNCS (D bit set).

        :returns: a nac.client.pb_client.ClientStep: ``batch`` to send (or
            None), ``close`` once the exchange is over, ``outcome``, and
            ``answers_result``, whether it is the CLOSE answering a RESULT.
        """

    def abort(reason):
        """End the exchange without another batch (the connection ended)."""


class IMutualClientFactory(Interface):
    """nac's own TNC client for mutual PB-TNC: makes the client role whose
    collectors answer an endpoint's IMVs on one connection.  Given to the
    TNCS core by the composition (:func:`nac.server.build_core`); provided
    by :class:`nac.client.mutual.CollectorClients`."""

    collectors = Attribute("Names of the collectors the client roles run, for logs")

    def open_client(connection_id, limits, max_rounds):
        """A new :class:`IPbTncClientRole` for one connection, answering
        the endpoint's TNCS (whose first batch is an SDATA), within
        ``limits`` (a nac.tnccs.assessment.TransportLimits), giving up
        after ``max_rounds`` server batches without a result."""


class IImvConnection(Interface):
    """The TNCS seen by one IMV for one connection (IF-IMV's TNC_TNCS_*
    functions, bound to an IMV id and a connection id)."""

    connection_id = Attribute("Connection ID")
    imv_id = Attribute("The IMV's id (PB-PA Posture Validator Identifier)")
    peer = Attribute("nac.tnccs.assessment.PeerInfo of the endpoint")
    preferred_language = Attribute("Accept-Language value of the client, or ''")
    max_message_size = Attribute("Largest PA message the transport carries")
    state = Attribute("Free slot for the IMV's own per-connection state")
    store = Attribute("The core's policy store (a nac.db.store.PolicyStore) or None")
    reassembly = Attribute("The connection's nac.pa.segmentation.ReassemblyBudget for unfinished segmented "
                           "attributes, shared by its IMVs' Reassemblers, or None")

    def session_id():
        """A Deferred firing with the session id this assessment is recorded
        under in the policy store, or with None when nothing is recorded."""

    def send_message(vendor_id, subtype, body, collector_id=0xFFFF, exclusive=False):
        """Queue a PA-TNC message (bytes) for the endpoint's collectors."""

    def provide_recommendation(recommendation, evaluation):
        """TNC_TNCS_ProvideRecommendation."""

    def set_reason(reason, language="en"):
        """A human-readable reason for the recommendation (PB-Reason-String)."""

    def add_remediation(instructions, language="en", uri=None):
        """Remediation instructions or a URI for the endpoint's user."""

    def request_handshake_retry(reason):
        """TNC_TNCS_RequestHandshakeRetry."""

    def identify_device(device_id, product=None):
        """The IMV learned the endpoint's device (ITA-HSR Device ID) and its
        product ('Debian 12 x86_64'): the group policy of this assessment is
        looked up with them from now on (strongSwan's imv_session device,
        shared by the IMVs of a connection)."""

    def endpoint_policy():
        """A Deferred firing with the :class:`IEndpointPolicy` of the
        endpoint as known now (identity; device and product once an IMV
        identified them), read at that time, so a change to the policy
        database counts from the next assessment on; None when the server
        has no policy source.  Fails when the policy cannot be read: the
        IMV then fails closed."""


class IImv(Interface):
    """An Integrity Measurement Verifier (IF-IMV in Python form).

    Every method may return a Deferred (for example when it reads the
    database off the reactor); the core waits for it before going on.
    """

    name = Attribute("Short name used in configuration and logs, e.g. 'os'")
    subscriptions = Attribute(
        "Sequence of (vendor_id, subtype) PA message types the IMV receives; "
        "nac.ifimv.ANY_VENDOR / ANY_SUBTYPE_LONG are wildcards")

    def notify_connection_change(connection, state):
        """TNC_IMV_NotifyConnectionChange with a nac.ifimv.ConnectionState."""

    def receive_message(connection, message):
        """TNC_IMV_ReceiveMessageLong: ``message`` is a
        nac.tnccs.imv_manager.ReceivedPaMessage."""

    def batch_ending(connection):
        """TNC_IMV_BatchEnding: the last message of a client batch was
        delivered; a good moment to send requests or decide."""

    def solicit_recommendation(connection):
        """TNC_IMV_SolicitRecommendation: the IMV must provide a recommendation
        now, with whatever it has (its no-result recommendation if nothing)."""


class IEnforcement(Interface):
    """Turns a decision into a transport's own action (RADIUS attributes,
    IKEv2 CHILD_SA traffic selectors, or nothing for PT-TLS)."""

    def enforce(peer, decision):
        """Return the transport-specific enforcement for ``decision``."""


class IPostureTransport(Interface):
    """A transport service (PT-TLS, RADIUS, IKEv2) enabled per deployment.

    Providers are also twisted.application.service.IService."""

    transport_name = Attribute("'pt-tls', 'radius' or 'ikev2'")
    core = Attribute("The ITnccsCore the transport feeds")


class IPolicyStore(Interface):
    """Where sessions, devices, measurements and results are kept.

    Every method returns a Deferred: implementations run their queries off
    the reactor."""

    def session_started(peer, connection_id):
        """Record the start of an assessment; fires with a session id."""

    def session_decided(session_id, decision):
        """Record the final decision and the per-IMV results; fires once
        committed."""

    # The core uses the two below when a store has them (getattr): stores
    # made for tests may leave them out.

    def session_aborted(session_id, reason):
        """Record that an undecided session ended without a decision (the
        endpoint or its transport gave up); a decided one stays as it is."""

    def bounded_wait(d):
        """A Deferred firing with None once ``d`` fired or the store's
        bounded wait passed, whichever comes first; it never fails.  The
        core holds a decision on it until the decision is recorded, so that
        an endpoint hears no decision the database lacks while the database
        works, and never waits long while it does not."""


class IPolicySource(Interface):
    """The group policy (:class:`nac.policy.PolicySource`): groups of
    devices and identities, the policies (checks) their enforcements apply,
    and what the transports enforce per group.  The TNCS core holds one
    (``core.policy_source``) when it has a policy store; IMVs reach it
    through :meth:`IImvConnection.endpoint_policy`."""

    def resolve(endpoint):
        """A Deferred firing with the :class:`IEndpointPolicy` of
        ``endpoint`` (a :class:`nac.policy.Endpoint`: identity, device id,
        product), as the database says at the time of the call, in every
        process sharing it."""


class IEndpointPolicy(Interface):
    """The policy in force for one endpoint."""

    groups = Attribute("Names of the endpoint's groups (its own and their ancestors), most specific first")
    enforcement = Attribute(
        "The nac.tnccs.assessment.GroupEnforcement the transports apply (None fields: their configuration)")

    def governs(types):
        """Whether an enforcement of the endpoint's groups applies a policy
        of one of ``types`` (nac.db.models.PolicyType values).  When it
        does, those policies replace the IMV's own configuration for that
        family of checks (the configuration is the default group's policy),
        even if none is due now."""

    def checks(types):
        """The :class:`nac.policy.Check` values of ``types`` due now: a
        check whose last result on the device allowed access within its
        enforcement's maximum age is left out (it passed)."""

    def record(check, recommendation, session_id):
        """Keep what ``check`` gave on the endpoint's device (for the
        maximum age); a Deferred.  Nothing is kept without a device or
        for a check without maximum age."""


class IEapSession(Interface):
    """One EAP authenticator conversation (RFC 3748 §2, the server side),
    carried by a transport (RADIUS EAP-Message, IKEv2 EAP payload).

    Sans-IO: the transport passes whole EAP packets and sends what comes
    back; it owns timers and calls :meth:`abort` when it gives up.
    """

    def start():
        """Return the first EAP-Request (Identity) for transports where the
        authenticator speaks first (IKEv2).  RADIUS skips this: the NAS has
        already asked for the identity and the first Access-Request carries
        the EAP-Response/Identity."""

    def receive(packet):
        """Process one EAP packet from the peer.

        :returns: a Deferred firing with a nac.eap.outcome.EapOutcome.
            Packets passed while an earlier one is being processed are
            answered in order.
        """

    def abort(reason):
        """The transport gave up on the peer (timeout, shutdown): release all
        state, including any TNCCS connection, and never reply again."""

    # Optional: ``limit_request_size(size)``, the largest EAP packet the
    # transport can carry to the peer (RADIUS: Framed-MTU - 4, RFC 3580);
    # a session having it lowers its fragment size to fit, never raises it.


class ITransportPlugin(Interface):
    """A transport nac can serve: PT-TLS, RADIUS, IKEv2, or a third party's.

    Found by its ``nac.transports`` entry point (:mod:`nac.plugins`), the
    built-in ones as any other; enabled by its name in ``[nac] transports``;
    configured in the section of that name.  :mod:`nac.tap` builds the main
    process with it, :mod:`nac.processes` the worker processes.
    """

    name = Attribute("Its name in [nac] transports and the name of its configuration section")
    description = Attribute("One line saying what it is (the sample configuration, errors)")
    listen_protocol = Attribute("'TCP' or 'UDP': what its port numbers are, for a listen error")

    def declare_options():
        """Declare its configuration section (nac.config.declare_section)
        and any other of its own; called once, before any configuration is
        read."""

    def check(cfg):
        """Problems of its configuration that span keys (a list of lines,
        each naming file, section and key); nac.config calls it for every
        configuration it loads, whether the transport is enabled or not."""

    def processes(cfg):
        """How many of nac's processes are to serve it when it is enabled:
        1, the main process alone, or more, which then share its sockets
        through :class:`IWorkerProcesses`."""

    def make_service(cfg, core, store, workers):
        """The IService serving it in the main process.  ``core`` is the
        ITnccsCore, ``store`` the IPolicyStore (or None); ``workers`` the
        :class:`IWorkerProcesses` of nac when it has worker processes, else
        None.  A ConfigError names what is wrong in one line."""

    def make_worker_service(cfg, core, store, share):
        """The IService serving it in a worker process, from what
        ``share`` (an :class:`IWorkerShare`) carries over from the main
        process.  Its ``where`` attribute, when it has one, says where it
        serves (for the worker's start-up log line)."""


class ISessionControl(Interface):
    """A transport plugin that can change or end, after the fact, a session
    its enforcement point admitted: RADIUS Change-of-Authorization and
    Disconnect (RFC 5176) to the NAS of an accounting session.  ``nac-admin
    coa`` / ``disconnect`` call it in their own process; the running server
    does the same by itself when a recorded decision changes."""

    def change_session(cfg, db, session_id, access):
        """Tell the enforcement point of session ``session_id`` (an
        accounting session's row id) the decision ``access`` ('allowed' or
        'isolate'), or end the session (``access`` None); blocking, the
        outcome recorded with the session in ``db`` (a PolicyDb).  Returns
        (acknowledged, a JSON-able dict, one line saying the outcome);
        LookupError or ValueError with a one-line reason when it cannot be
        sent."""


class IRunningSessionControl(Interface):
    """A transport's running service (nac's main process) that changes or
    ends, when an operator asks (the HTTP API, the web console), a session
    its enforcement point admitted, with the clients and timers of the
    running reactor: RADIUS CoA / Disconnect (RFC 5176).  The HTTP service
    finds it among its sibling services by this interface, never by
    importing the transport."""

    def change_session(session_id, access):
        """Tell the enforcement point of accounting session ``session_id``
        (its row id) the decision ``access`` ('allowed', 'isolate';
        'denied' ends it) or end the session (``access`` None).  Returns a
        Deferred firing, once the enforcement point answered or every try
        went unanswered, with (acknowledged, a JSON-able dict with ``id``,
        ``nas``, ``action``, ``acked``, ``nak``, ``error_cause``,
        ``attempts``, ``result``, one line saying the outcome), the outcome
        recorded with the session; failing with
        :class:`nac.db.store.NotFound` when there is no such session,
        LookupError (its enforcement point is unknown) or ValueError with a
        one-line reason when nothing can be sent."""


class IWorkerProcesses(Interface):
    """nac's worker processes, as a transport of the main process sees
    them (:class:`nac.processes.WorkerSupervisor`)."""

    processes = Attribute("How many processes nac has, the main process (number 0) included")
    on_control = Attribute(
        "{kind: handler(worker, message)}: what the main process does with a worker's control message "
        "{\"nac_control\": kind, …} of a kind the process model does not know; the handler checks every "
        "field. 'decided' (a decision a worker committed, for the store's decision listeners) is nac's own")

    def share(name, processes, descriptors, data=None, label=None):
        """Let workers 1 … ``processes`` - 1 serve transport ``name`` too.

        ``descriptors(worker)`` returns ``{label: file descriptor}`` of the
        main process that worker inherits (a listening socket, its end of a
        socket pair); ``data(worker)`` what else it is told (JSON values);
        ``label`` names the transport in log lines ("PT-TLS").  Called
        before the workers start: in ``privilegedStartService``.
        """

    def metrics():
        """A Deferred firing with the workers' metrics, a list of
        :data:`nac.metrics.Snapshot` (each running worker's, asked for now,
        and the counters of those that ended), for ``/metrics`` to sum with
        the main process's (:func:`nac.metrics.exposition`).  The HTTP
        transport calls it."""


class IWorkerShare(Interface):
    """What a worker process got for one transport from the main process."""

    process = Attribute("This worker's number: 1, 2, …")
    processes = Attribute("How many processes serve the transport")
    all_processes = Attribute("How many processes nac has: the step of Connection IDs and session ids")
    descriptors = Attribute("{label: file descriptor} inherited from the main process")
    data = Attribute("What the main process's transport handed over (a dict of JSON values)")


class ITpm(Interface):
    """A TPM 2.0 as an attestation collector uses it (nac's client;
    :class:`nac.client.tpm.Tpm2Tools`).  Methods block; they raise
    ``nac.client.tpm.TpmError`` when the TPM cannot do what is asked."""

    def version_info():
        """(manufacturer, revision × 100, year): ("IBM", 164, 2021)."""

    def pcr_banks():
        """The hash names of the PCR banks the TPM has allocated ("sha256", …)."""

    def aik_public_key():
        """The AIK's public key, DER SubjectPublicKeyInfo."""

    def aik_signature_hash():
        """The hash name the AIK signs with ("sha256")."""

    def read_pcrs(bank, pcrs):
        """{pcr: value} of ``pcrs`` in ``bank`` ("sha256")."""

    def quote(bank, pcrs, nonce):
        """TPM2_Quote of ``pcrs`` of ``bank`` with ``nonce`` as qualifying
        data, signed by the AIK: (TPMS_ATTEST bytes, TPMT_SIGNATURE bytes)."""
