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
    "market.worker", "market.settings", "market.examples",
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
