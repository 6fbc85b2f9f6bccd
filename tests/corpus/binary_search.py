"""Binary search in the textbook style, with doctests."""


def binary_search(items, target):
    """Index of target in the sorted list items, or -1.

    >>> binary_search([1, 3, 5, 7, 9], 7)
    3
    >>> binary_search([1, 3, 5], 4)
    -1
    """
    lo, hi = 0, len(items) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if items[mid] == target:
            return mid
        if items[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1


def lower_bound(items, target):
    """First index whose item is >= target.

    >>> lower_bound([1, 2, 2, 2, 3], 2)
    1
    """
    lo, hi = 0, len(items)
    while lo < hi:
        mid = (lo + hi) // 2
        if items[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


def search_all(items, targets):
    return [binary_search(items, t) for t in targets]


def search_each(items, targets):
    found = []
    for t in targets:
        found.append((t, binary_search(items, t), lower_bound(items, t)))
    return found


CASES = [
    ("binary_search", [[1, 3, 5, 7, 9, 11, 13], 11]),
    ("lower_bound", [[1, 2, 2, 2, 3, 8, 8, 9], 8]),
    ("search_each", [[2, 4, 6, 8, 10, 12], [1, 4, 12, 13, 7]]),
    ("search_all", [[2, 4, 6, 8], [4, 5]]),
]
