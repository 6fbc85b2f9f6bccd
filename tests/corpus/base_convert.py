"""Converting numbers between bases, with string formatting."""

DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def to_base(n, base):
    """
    >>> to_base(255, 16)
    'ff'
    """
    if n == 0:
        return "0"
    sign = "-" if n < 0 else ""
    n = abs(n)
    out = []
    while n:
        n, r = divmod(n, base)
        out.append(DIGITS[r])
    return sign + "".join(reversed(out))


def from_base(text, base):
    value = 0
    for ch in text.lower():
        value = value * base + DIGITS.index(ch)
    return value


def table(numbers):
    rows = []
    for n in numbers:
        rows.append(f"{n:>6} {to_base(n, 2):>12} {to_base(n, 8):>5} {to_base(n, 36):>4}")
    return "\n".join(rows)


CASES = [
    ("table", [[0, 7, 255, 1000, 4095]]),
    ("from_base", ["zz9", 36]),
    ("to_base", [-123456789, 7]),
]
