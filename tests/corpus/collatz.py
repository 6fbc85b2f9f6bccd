"""Collatz sequences with a dict cache and while loops."""

CACHE = {1: 1}


def steps(n):
    path = []
    while n not in CACHE:
        path.append(n)
        n = n // 2 if n % 2 == 0 else 3 * n + 1
    length = CACHE[n]
    for m in reversed(path):
        length += 1
        CACHE[m] = length
    return length


def longest(limit):
    """
    >>> longest(10)
    (9, 20)
    """
    best = (1, 1)
    for n in range(1, limit):
        s = steps(n)
        if s > best[1]:
            best = (n, s)
    return best


CASES = [
    ("longest", [25]),
    ("steps", [27]),
]
