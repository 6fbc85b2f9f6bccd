"""Sieve of Eratosthenes, trial division and prime factorisation."""

import math


def sieve(limit):
    """
    >>> sieve(20)
    [2, 3, 5, 7, 11, 13, 17, 19]
    """
    flags = [True] * (limit + 1)
    flags[0] = flags[1] = False
    for i in range(2, math.isqrt(limit) + 1):
        if flags[i]:
            for j in range(i * i, limit + 1, i):
                flags[j] = False
    return [i for i, f in enumerate(flags) if f]


def factorize(n):
    factors = []
    d = 2
    while d * d <= n:
        while n % d == 0:
            factors.append(d)
            n //= d
        d += 1
    if n > 1:
        factors.append(n)
    return factors


def twin_primes(limit):
    ps = sieve(limit)
    return [(a, b) for a, b in zip(ps, ps[1:]) if b - a == 2]


def goldbach(n):
    ps = set(sieve(n))
    for p in sorted(ps):
        if n - p in ps:
            return p, n - p
    return None


CASES = [
    ("sieve", [120]),
    ("factorize", [360360]),
    ("twin_primes", [100]),
    ("goldbach", [98]),
]
