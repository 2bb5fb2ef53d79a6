"""The routing table of a resource of the HTTP service (the API, the web
console): each handler method registers its HTTP method, path pattern
(a regular expression whose named groups become keyword arguments) and the
role it needs; a request's method and path find it."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Route:
    role: str | None
    name: str
    """the handler's method name"""
    found: re.Match


class Routes:
    def __init__(self) -> None:
        self._table: list[tuple[str, re.Pattern, str | None, str]] = []

    def __call__(self, method: str, pattern: str, role: str | None):
        """A decorator registering the handler it decorates."""
        def register(fn):
            self._table.append((method, re.compile(f"^{pattern}$"), role, fn.__name__))
            return fn
        return register

    def match(self, method: str, path: str) -> tuple[Route | None, list[str]]:
        """The route of ``method`` at ``path`` (None if there is none), and
        the methods ``path`` has routes for (for a 405's Allow)."""
        allowed = []
        for m, pattern, role, name in self._table:
            found = pattern.match(path)
            if found:
                allowed.append(m)
                if m == method:
                    return Route(role, name, found), allowed
        return None, allowed
