"""Bead (gravity) sort, mutating the list it iterates with enumerate."""


def bead_sort(sequence):
    """
    >>> bead_sort([5, 4, 3, 2, 1])
    [1, 2, 3, 4, 5]
    """
    seq = list(sequence)
    for _ in range(len(seq)):
        for i, (upper, lower) in enumerate(zip(seq, seq[1:])):
            if upper > lower:
                seq[i] -= upper - lower
                seq[i + 1] += upper - lower
    return seq


def prefix_sums_in_place(xs):
    xs = list(xs)
    for i, x in enumerate(xs):
        if i + 1 < len(xs):
            xs[i + 1] += x
    return xs


CASES = [
    ("bead_sort", [[7, 2, 9, 4, 1, 6]]),
    ("prefix_sums_in_place", [[1, 2, 3, 4, 5]]),
]
