"""Roman numerals both ways."""

VALUES = [
    (1000, "M"),
    (900, "CM"),
    (500, "D"),
    (400, "CD"),
    (100, "C"),
    (90, "XC"),
    (50, "L"),
    (40, "XL"),
    (10, "X"),
    (9, "IX"),
    (5, "V"),
    (4, "IV"),
    (1, "I"),
]
LETTERS = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def to_roman(n):
    """
    >>> to_roman(1994)
    'MCMXCIV'
    """
    parts = []
    for value, letters in VALUES:
        while n >= value:
            parts.append(letters)
            n -= value
    return "".join(parts)


def from_roman(s):
    total = 0
    for i in range(len(s)):
        v = LETTERS[s[i]]
        if i + 1 < len(s) and LETTERS[s[i + 1]] > v:
            total -= v
        else:
            total += v
    return total


def check_range(lo, hi):
    bad = []
    for n in range(lo, hi):
        if from_roman(to_roman(n)) != n:
            bad.append(n)
    return bad, to_roman(hi)


CASES = [
    ("to_roman", [3888]),
    ("from_roman", ["MMXXIV"]),
    ("check_range", [1, 12]),
]
