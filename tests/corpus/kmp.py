"""Knuth-Morris-Pratt string search."""


def prefix_function(pattern):
    pi = [0] * len(pattern)
    k = 0
    for i in range(1, len(pattern)):
        while k and pattern[i] != pattern[k]:
            k = pi[k - 1]
        if pattern[i] == pattern[k]:
            k += 1
        pi[i] = k
    return pi


def find_all(text, pattern):
    """
    >>> find_all("abababa", "aba")
    [0, 2, 4]
    """
    pi = prefix_function(pattern)
    hits = []
    k = 0
    for i, ch in enumerate(text):
        while k and ch != pattern[k]:
            k = pi[k - 1]
        if ch == pattern[k]:
            k += 1
        if k == len(pattern):
            hits.append(i - k + 1)
            k = pi[k - 1]
    return hits


CASES = [
    ("find_all", ["abracadabra abracadabra", "abra"]),
    ("prefix_function", ["aabaaab"]),
]
