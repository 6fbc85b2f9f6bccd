"""The pure scheduling core: which ready job goes to which pooled client.

Nothing here reads a clock, touches the database or draws from global randomness: every input
is a plain value, so the dispatcher, the simulator (``sim/``) and the property tests call the
very same code.

The paper's rule (the ``match`` function): when a pooling window closes, the ready jobs are ranked
by ``job_order_key`` (price desc, then submission time asc, then id asc) and the pooled clients by
``client_order_key`` (speed desc, then request time asc, then id asc); the i-th job goes to the
i-th client. ``job_order_key`` and ``client_order_key`` are the single definition of that order:
the store's ``ORDER BY`` and the quote tool's documentation refer to them.

``POLICIES`` holds the rule and its alternatives under one calling convention so experiments
can swap them::

    policy(clients, jobs, *, now=0.0, rng=None) -> list[Assignment]
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ReadyJob",
    "PooledClient",
    "Assignment",
    "Policy",
    "job_order_key",
    "client_order_key",
    "fifo_job_key",
    "request_order_key",
    "aging_job_key",
    "effective_price",
    "top_jobs",
    "match",
    "fifo",
    "random_match",
    "price_only",
    "aging",
    "DEFAULT_AGING_RATE",
    "POLICIES",
    "describe",
]


# __slots__ by hand rather than dataclass(slots=True) so the module still imports on 3.9;
# slots matter: scanning a million ready jobs is dominated by attribute access.
@dataclass(frozen=True)
class ReadyJob:
    """A job on the ready list, as the matcher sees it."""

    __slots__ = ("id", "price", "submitted_at")
    id: int
    price: int  # cents per second of accepted execution
    submitted_at: float  # seconds (any epoch, the same one for every job)


@dataclass(frozen=True)
class PooledClient:
    """A client waiting in the pool, with its measured speed (probe operations per second)."""

    __slots__ = ("id", "speed", "requested_at")
    id: int
    speed: float
    requested_at: float


@dataclass(frozen=True)
class Assignment:
    """One match: ``job`` is to run on ``client``."""

    __slots__ = ("client", "job")
    client: PooledClient
    job: ReadyJob


Policy = Callable[..., "list[Assignment]"]


def job_order_key(job: ReadyJob) -> tuple[int, float, int]:
    """The paper's job rank: highest price first, then earliest submission, then lowest id."""
    return (-job.price, job.submitted_at, job.id)


def client_order_key(client: PooledClient) -> tuple[float, float, int]:
    """The paper's client rank: fastest first, then earliest request, then lowest id."""
    return (-client.speed, client.requested_at, client.id)


def fifo_job_key(job: ReadyJob) -> tuple[float, int]:
    """Oldest job first (submission time, then id) — price is ignored."""
    return (job.submitted_at, job.id)


def request_order_key(client: PooledClient) -> tuple[float, int]:
    """Clients in the order they asked (request time, then id) — speed is ignored."""
    return (client.requested_at, client.id)


def effective_price(job: ReadyJob, now: float, rate: float) -> float:
    """Price plus ``rate`` cents/s for every second the job has waited since submission."""
    return job.price + rate * (now - job.submitted_at)


def aging_job_key(rate: float) -> Callable[[ReadyJob], tuple[float, float, int]]:
    """The ``aging`` policy's job rank for a given rate (cents/s gained per second waited).

    ``price + rate * (now - submitted_at)`` ranks jobs exactly like ``price - rate *
    submitted_at``: every job ages at the same rate, so ``now`` shifts all of them equally and
    never reorders them. The key is therefore time-invariant, which lets a store (or the
    simulator) keep the ready list indexed on it.
    """

    def key(job: ReadyJob) -> tuple[float, float, int]:
        return (rate * job.submitted_at - job.price, job.submitted_at, job.id)

    return key


# Below this many ready jobs per wanted job a plain heap selection is already cheap.
_PREFILTER_RATIO = 4
_PREFILTER_MIN = 4096
_SAMPLE_SIZE = 16384


def top_jobs(jobs: Iterable[ReadyJob], k: int) -> list[ReadyJob]:
    """The first ``k`` jobs by ``job_order_key``, best first, without sorting all of ``jobs``.

    A stride sample of the prices gives a price floor that at least ``k`` jobs reach; only the
    jobs at or above that floor are ranked. Since price is the key's first component, no job
    below the floor can rank before one above it, so the result is exact whatever the sample
    says; a floor that turns out too high falls back to ranking everything.
    """
    if k <= 0:
        return []
    ready: Sequence[ReadyJob] = jobs if isinstance(jobs, Sequence) else list(jobs)
    n = len(ready)
    if n <= _PREFILTER_RATIO * k or n < _PREFILTER_MIN:
        return _smallest(k, ready, job_order_key)
    step = max(1, n // _SAMPLE_SIZE)
    sample = sorted((job.price for job in ready[::step]), reverse=True)
    # 1.5x the expected rank plus a few: rarely too high, and candidates stay near k.
    rank = min(len(sample) - 1, int(1.5 * k * len(sample) / n) + 8)
    floor = sample[rank]
    candidates: Sequence[ReadyJob] = [job for job in ready if job.price >= floor]
    if len(candidates) < k:
        candidates = ready
    return _smallest(k, candidates, job_order_key)


def _smallest(k: int, items: Sequence[ReadyJob], key: Callable[[ReadyJob], tuple[float, float, int]]) -> list[ReadyJob]:
    # heapq.nsmallest pays a Python-level comparison per replacement; when k is a large share
    # of the items, one C-level sort of those items is several times faster.
    if len(items) <= _PREFILTER_RATIO * k:
        return sorted(items, key=key)[:k]
    return heapq.nsmallest(k, items, key=key)


def _pair(clients: Iterable[PooledClient], ranked_jobs: Sequence[ReadyJob]) -> list[Assignment]:
    return [Assignment(client, job) for client, job in zip(clients, ranked_jobs)]


def match(
    clients: Iterable[PooledClient],
    jobs: Iterable[ReadyJob],
    *,
    now: float = 0.0,
    rng: random.Random | None = None,
) -> list[Assignment]:
    """The paper's rule: the i-th job by ``job_order_key`` goes to the i-th client by
    ``client_order_key``; ``min(#clients, #jobs)`` assignments.

    ``jobs`` may be any iterable (a million ready jobs is fine): only the top
    ``len(clients)`` are ranked. ``now`` and ``rng`` are unused; they exist so every policy in
    ``POLICIES`` is called the same way.
    """
    ranked_clients = sorted(clients, key=client_order_key)
    return _pair(ranked_clients, top_jobs(jobs, len(ranked_clients)))


def fifo(
    clients: Iterable[PooledClient],
    jobs: Iterable[ReadyJob],
    *,
    now: float = 0.0,
    rng: random.Random | None = None,
) -> list[Assignment]:
    """Oldest job first, to clients in the order they asked; ignores price and speed."""
    ranked_clients = sorted(clients, key=request_order_key)
    return _pair(ranked_clients, heapq.nsmallest(len(ranked_clients), jobs, key=fifo_job_key))


def random_match(
    clients: Iterable[PooledClient],
    jobs: Iterable[ReadyJob],
    *,
    now: float = 0.0,
    rng: random.Random | int | None = None,
) -> list[Assignment]:
    """Jobs drawn uniformly at random (with the caller's ``rng``), to clients in request order.

    ``rng`` is required — a ``random.Random`` or an int seed: the policy never touches global
    randomness, so the same generator state (or seed) reproduces the draw, given the jobs in
    the same order.
    """
    if rng is None:
        raise ValueError("the random policy needs an explicit rng=random.Random(seed) or a seed")
    if isinstance(rng, int):
        rng = random.Random(rng)
    ranked_clients = sorted(clients, key=request_order_key)
    ready = list(jobs)
    chosen = rng.sample(ready, min(len(ranked_clients), len(ready)))
    return _pair(ranked_clients, chosen)


def price_only(
    clients: Iterable[PooledClient],
    jobs: Iterable[ReadyJob],
    *,
    now: float = 0.0,
    rng: random.Random | None = None,
) -> list[Assignment]:
    """Highest price first (``job_order_key``), to clients in request order: speed is ignored."""
    ranked_clients = sorted(clients, key=request_order_key)
    return _pair(ranked_clients, top_jobs(jobs, len(ranked_clients)))


DEFAULT_AGING_RATE = 0.01  # cents/s gained per second waited: +36 cents/s an hour


def aging(
    clients: Iterable[PooledClient],
    jobs: Iterable[ReadyJob],
    *,
    now: float = 0.0,
    rng: random.Random | None = None,
    rate: float = DEFAULT_AGING_RATE,
) -> list[Assignment]:
    """The paper's rule on an effective price ``price + rate * (now - submitted_at)``.

    This is the fix for starvation: under the paper's rule a cheap job waits as long as
    enough dearer jobs keep arriving, possibly forever; with aging every job's effective price
    grows while it waits, so after at most ``(p_max - p) / rate`` seconds it outranks any newly
    submitted job. The cost is that the fastest clients no longer always serve the highest
    bidders. ``rate`` is in cents/s per second waited; ``rate=0`` is the paper's rule. Ties
    break like the paper's rule (earlier submission, then lower id). The ranking does not
    depend on ``now`` (see ``aging_job_key``).

    Measured in ``docs/sim.md`` (experiments 3 and 4): at the default rate no job went
    undispatched up to 105% offered load, for 1–1.5 points of value captured; under heavier
    permanent overload no order can serve everyone and aging only spreads the waiting.
    """
    ranked_clients = sorted(clients, key=client_order_key)
    return _pair(ranked_clients, heapq.nsmallest(len(ranked_clients), jobs, key=aging_job_key(rate)))


POLICIES: dict[str, Policy] = {
    "paper": match,
    "fifo": fifo,
    "random": random_match,
    "price-only": price_only,
    "aging": aging,
}


def describe(assignments: Sequence[Assignment]) -> list[tuple[int, int]]:
    """``(client id, job id)`` pairs, handy in logs and test failure messages."""
    return [(a.client.id, a.job.id) for a in assignments]
