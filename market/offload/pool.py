"""The pool of helper processes: ``twistd market``'s ``offload`` service.

``pool.call("module:function", *args)`` runs a registered function (``market.offload.registry``)
in a free helper and returns a Deferred of its value, or of its refusal as the market error of the
same kind (a module refused, a value too large...). Every call is bounded:

* **time** — ``helper-seconds`` of CPU (and at most :data:`WALL_FACTOR` times that on the clock,
  for a machine too busy to give a helper its share): a helper that takes longer is killed and
  replaced, and the call fails with :class:`TooSlow` (kind "too-large": make the input smaller);
* **memory** — ``helper-memory``: each helper limits its own address space before its first
  call; a call that needs more fails with kind "too-large" and that helper is replaced;
* **waiting** — ``helper-queue`` calls may wait for a helper, and one member (``owner``) may have
  ``member-calls`` running or waiting; past either the call fails at once with :class:`Busy`
  (Fault 9: retry).

Helpers are started fresh (``python -I``, never forked from the threaded server) and import only
what their calls need. Answers come back over a pipe as pickles: the server trusts its own
helper's answers; strangers' bytes travel inside as data only. The reactor does no more than
pickle the arguments, unpickle the answers and keep the timers.
"""

from __future__ import annotations

import collections
import itertools
import os
import pickle
import sys
from dataclasses import dataclass
from typing import Any

from twisted.application import service
from twisted.internet import defer, error, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from market.core.errors import KINDS, DatabaseUnavailable, InternalError, MarketError, TooLarge, error_for
from market.offload import helper as wire
from market.offload.registry import FUNCTIONS, split
from market.settings import OffloadSettings

log = Logger()

#: the largest answer a helper may send; larger is a bug in a registered function
MAX_ANSWER = 256 * 1024 * 1024
#: helpers that fail to start this many times in a row: waiting calls are refused, starts slow down
START_FAILURES = 3
#: a helper whose resident memory passes this share of its limit after a call is replaced
RETIRE_SHARE = 0.5
#: seconds a stopping pool waits for helpers to finish their call before killing them
STOP_GRACE = 2.0
#: a call's limit is CPU seconds; on the clock it may take this many times as long (a busy machine)
WALL_FACTOR = 3.0
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) process ``pid`` has used, from /proc; None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15)
    except (OSError, IndexError, ValueError):
        return None


# the market package this server runs: its helpers import the very same code
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BOOT = "import sys; sys.path.insert(0, {root!r}); from market.offload.helper import main; sys.exit(main())"
# the environment a helper gets: nothing of the server's (database URLs, tokens), only locale and PATH
_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR")


class Busy(DatabaseUnavailable):
    """Every helper is working and the queue is full (or this member has enough work waiting):
    retry in a few seconds. Fault 9, HTTP 503."""


class TooSlow(TooLarge):
    """A call took longer than a helper may spend on one; the helper was killed and replaced."""


class HelperFailed(InternalError):
    """A helper ended in the middle of a call, not for its time or memory limit (a bug, logged)."""


@dataclass
class PoolStats:
    """What the pool has done since it started (logged at stop; read by tests)."""

    calls: int = 0
    busy: int = 0
    too_slow: int = 0
    failed: int = 0
    started: int = 0


class _Call:
    __slots__ = ("id", "name", "args", "owner", "seconds", "deferred", "settled")

    def __init__(self, call_id: int, name: str, args: tuple, owner: object, seconds: float):
        self.id = call_id
        self.name = name
        self.args = args
        self.owner = owner
        self.seconds = seconds
        self.deferred: defer.Deferred = defer.Deferred()
        self.settled = False


class _Helper(protocol.ProcessProtocol):
    """One helper process, seen from the server: its pipes, its call and that call's timer."""

    def __init__(self, pool: HelperPool):
        self.pool = pool
        self.pid: int | None = None
        self.ready = False
        self.call: _Call | None = None
        self.timer: Any = None
        self.began = (0.0, 0.0)  # (clock, CPU seconds) when the call was given
        self.killed_for = ""  # "time", "answer" or "stop" once the pool killed it
        self.retiring = False
        self.rss_kib = 0
        self.ended: defer.Deferred = defer.Deferred()
        self._buffer = bytearray()

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]  # set before this is called
        settings = self.pool.settings
        config = {
            "memory": settings.helper_memory * 1024 * 1024,
            "nice": settings.helper_nice,
            "parent": os.getpid(),
            "allowed": sorted(self.pool.functions),
        }
        self.transport.write(wire.frame(config))  # type: ignore[union-attr]

    def start(self, call: _Call) -> None:
        self.call = call
        self.began = (self.pool.reactor.seconds(), cpu_seconds(self.pid or 0) or 0.0)
        self.timer = self.pool.reactor.callLater(call.seconds, self.check_time, call)
        body = pickle.dumps((call.id, call.name, call.args), protocol=pickle.HIGHEST_PROTOCOL)
        # header and body apart: a large argument (a request body, say) is not copied once more
        self.transport.writeSequence([wire.FRAME.pack(len(body)), body])  # type: ignore[union-attr]

    def check_time(self, call: _Call) -> None:
        """At the call's limit on the clock: kill the helper if it has used the limit's CPU time
        (or :data:`WALL_FACTOR` times the limit went by); else look again when it could have."""
        if self.call is not call:
            return
        wall = self.pool.reactor.seconds() - self.began[0]
        now_cpu = cpu_seconds(self.pid or 0)
        cpu = wall if now_cpu is None else now_cpu - self.began[1]
        if cpu >= call.seconds * 0.99 or wall >= WALL_FACTOR * call.seconds:
            self.kill("time")
            return
        later = min(max(call.seconds - cpu, 0.1), WALL_FACTOR * call.seconds - wall)
        self.timer = self.pool.reactor.callLater(later, self.check_time, call)

    def kill(self, why: str) -> None:
        self.killed_for = self.killed_for or why
        try:
            self.transport.signalProcess("KILL")  # type: ignore[union-attr]
        except error.ProcessExitedAlready:
            pass

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        size = wire.FRAME.size
        while len(self._buffer) >= size:
            (length,) = wire.FRAME.unpack_from(self._buffer)
            if length > MAX_ANSWER:
                log.error("helper {pid} sent an answer of {n} bytes; killing it", pid=self.pid, n=length)
                self.kill("answer")
                return
            if len(self._buffer) < size + length:
                return
            body = bytes(self._buffer[size : size + length])
            del self._buffer[: size + length]
            try:
                message = pickle.loads(body)  # our own helper's answer (see the module docstring)
            except Exception:
                log.failure("helper {pid} sent an answer that cannot be read; killing it", pid=self.pid)
                self.kill("answer")
                return
            self.pool._message(self, message)

    def errReceived(self, data: bytes) -> None:
        log.warn("helper {pid}: {text}", pid=self.pid, text=data.decode("utf-8", "replace")[-4000:].rstrip())

    def processEnded(self, reason: Failure) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.pool._ended(self, reason)
        self.ended.callback(None)


class HelperPool(service.Service):
    """``settings.helpers`` helper processes and the bounded queue of calls waiting for them.

    ``reactor`` must provide ``IReactorProcess`` and ``IReactorTime``; ``functions`` are the
    ``"module:function"`` names calls may use (the registry; tests add their own); ``python`` is
    the interpreter helpers run on (the server's by default).
    """

    name = "offload"

    def __init__(
        self,
        settings: OffloadSettings | None = None,
        reactor: Any = None,
        functions: frozenset[str] | set[str] = FUNCTIONS,
        python: str = sys.executable,
    ):
        if reactor is None:
            from twisted.internet import reactor
        self.settings = settings or OffloadSettings()
        self.reactor = reactor
        self.functions = frozenset(functions)
        for name in self.functions:
            split(name)  # a malformed name is a bug: refuse it at once
        self.python = python
        self.stats = PoolStats()
        self._helpers: set[_Helper] = set()
        self._idle: collections.deque[_Helper] = collections.deque()
        self._waiting: collections.deque[_Call] = collections.deque()
        self._owners: collections.Counter[object] = collections.Counter()
        self._ids = itertools.count(1)
        self._start_failures = 0
        self._respawn: Any = None
        self._stopping = False

    # -- the service -----------------------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        self._stopping = False
        for _ in range(self.settings.helpers):
            self._spawn()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        self._stopping = True
        if self._respawn is not None and self._respawn.active():
            self._respawn.cancel()
        while self._waiting:
            self._settle(self._waiting.popleft(), failure=Failure(Busy("the market is stopping; retry in a minute")))
        helpers = list(self._helpers)
        for h in helpers:
            try:
                h.transport.closeStdin()  # type: ignore[union-attr]  # the helper ends after its call
            except Exception:
                pass

        def kill_the_rest() -> None:
            for h in helpers:
                if h in self._helpers:
                    h.kill("stop")

        killer = self.reactor.callLater(STOP_GRACE, kill_the_rest)
        s = self.stats
        log.info(
            "offload pool stopping: {calls} calls, {busy} refused as busy, {slow} too slow, {failed} failed,"
            " {started} helpers started",
            calls=s.calls,
            busy=s.busy,
            slow=s.too_slow,
            failed=s.failed,
            started=s.started,
        )

        def done(_: object) -> None:
            if killer.active():
                killer.cancel()

        return defer.DeferredList([h.ended for h in helpers]).addCallback(done)

    def pids(self) -> list[int]:
        """The process ids of the running helpers."""
        return sorted(h.pid for h in self._helpers if h.pid is not None)

    # -- calls -----------------------------------------------------------------------------------
    def call(self, name: str, *args: Any, owner: object = None, seconds: float | None = None) -> defer.Deferred:
        """A Deferred of ``module.function(*args)`` run in a helper.

        ``owner`` (a member's account id, say) caps the calls one party may have running or
        waiting; ``seconds`` is this call's time limit (``helper-seconds`` by default, never more).
        Fails with the market error of the function's refusal, :class:`Busy`, :class:`TooSlow`,
        kind "too-large" for memory, or :class:`HelperFailed`.
        """
        if name not in self.functions:
            return defer.fail(InternalError(f"{name} is not a function helpers may run (market.offload.registry)"))
        if not self.running or self._stopping:
            return defer.fail(Busy("the market is starting or stopping; retry in a minute"))
        if owner is not None and self._owners[owner] >= self.settings.member_calls:
            self.stats.busy += 1
            return defer.fail(
                Busy(
                    f"you already have {self._owners[owner]} pieces of work being checked by the market;"
                    " retry when they are done"
                )
            )
        if not self._idle and len(self._waiting) >= self.settings.helper_queue:
            self.stats.busy += 1
            return defer.fail(Busy("the market is busy checking other members' work; retry in a few seconds"))
        limit = self.settings.helper_seconds if seconds is None else min(seconds, self.settings.helper_seconds)
        call = _Call(next(self._ids), name, args, owner, limit)
        call.deferred = defer.Deferred(canceller=lambda _: self._cancel(call))
        self.stats.calls += 1
        if owner is not None:
            self._owners[owner] += 1
        self._waiting.append(call)
        self._dispatch()
        return call.deferred

    def _dispatch(self) -> None:
        while self._idle and self._waiting:
            self._idle.popleft().start(self._waiting.popleft())

    def _cancel(self, call: _Call) -> None:
        # the caller gave up (its HTTP client went away, say): a waiting call is dropped; a running
        # one runs out (its helper is busy until then) and its answer is thrown away
        if call in self._waiting:
            self._waiting.remove(call)
        self._release(call)

    def _release(self, call: _Call) -> None:
        if not call.settled:
            call.settled = True
            if call.owner is not None:
                self._owners[call.owner] -= 1
                if self._owners[call.owner] <= 0:
                    del self._owners[call.owner]

    def _settle(self, call: _Call, value: Any = None, failure: Failure | None = None) -> None:
        if call.settled:
            return  # cancelled: its Deferred has fired already
        self._release(call)
        if failure is None:
            call.deferred.callback(value)
        else:
            call.deferred.errback(failure)

    # -- helpers ---------------------------------------------------------------------------------
    def _spawn(self) -> None:
        self._respawn = None
        if not self.running or self._stopping:
            return
        h = _Helper(self)
        self._helpers.add(h)
        self.stats.started += 1
        env = {k: os.environ[k] for k in _ENVIRONMENT if k in os.environ}
        argv = [self.python, "-I", "-c", _BOOT.format(root=_ROOT)]
        self.reactor.spawnProcess(h, self.python, argv, env=env, childFDs={0: "w", 1: "r", 2: "r"})

    def _message(self, h: _Helper, message: Any) -> None:
        if message[0] == "ready":
            h.ready = True
            self._start_failures = 0
            self._idle.append(h)
            self._dispatch()
            return
        call_id, status, payload, rss_kib, retiring = message
        call = h.call
        if call is None or call.id != call_id:
            log.error("helper {pid} answered a call it was not given; killing it", pid=h.pid)
            h.kill("answer")
            return
        h.call = None
        if h.timer is not None and h.timer.active():
            h.timer.cancel()
        h.rss_kib = rss_kib
        if retiring or rss_kib * 1024 > RETIRE_SHARE * self.settings.helper_memory * 1024 * 1024:
            h.retiring = True  # replaced once it has gone (processEnded)
            h.transport.closeStdin()  # type: ignore[union-attr]
        else:
            self._idle.append(h)
        if status == "ok":
            self._settle(call, payload)
        else:
            kind, text = payload
            self._settle(call, failure=Failure(error_for(KINDS.get(kind, KINDS["internal"]), text)))
        self._dispatch()

    def _ended(self, h: _Helper, reason: Failure) -> None:
        self._helpers.discard(h)
        if h in self._idle:
            self._idle.remove(h)
        call, h.call = h.call, None
        if call is not None:
            self._settle(call, failure=Failure(self._why(h, call, reason)))
        if not h.ready:
            self._start_failures += 1
            log.error("helper {pid} ended before it was ready: {why}", pid=h.pid, why=reason.getErrorMessage())
        if self._stopping or not self.running:
            return
        if self._start_failures >= START_FAILURES:
            while self._waiting:
                self._settle(
                    self._waiting.popleft(),
                    failure=Failure(
                        HelperFailed("the market's helper processes do not start; the operator must look at its log")
                    ),
                )
            if self._respawn is None:
                delay = min(30.0, 2.0 ** (self._start_failures - START_FAILURES))
                self._respawn = self.reactor.callLater(delay, self._spawn)
            return
        self._spawn()

    def _why(self, h: _Helper, call: _Call, reason: Failure) -> MarketError:
        if h.killed_for == "time":
            self.stats.too_slow += 1
            return TooSlow(
                f"this took more than {call.seconds:g} s of CPU, the most the market spends on one piece of"
                " work; make it smaller or simpler"
            )
        self.stats.failed += 1
        if h.killed_for == "stop":
            return Busy("the market is stopping; retry in a minute")
        log.error("helper {pid} ended during {name}: {why}", pid=h.pid, name=call.name, why=reason.getErrorMessage())
        return HelperFailed(
            "a helper process of the market ended while working on this; retry, and if it happens again"
            " make the input smaller"
        )
