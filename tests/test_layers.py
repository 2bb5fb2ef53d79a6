"""The package's layering, read from its source: no import circles in
``nac``, ``transports`` and ``imvs``, and the dependencies running one way
(ARCHITECTURE.md): transports and IMVs do not import each other, and the
protocol cores (``nac.pa``, ``nac.pb``, ``nac.tnccs``) import no transport,
no IMV and not Twisted's reactor.

Every import counts, at module level or inside a function: an import moved
into a function to break a circle at run time is still a circle in the
design.  ``from package import module`` depends on that module only."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from twisted.trial import unittest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("nac", "transports", "imvs")


def module_files() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imported_names(path: Path, module: str) -> set[str]:
    """Every dotted name ``path`` imports (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module
            # "from package import module" names the module, else the package's attribute
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of the three packages it imports; names from
    outside them are kept as they are (``twisted.internet.reactor``)."""
    modules = module_files()
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        for name in imported_names(path, module):
            target = name
            while target and target not in modules and target.partition(".")[0] in PACKAGES:
                target = target.rpartition(".")[0]
            if target and target != module:
                graph[module].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


class LayeringTests(unittest.TestCase):
    def setUp(self):
        self.graph = import_graph()

    def violations(self, importers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
        return sorted(f"{module} imports {target}" for module, targets in self.graph.items()
                      if within(module, *importers) for target in targets if within(target, *forbidden))

    def test_no_import_circles(self):
        self.assertEqual(circles(self.graph), [])

    def test_transports_and_imvs_do_not_import_each_other(self):
        self.assertEqual(self.violations(("transports",), ("imvs",)), [])
        self.assertEqual(self.violations(("imvs",), ("transports",)), [])

    def test_protocol_cores_import_no_transport_imv_or_reactor(self):
        self.assertEqual(self.violations(("nac.pa", "nac.pb", "nac.tnccs"),
                                         ("transports", "imvs", "twisted.internet.reactor")), [])

    def test_the_server_core_imports_no_transport(self):
        # nac composes transports through their plugins (nac.plugins), never
        # by name; nac.client, the endpoint's side (nac-pt-tls-client,
        # nac-eap-client), is an application of its own above them: it speaks
        # the transports' protocols with their sans-IO codecs
        server_core = [m for m in self.graph if within(m, "nac") and not within(m, "nac.client")]
        self.assertEqual(self.violations(tuple(server_core), ("transports",)), [])
        self.assertGreater(len(server_core), 50)


class CheckerTests(unittest.TestCase):
    """The checks above can fail."""

    def test_a_circle_is_found(self):
        self.assertEqual(circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}), [["a", "b", "c"]])
        self.assertEqual(circles({"a": {"b"}, "b": set()}), [])

    def test_relative_and_function_level_imports_count(self):
        path = Path(self.mktemp())
        path.mkdir()
        source = path / "mod.py"
        source.write_text("from . import sibling\ndef f():\n    from ..other import thing\n    import x.y\n")
        self.assertEqual(imported_names(source, "pkg.sub.mod"), {"pkg.sub.sibling", "pkg.other.thing", "x.y"})
