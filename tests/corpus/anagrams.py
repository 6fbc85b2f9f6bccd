"""Grouping anagrams with dicts of lists and sorted keys."""

from collections import defaultdict


def group_anagrams(words):
    groups = defaultdict(list)
    for w in words:
        groups["".join(sorted(w))].append(w)
    return sorted(sorted(g) for g in groups.values())


def is_anagram(a, b):
    counts = {}
    for ch in a:
        counts[ch] = counts.get(ch, 0) + 1
    for ch in b:
        if counts.get(ch, 0) == 0:
            return False
        counts[ch] -= 1
    return all(v == 0 for v in counts.values())


def anagram_pairs(words):
    pairs = []
    for i in range(len(words)):
        for j in range(i + 1, len(words)):
            if is_anagram(words[i], words[j]):
                pairs.append((words[i], words[j]))
    return pairs


CASES = [
    ("group_anagrams", [["eat", "tea", "tan", "ate", "nat", "bat"]]),
    ("anagram_pairs", [["listen", "silent", "enlist", "google", "gogole", "cat"]]),
]
