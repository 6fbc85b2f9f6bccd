"""A helper process of the offload pool: ``python -m market.offload.helper``.

It reads calls on standard input and writes answers on standard output, one call at a time. Each
message is a frame: 8 bytes of length (big-endian), then a pickle. The pool is the only party on
either end: strangers' bytes (a module's source, a result) travel only as data inside its pickles.

The first frame is the configuration. Before it reads any call the helper puts its own limits on
itself: an address-space limit (``RLIMIT_AS``, so a call that needs more memory fails with
``MemoryError`` instead of growing the machine's), no core files, a lower scheduling priority than
the server, and death with its parent. Then it answers ``("ready", pid)`` and serves calls:
``(call id, "module:function", args)`` -> ``(call id, "ok", value, rss KiB, retiring)`` or
``(call id, "error", (kind, message), rss KiB, retiring)``, ``kind`` being a row of the market's
error table; ``retiring`` says the helper exits after this answer (its memory ran out).

Until a call names a function, the helper has imported the standard library only; then it imports
that function's module (once). Anything a function prints goes to standard error, which the pool
logs, never into the answers.
"""

from __future__ import annotations

import importlib
import os
import pickle
import resource
import signal
import struct
import sys
import traceback
import warnings

FRAME = struct.Struct("!Q")


def read_frame(stream) -> object | None:
    """The next message on ``stream``, or None at its end."""
    head = _read_exactly(stream, FRAME.size)
    if head is None:
        return None
    body = _read_exactly(stream, FRAME.unpack(head)[0])
    if body is None:
        return None
    return pickle.loads(body)


def _read_exactly(stream, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def frame(message: object) -> bytes:
    """``message`` as one frame."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(body)) + body


def _rss_kib() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return 0


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the server goes (Linux); the pipes' end would only be seen between calls."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent went before the line above
        os._exit(1)


def limit(memory_bytes: int, nice: int, parent: int) -> None:
    """The helper's limits, put on itself before any call."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:  # the server runs under a lower limit: never ask for more
        memory_bytes = min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if nice:
        os.nice(nice)
    _die_with_parent(parent)


class Helper:
    """Runs the calls of one pool, one at a time, for the functions it was told it may run."""

    def __init__(self, allowed: frozenset[str], memory_mib: int):
        self.allowed = allowed
        self.memory_mib = memory_mib
        self.functions: dict[str, object] = {}
        self.retire = False  # after a MemoryError the heap may be in pieces: a fresh helper is cheaper

    def function(self, name: str):
        fn = self.functions.get(name)
        if fn is None:
            if name not in self.allowed:
                raise LookupError(f"{name} is not a function helpers may run")
            module, _, attr = name.partition(":")
            fn = self.functions[name] = getattr(importlib.import_module(module), attr)
        return fn

    def answer(self, call: tuple) -> tuple:
        call_id, name, args = call
        try:
            value = self.function(name)(*args)
            return (call_id, "ok", value, _rss_kib(), False)
        except MemoryError:
            self.retire = True
            return (call_id, "error", ("too-large", self.memory_message()), _rss_kib(), True)
        except RecursionError:
            return (call_id, "error", ("too-large", "the input is nested too deeply to work on"), _rss_kib(), False)
        except Exception as e:
            return (call_id, "error", _refusal(e, name), _rss_kib(), False)

    def memory_message(self) -> str:
        return f"this needs more memory than the market gives one piece of work ({self.memory_mib} MiB)"


def _refusal(error: Exception, name: str) -> tuple[str, str]:
    """(kind, message) of an exception: a market refusal keeps its kind and words; anything else
    is a bug, logged here with its traceback and reported without it."""
    errors = sys.modules.get("market.core.errors")
    if errors is not None and isinstance(error, errors.MarketError):
        return error.kind, str(error)
    print(f"helper {os.getpid()}: {name} failed:", file=sys.stderr)
    traceback.print_exc(file=sys.stderr)
    return "internal", "a helper process failed on this work; the error is in the market's log"


def main() -> int:
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # print() in a function goes to the log, never into the answers
    sys.stdout = sys.stderr
    # compiling a stranger's module can warn once per line (``x is 1``): not for the market's log
    warnings.simplefilter("ignore")
    config = read_frame(requests)
    if not isinstance(config, dict):
        return 2
    limit(config["memory"], config["nice"], config["parent"])
    helper = Helper(frozenset(config["allowed"]), config["memory"] // (1024 * 1024))
    answers.write(frame(("ready", os.getpid())))
    answers.flush()
    while not helper.retire:
        call = read_frame(requests)
        if call is None:  # the pool closed our input: it is stopping, or retiring us
            return 0
        if not isinstance(call, tuple) or len(call) != 3:
            return 2
        try:
            reply = frame(helper.answer(call))
        except MemoryError:  # the answer itself did not fit
            helper.retire = True
            reply = frame((call[0], "error", ("too-large", helper.memory_message()), _rss_kib(), True))
        except Exception as e:  # an answer pickle cannot carry
            reply = frame((call[0], "error", _refusal(e, str(call[1])), _rss_kib(), False))
        answers.write(reply)
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
