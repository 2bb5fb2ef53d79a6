"""The HTTP service: nac's JSON REST API over HTTPS (API tokens, read /
collector / admin roles, audit log), strongTNC-compatible sw-collector
endpoints, ``/metrics`` (Prometheus) and ``/health``; a transport plugin
like the others (``transports = ..., http``), speaking to the policy
database and the group policy, never to another transport.

``transports.http.api`` holds the resources and their routing,
``transports.http.openapi`` the OpenAPI 3 document they are tested
against, ``transports.http.console`` the web console for operators under
``/console/`` (its ``templates/`` and ``static/`` beside it),
``transports.http.queries`` the reads both make, ``transports.http.routes``
their routing tables, ``transports.http.plugin`` the configuration and the
service.
"""
