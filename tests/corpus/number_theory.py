"""gcd, lcm, extended Euclid and modular inverse, with functools.reduce."""

import functools
import math


def gcd(a, b):
    """
    >>> gcd(48, 18)
    6
    """
    while b:
        a, b = b, a % b
    return abs(a)


def ext_gcd(a, b):
    if b == 0:
        return a, 1, 0
    g, x, y = ext_gcd(b, a % b)
    return g, y, x - (a // b) * y


def mod_inverse(a, m):
    g, x, _ = ext_gcd(a, m)
    if g != 1:
        raise ValueError("no inverse")
    return x % m


def lcm_all(numbers):
    return functools.reduce(lambda a, b: a * b // math.gcd(a, b), numbers, 1)


def crt(remainders, moduli):
    total = 0
    prod = lcm_all(moduli)
    for r, m in zip(remainders, moduli):
        p = prod // m
        total += r * mod_inverse(p, m) * p
    return total % prod


def inverse_or_error(a, m):
    try:
        return mod_inverse(a, m)
    except ValueError as exc:
        return "error: %s" % exc


CASES = [
    ("gcd", [1071, 462]),
    ("crt", [[2, 3, 2], [3, 5, 7]]),
    ("inverse_or_error", [4, 8]),
    ("lcm_all", [[4, 6, 10, 15]]),
]
