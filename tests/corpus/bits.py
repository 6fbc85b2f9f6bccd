"""Bit manipulation: popcount, gray codes, subsets by bitmask."""


def popcount(n):
    """
    >>> popcount(0b1011)
    3
    """
    count = 0
    while n:
        n &= n - 1
        count += 1
    return count


def gray_code(bits):
    return [i ^ (i >> 1) for i in range(1 << bits)]


def subsets(items):
    out = []
    for mask in range(1 << len(items)):
        out.append([items[i] for i in range(len(items)) if mask >> i & 1])
    return out


def reverse_bits(n, width):
    result = 0
    for _ in range(width):
        result = (result << 1) | (n & 1)
        n >>= 1
    return result


def summary(n):
    return popcount(n), reverse_bits(n, 16), gray_code(3), bin(n)


CASES = [
    ("summary", [0xBEEF]),
    ("subsets", [["a", "b", "c"]]),
    ("popcount", [1606938044258990275541962092341162602522202993782792835301375]),
]
