"""Exact series with fractions.Fraction."""

from fractions import Fraction


def harmonic(n):
    """
    >>> harmonic(3)
    Fraction(11, 6)
    """
    total = Fraction(0)
    for k in range(1, n + 1):
        total += Fraction(1, k)
    return total


def egyptian(fraction_num, fraction_den):
    f = Fraction(fraction_num, fraction_den)
    parts = []
    while f > 0:
        d = -(-f.denominator // f.numerator)
        parts.append(d)
        f -= Fraction(1, d)
    return parts


def bernoulli(n):
    a = [Fraction(0)] * (n + 1)
    for m in range(n + 1):
        a[m] = Fraction(1, m + 1)
        for j in range(m, 0, -1):
            a[j - 1] = j * (a[j - 1] - a[j])
    return a[0]


def as_text(n):
    h = harmonic(n)
    return str(h), str(bernoulli(8)), egyptian(7, 15)


CASES = [
    ("as_text", [20]),
    ("harmonic", [12]),
]
