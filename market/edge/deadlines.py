"""A deadline for each phase of a connection, so no phase waits without a bound.

Phases and their bounds (the ``[connections]`` settings):

- **idle** — waiting for the next request: ``idle-timeout`` from the last answer, ``header-timeout``
  from the connection's start (a client connects when it has something to ask; one that connects
  and says nothing only holds a place). Bytes do not extend it: a byte starts the *head* phase,
  with its own deadline.
- **head** — a request's headers: complete within ``header-timeout`` of its first byte (CR LF
  between requests counts: a client "keeping alive" with single bytes is closed after it).
- **body** — in its first ``body-grace`` seconds, and in every ``body-grace`` seconds after, the
  body must advance by ``min-body-rate`` × ``body-grace`` bytes (or finish): a client cannot send
  fast at first and then hold the room it was given while sending nothing.
- **serving** — the market is answering: no deadline on the client.
- **linger** — a refused request's body is read and thrown away for ``linger`` seconds at most.

Changing phase costs a clock read and a few assignments; one ``DelayedCall`` per connection wakes
at most every ``tick`` seconds (the shortest bound) to compare. A worker's two calls per slice are
the market's hottest path, so no timer is created, moved or cancelled per request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from market.settings import ConnectionSettings, show_size

IDLE, HEAD, BODY, SERVING, LINGER = "idle", "head", "body", "serving", "linger"


class Deadlines:
    """The deadlines of one connection's phases. ``expired(phase, reason)`` is called once when
    the current phase overruns; ``reason`` is one line for the client. :meth:`stop` ends it."""

    def __init__(self, clock: Any, settings: ConnectionSettings, expired: Callable[[str, str], None]):
        self._clock, self._settings, self._expired = clock, settings, expired
        self._tick = min(settings.header_timeout, settings.body_grace, settings.linger, settings.idle_timeout)
        self.phase = IDLE
        self._due: float | None = None
        self._timer: Any = None
        # the body phase: when it began, how many bytes it wants and has had, and had at the start of
        # the current window of body-grace seconds
        self._began = 0.0
        self._length = 0
        self._received = 0
        self._mark = 0

    # -- phases ----------------------------------------------------------------------------------
    def opened(self) -> None:
        """A new connection: its first request must begin within ``header-timeout``."""
        self._enter(IDLE, self._settings.header_timeout)

    def idle(self) -> None:
        self._enter(IDLE, self._settings.idle_timeout)

    def head(self) -> None:
        """A request's first byte arrived (a no-op while its head is still being read)."""
        if self.phase != HEAD:
            self._enter(HEAD, self._settings.header_timeout)

    def body(self, length: int, received: int = 0) -> None:
        """The body of ``length`` bytes starts now; ``received`` of them are already here."""
        self._began = self._enter(BODY, self._settings.body_grace)
        self._length, self._received, self._mark = length, received, received

    def received(self, count: int) -> None:
        """``count`` more body bytes arrived (cheap: one addition)."""
        self._received += count

    def serving(self) -> None:
        self.phase, self._due = SERVING, None

    def linger(self) -> None:
        self._enter(LINGER, self._settings.linger)

    def stop(self) -> None:
        self.phase, self._due = SERVING, None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- the timer -------------------------------------------------------------------------------
    def _enter(self, phase: str, seconds: float) -> float:
        now: float = self._clock.seconds()
        self.phase, self._due = phase, now + seconds
        if self._timer is None:
            # the timer is always due within one tick, which no phase is shorter than: a new
            # phase's deadline is never before the timer's next wake, so it never has to move
            self._timer = self._clock.callLater(min(seconds, self._tick), self._wake)
        return now

    def _wake(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        due = self._due
        if due is not None and now >= due:
            if self.phase == BODY:
                due = self._body_due(now)
            if due is None or now >= due:
                phase, self._due = self.phase, None
                self._expired(phase, self._reason(phase))
                return
            self._due = due
        wait = self._tick if due is None else min(self._tick, due - now)
        if self._timer is None:  # (expired() may have stopped or restarted it)
            self._timer = self._clock.callLater(max(wait, 0.001), self._wake)

    def _body_due(self, now: float) -> float | None:
        """The end of the next window, if the body advanced enough in this one; else None."""
        s = self._settings
        need = min(s.min_body_rate * s.body_grace, self._length - self._mark)
        if self._received - self._mark < need:
            return None
        self._mark = self._received
        return now + s.body_grace

    def _reason(self, phase: str) -> str:
        s = self._settings
        if phase == HEAD:
            return f"the request's headers were not complete within {s.header_timeout:g} s of its first byte"
        if phase == BODY:
            return (
                f"the request body arrived slower than {show_size(s.min_body_rate)}/s"
                f" ({self._received} of {self._length} bytes in {self._clock.seconds() - self._began:.0f} s)"
            )
        if phase == IDLE:
            return f"no request for {s.idle_timeout:g} s"
        return f"the refused request's body was still arriving after {s.linger:g} s"
