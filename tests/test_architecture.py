"""The house rules of docs/architecture.md, enforced: which room may import which.

Every import in the product is read from the source (module level and inside functions alike),
resolved to a module name, and checked against the rules below. A rule names a room, what it may
not import, and why; a failure lists each offending file, line and import.
"""

from __future__ import annotations

import ast
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOTS = ("market", "sim", "quote")

# I/O and clocks: what the pure core never touches (time comes in as a parameter)
IO_MODULES = (
    "os", "sys", "time", "datetime", "socket", "subprocess", "sqlite3", "pymysql", "threading",
    "multiprocessing", "asyncio", "select", "signal", "shutil", "tempfile", "pathlib", "io", "urllib",
    "http", "email", "smtplib", "logging", "lxml", "klein", "treq", "jinja2",
)  # fmt: skip
# the Twisted the pure core may use: Deferreds and the clock *interface* (never the reactor)
CORE_TWISTED = ("twisted.internet.defer", "twisted.internet.interfaces", "twisted.python.failure", "twisted.logger")


@dataclass(frozen=True)
class Import:
    source: str  # module that imports
    target: str  # module imported (absolute)
    path: str
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> list[Import]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", *(f"{r}/*.py" for r in ROOTS)],
        cwd=REPO,
        capture_output=True,
    )
    found = []
    for rel in filter(None, out.stdout.decode().split("\0")):
        path = REPO / rel
        if not path.exists():
            continue
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Import):
                found += [Import(module, a.name, rel, node.lineno) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # "from pkg import name" may import a submodule: count both
                found.append(Import(module, target, rel, node.lineno))
                found += [Import(module, f"{target}.{a.name}", rel, node.lineno) for a in node.names]
    return found


IMPORTS = _imports()


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@dataclass(frozen=True)
class Rule:
    room: tuple[str, ...]
    forbidden: tuple[str, ...]
    why: str
    allowed: tuple[str, ...] = ()  # exceptions inside ``forbidden``

    def broken_by(self) -> list[Import]:
        return [
            i
            for i in IMPORTS
            if _within(i.source, self.room)
            and _within(i.target, self.forbidden)
            and not _within(i.target, self.allowed)
            and not _within(i.target, self.room)
        ]


MARKET_ROOMS = (
    "market.accounts", "market.cli", "market.demo", "market.dispatch", "market.jobs", "market.report",
    "market.rpc", "market.sandbox", "market.store", "market.tap", "market.tasklet", "market.web",
    "market.worker", "market.settings", "market.examples", "market.offload", "market.edge",
    "market.ports",
)  # fmt: skip

# the rooms that serve or hold the market's data: what the helper pool must not know
SERVING_ROOMS = (
    "market.store", "market.dispatch", "market.rpc", "market.web", "market.jobs", "market.accounts",
    "market.worker", "market.sandbox", "market.tasklet",
)  # fmt: skip

RULES = {
    "the pure core does no I/O and reads no clock": Rule(
        ("market.core",),
        (*IO_MODULES, "twisted", *MARKET_ROOMS),
        "market.core is run by sim, the dispatcher, the store and property tests alike",
        allowed=CORE_TWISTED,
    ),
    "quote never imports the market or the simulator": Rule(
        ("quote",), ("market", "sim"), "quote is a standalone tool that reads a report file"
    ),
    "sim runs the market's pure core and quote's pure rule, nothing with I/O": Rule(
        ("sim",),
        ("market", "quote"),
        "the simulator must run the very rules of the market and of quote, and only those",
        allowed=("market.core", "quote.rule"),
    ),
    "the job runtime imports nothing else of the market": Rule(
        ("market.tasklet",),
        ("market", "twisted"),
        "market.tasklet is staged alone into the sandbox and runs on the worker's --python (>= 3.9)",
    ),
    "the sandbox knows nothing of the market's server side": Rule(
        ("market.sandbox",),
        ("market.store", "market.dispatch", "market.rpc", "market.web", "market.accounts", "market.worker"),
        "the sandbox runs on volunteer machines and must not depend on the server",
    ),
    "the worker never touches the database or the server's services": Rule(
        ("market.worker",),
        ("market.store", "market.dispatch", "market.web", "market.accounts", "market.rpc.methods", "market.rpc.http"),
        "a worker talks to the market only over XML-RPC",
    ),
    "the store holds SQL and nothing that serves": Rule(
        ("market.store",),
        ("twisted.web", "market.dispatch", "market.rpc", "market.web", "market.worker", "market.sandbox"),
        "market.store executes what the rules decide; services call it, never the reverse",
    ),
    "the dispatcher does not know how it is served": Rule(
        ("market.dispatch",),
        ("market.rpc", "market.web", "market.worker", "market.cli"),
        "the RPC and web layers call the dispatcher, not the reverse",
    ),
    "the web site does not reach into RPC, the worker or the sandbox": Rule(
        ("market.web",),
        ("market.rpc", "market.worker", "market.sandbox"),
        "the web site is a peer of the RPC layer over the same store and rules",
    ),
    "the helper pool runs functions by name and knows none of the rooms that use it": Rule(
        ("market.offload",),
        SERVING_ROOMS,
        "what runs in a helper depends on the pool (through market.offload.registry), never the reverse",
    ),
    "a helper process starts on the standard library alone": Rule(
        ("market.offload.helper", "market.offload.registry"),
        ("market", "twisted"),
        "helpers are started fresh and import only what their calls need: the function's own module",
    ),
    "the edge knows connections, not the market": Rule(
        ("market.edge",),
        ("market",),
        "market.edge bounds what any connection may cost, for the RPC port and the web port alike",
        allowed=("market.core", "market.settings"),
    ),
    "entry points are leaves: nothing imports the CLI, the twistd taps or the demo": Rule(
        ("market", "sim", "quote"),
        ("market.cli", "market.tap", "market.demo", "market.worker.tap"),
        "commands sit on top of the product; product code never depends on them",
        allowed=(),
    ),
}


@pytest.mark.parametrize("name", list(RULES))
def test_import_rule(name):
    rule = RULES[name]
    broken = rule.broken_by()
    if name.startswith("entry points"):
        # the entry points themselves, and market.__main__, import each other by design
        broken = [
            i
            for i in broken
            if not _within(
                i.source, ("market.cli", "market.tap", "market.demo", "market.worker.tap", "market.__main__")
            )
        ]
    assert not broken, f"{name} ({rule.why}):\n" + "\n".join(f"  {i.path}:{i.line} imports {i.target}" for i in broken)


def test_the_rules_see_the_imports_they_judge():
    """A rule that reads no imports cannot fail: the reader must find known ones."""
    pairs = {(i.source, i.target) for i in IMPORTS}
    assert ("market.dispatch.service", "market.core.pool") in pairs
    assert ("market.store.jobs", "market.core.rules") in pairs
    assert any(s == "quote.cli" and t.startswith("quote.") for s, t in pairs)
    # a function-level import is seen too
    assert ("market.cli", "market.demo") in pairs


def test_every_room_of_the_market_is_named_in_the_rules():
    rooms = {".".join(_module_name(p).split(".")[:2]) for p in (REPO / "market").glob("*") if p.suffix == ".py"}
    rooms |= {f"market.{p.name}" for p in (REPO / "market").iterdir() if (p / "__init__.py").exists()}
    rooms -= {"market.__init__", "market.__main__", "market", "market.core"}
    assert rooms <= set(MARKET_ROOMS), f"a new room needs its rules: {sorted(rooms - set(MARKET_ROOMS))}"


# -- no import cycles ------------------------------------------------------------------------------


def _imports_not_run_at_import() -> dict[tuple[str, int], str]:
    """(path, line) -> why, for each import that does not run when its module is imported: one
    inside a function (a lazy import) or under ``if TYPE_CHECKING:`` (never run at all)."""
    found: dict[tuple[str, int], str] = {}

    def visit(path: str, node: ast.AST, why: str | None) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and why:
            found[(path, node.lineno)] = why
        test = getattr(node, "test", None) if isinstance(node, ast.If) else None
        if "TYPE_CHECKING" in (getattr(test, "id", None), getattr(test, "attr", None)):  # typing.TYPE_CHECKING too
            for child in node.body:
                visit(path, child, why or "type checking only")
            for child in node.orelse:
                visit(path, child, why)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            why = why or "inside a function"
        for child in ast.iter_child_nodes(node):
            visit(path, child, why)

    for path in sorted({i.path for i in IMPORTS}):
        visit(path, ast.parse((REPO / path).read_text(), path), None)
    return found


NOT_RUN_AT_IMPORT = _imports_not_run_at_import()


def _import_graph() -> dict[str, dict[str, Import]]:
    """module -> {module it imports: the first import of it}, among the modules of ``ROOTS``.

    Imports inside functions count: a cycle closed by a lazy import is still two modules that need
    each other (quote's reader and split were one). Imports under ``if TYPE_CHECKING:`` never run
    and do not count. ``from pkg import sub`` needs the submodule ``pkg.sub``, not ``pkg``'s own
    names (Python finds a submodule even while its package is still being initialised): when every
    name a ``from`` import takes is a submodule, there is no edge to the package itself, just as
    there is none to the parent packages Python initialises before any submodule.
    """
    modules = {_module_name(p) for root in ROOTS for p in (REPO / root).rglob("*.py")}
    statements: dict[tuple[str, int], list[str]] = {}
    for i in IMPORTS:
        statements.setdefault((i.path, i.line), []).append(i.target)
    graph: dict[str, dict[str, Import]] = {}
    for i in IMPORTS:
        if i.target not in modules or i.target == i.source:
            continue
        if NOT_RUN_AT_IMPORT.get((i.path, i.line)) == "type checking only":
            continue
        names = [t for t in statements[(i.path, i.line)] if t.startswith(i.target + ".")]
        if names and all(n in modules for n in names):
            continue
        graph.setdefault(i.source, {}).setdefault(i.target, i)
    return graph


def _cycles(graph: dict[str, dict[str, Import]]) -> list[list[Import]]:
    """One cycle (as its imports, in order) for each group of modules that import each other."""
    # Tarjan's strongly connected components, then a shortest way round each one
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph.get(module, {}):
            if target not in index:
                connect(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(group)

    for module in sorted(graph):
        if module not in index:
            connect(module)
    cycles = []
    for group in groups:
        # breadth first from one module of the group, until an import leads back to it
        start = min(group)
        paths: dict[str, list[Import]] = {start: []}
        queue = [start]
        for module in queue:  # (the loop reaches what is appended while it runs)
            back = graph[module].get(start)
            if back is not None:
                cycles.append(paths[module] + [back])
                break
            for target, imp in sorted(graph[module].items()):
                if target in group and target not in paths:
                    paths[target] = paths[module] + [imp]
                    queue.append(target)
    return cycles


def test_no_module_imports_itself_back():
    """No import cycles among market, sim and quote, lazy imports included.

    In a cycle one of the modules runs half-initialised, which of them depends on who imports
    first, and neither can be understood or tested without the other. Break one by moving what
    both need into a third module, or by passing the one function needed in as a parameter.
    """
    cycles = _cycles(_import_graph())

    def edge(i: Import) -> str:
        lazy = NOT_RUN_AT_IMPORT.get((i.path, i.line))
        return f"  {i.path}:{i.line} {i.source} imports {i.target}" + (f" ({lazy})" if lazy else "")

    report = []
    for cycle in cycles:
        report.append(" -> ".join([cycle[0].source] + [i.target for i in cycle]))
        report += [edge(i) for i in cycle]
    if cycles:
        pytest.fail("import cycles:\n" + "\n".join(report), pytrace=False)


def test_the_cycle_check_finds_a_cycle():
    """A check that cannot fail proves nothing: a cycle of three, with a module leading into it."""
    a_b = Import("a", "b", "a.py", 1)
    b_c = Import("b", "c", "b.py", 2)
    c_a = Import("c", "a", "c.py", 3)
    assert _cycles({"a": {"b": a_b}, "b": {"c": b_c}, "c": {"a": c_a}, "d": {"a": Import("d", "a", "d.py", 4)}}) == [
        [a_b, b_c, c_a]
    ]
    assert _cycles({"a": {"b": a_b}, "b": {"c": b_c}}) == []
