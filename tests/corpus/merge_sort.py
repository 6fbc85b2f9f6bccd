"""Recursive merge sort and an inversion counter built on it."""


def merge(left, right):
    out = []
    i = j = 0
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    out.extend(left[i:])
    out.extend(right[j:])
    return out


def merge_sort(items):
    """
    >>> merge_sort([4, 1, 3, 2])
    [1, 2, 3, 4]
    """
    if len(items) <= 1:
        return list(items)
    mid = len(items) // 2
    left = merge_sort(items[:mid])
    right = merge_sort(items[mid:])
    return merge(left, right)


def count_inversions(items):
    """(sorted copy, number of inversions).

    >>> count_inversions([2, 1, 3])
    ([1, 2, 3], 1)
    """
    if len(items) <= 1:
        return list(items), 0
    mid = len(items) // 2
    left, a = count_inversions(items[:mid])
    right, b = count_inversions(items[mid:])
    merged = []
    i = j = 0
    inv = a + b
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            merged.append(left[i])
            i += 1
        else:
            merged.append(right[j])
            inv += len(left) - i
            j += 1
    merged += left[i:] + right[j:]
    return merged, inv


CASES = [
    ("merge_sort", [[38, 27, 43, 3, 9, 82, 10, 3]]),
    ("count_inversions", [[8, 4, 2, 1, 7, 5, 6, 3]]),
]
