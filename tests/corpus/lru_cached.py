# ruff: noqa: UP033  (the corpus keeps the spelling people write)
"""functools.lru_cache on a recursive function (a very common idiom)."""

import functools


@functools.lru_cache(maxsize=None)
def partitions(n, k):
    if n == 0:
        return 1
    if n < 0 or k == 0:
        return 0
    return partitions(n - k, k) + partitions(n, k - 1)


def partition_numbers(limit):
    return [partitions(n, n) for n in range(limit)]


CASES = [
    ("partition_numbers", [25]),
]
