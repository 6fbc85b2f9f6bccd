"""Recursive in-place quicksort (Lomuto partition)."""


def partition(a, lo, hi):
    pivot = a[hi]
    i = lo
    for j in range(lo, hi):
        if a[j] <= pivot:
            a[i], a[j] = a[j], a[i]
            i += 1
    a[i], a[hi] = a[hi], a[i]
    return i


def quicksort(a, lo=0, hi=None):
    if hi is None:
        hi = len(a) - 1
    if lo < hi:
        p = partition(a, lo, hi)
        quicksort(a, lo, p - 1)
        quicksort(a, p + 1, hi)
    return a


def sort_copy(xs):
    data = list(xs)
    return quicksort(data), len(data) + depth(len(data))


def depth(n):
    if n <= 1:
        return 0
    return 1 + depth(n // 2)
