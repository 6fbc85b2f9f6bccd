"""Speed measurement with secret probes (the paper's spec 1e): pure rules, no I/O.

A client whose last measured speed is missing or older than the probe interval gets a probe: a
chain ``x -> ((x ^ (x >> shift)) * mul + add) mod (2**61 - 1)`` run for ``steps`` steps, reporting
the value after every ``steps / CHECKPOINTS`` steps. Its seed and constants are
HMAC-SHA256(the database's probe secret, the probe's job id), inlined into a program whose names
are drawn from the same digest: no two probes share an input, the worker cannot compute the
answer without running the chain (no closed form is known), and an answer made for another probe
is wrong for this one. The server checks an answer by recomputing a few segments of it (the first,
the last and ``SAMPLES`` chosen at random), a small fraction of the worker's work.

Speed = probe operations (chain steps) / server-measured seconds (checkout to answer).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
from dataclasses import dataclass
from typing import Any

#: the chain's modulus, a Mersenne prime: every value is an exact Python int on CPython and PyPy
MODULUS = 2**61 - 1
#: values in an answer: the chain's value every ``steps / CHECKPOINTS`` steps
CHECKPOINTS = 100
#: segments checked at random besides the first and the last: (2 + SAMPLES) / CHECKPOINTS of the work
SAMPLES = 3
#: the most steps a probe runs, whatever speed a client claims: bounds the server's check
#: (5 % of it, ~1 s in a helper at 2.5M steps/s) and the answer's wait
MAX_STEPS = 50_000_000
#: the most bytes a probe's answer takes (CHECKPOINTS integers of up to 61 bits, ~10 bytes each);
#: longer is wrong unread
MAX_ANSWER = 2048
#: values a probe's answer may decode to (one list of CHECKPOINTS integers)
MAX_ANSWER_VALUES = CHECKPOINTS + 4

# plain words for the program's names: a probe reads like any member's numeric job
_WORDS = (
    "acc", "value", "state", "total", "cur", "seq", "item", "node", "step", "row", "col", "mix",
    "walk", "fold", "scan", "run", "pass", "loop", "chunk", "part", "block", "level", "rank", "tick",
)  # fmt: skip


def needs_probe(last: dict[str, Any] | None, now: float, interval: float) -> bool:
    return last is None or now - float(last["measured_at"]) >= interval


@dataclass(frozen=True)
class Chain:
    """One probe's secret input: the seed, the step's constants and the program's names."""

    seed: int
    mul: int
    add: int
    shift: int
    names: tuple[str, ...]

    def run(self, x: int, steps: int) -> int:
        """The chain's value ``steps`` steps after ``x``."""
        shift, mul, add = self.shift, self.mul, self.add
        for _ in range(steps):
            x = ((x ^ (x >> shift)) * mul + add) % MODULUS
        return x


def chain(secret: bytes, job_id: int) -> Chain:
    """The probe of job ``job_id``'s input: HMAC-SHA256(secret, job id), so nothing is stored."""
    digest = hmac.new(secret, b"probe:%d" % job_id, hashlib.sha256).digest()
    more = hmac.new(secret, b"names:%d" % job_id, hashlib.sha256).digest()

    def word(i: int) -> str:
        return f"{_WORDS[more[2 * i] % len(_WORDS)]}{more[2 * i + 1] % 100}"

    names = []
    for i in range(7):  # entry, 2 parameters, value, answer, 2 loop variables: all distinct
        name = word(i)
        while name in names:
            name += "_"
        names.append(name)
    return Chain(
        seed=int.from_bytes(digest[0:8], "big") % MODULUS,
        mul=2 + int.from_bytes(digest[8:16], "big") % (MODULUS - 2),
        add=int.from_bytes(digest[16:24], "big") % MODULUS,
        shift=17 + digest[24] % 24,
        names=tuple(names),
    )


def segment(steps: int) -> int:
    """Steps between two checkpoints of a probe of about ``steps`` steps (at least 1)."""
    return max(1, math.ceil(steps / CHECKPOINTS))


def operations(steps: int) -> int:
    """Probe operations a probe of ``steps`` (as stored) performs: its chain steps, rounded up to
    a whole number of segments."""
    return segment(steps) * CHECKPOINTS


def steps_for(last_speed: float | None, seconds: float, first_steps: int) -> int:
    """How long a probe runs: ``seconds`` at the client's last measured speed, or ``first_steps``
    for a client never measured; within [CHECKPOINTS, MAX_STEPS]."""
    wanted = first_steps if last_speed is None else int(float(last_speed) * seconds)
    return int(min(max(wanted, CHECKPOINTS), MAX_STEPS))


def source(c: Chain, steps: int) -> tuple[str, str, list[int]]:
    """(module source, entry, arguments) of the probe: the constants inlined, the names neutral."""
    entry, outer, inner, x, out, i, j = c.names
    text = (
        f"def {entry}({outer}, {inner}):\n"
        f"    {x} = {c.seed}\n"
        f"    {out} = []\n"
        f"    for {i} in range({outer}):\n"
        f"        for {j} in range({inner}):\n"
        f"            {x} = (({x} ^ ({x} >> {c.shift})) * {c.mul} + {c.add}) % {MODULUS}\n"
        f"        {out}.append({x})\n"
        f"    return {out}\n"
    )
    return text, entry, [CHECKPOINTS, segment(steps)]


def make_probe(secret: bytes, job_id: int, steps: int) -> tuple[str, str, bytes]:
    """(source, entry, state #0) of the probe of job ``job_id``. Compiles a fresh module (~3 ms):
    never on the reactor thread."""
    from market import tasklet

    text, entry, args = source(chain(secret, job_id), steps)
    return text, entry, tasklet.start(text, entry, args, {})


def expected(secret: bytes, job_id: int, steps: int) -> list[int]:
    """The whole right answer (tests and measurements; the server checks only segments)."""
    c, k = chain(secret, job_id), segment(steps)
    x, values = c.seed, []
    for _ in range(CHECKPOINTS):
        x = c.run(x, k)
        values.append(x)
    return values


def checkpoints_are_right(values: object, c: Chain, k: int, rng: random.Random | None = None) -> bool:
    """Are ``values`` the chain's checkpoints? The first segment from the seed, the last one, and
    SAMPLES segments chosen at random (by the server, after the answer arrived) are recomputed:
    an answer made without running the chain fails at once, and one that skipped a fraction f of
    its segments passes with probability about (1 - f) ** SAMPLES."""
    if type(values) is not list or len(values) != CHECKPOINTS:
        return False
    if any(type(v) is not int or not 0 <= v < MODULUS for v in values):
        return False
    if c.run(c.seed, k) != values[0] or c.run(values[-2], k) != values[-1]:
        return False
    rng = rng or random.SystemRandom()
    for j in rng.sample(range(CHECKPOINTS - 2), SAMPLES):
        if c.run(values[j], k) != values[j + 1]:
            return False
    return True


def answer_is_right(result: bytes | None, secret: bytes, job_id: int, steps: int) -> bool:
    """Is ``result`` the answer of the probe of job ``job_id``? Decoded as data only, within a
    budget of bytes and values, in a helper process (``market.offload``): a worker's answer is a
    stranger's bytes, and a crafted one (a set of integers sharing one hash) takes seconds to
    decode; the recomputed segments take ~5 % of the probe's work."""
    from market import tasklet

    if result is None or len(result) > MAX_ANSWER:
        return False
    try:
        values = tasklet.decode_result(result, max_nodes=MAX_ANSWER_VALUES)
    except Exception:
        return False
    return checkpoints_are_right(values, chain(secret, job_id), segment(steps))


def verdict(right: bool, steps: int, seconds: float) -> tuple[bool, float]:
    """(correct, speed) for a finished probe whose answer was right or not."""
    if not right:
        return False, 0.0
    return True, operations(steps) / max(seconds, 1e-6)
