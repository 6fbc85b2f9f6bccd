"""Word counting with Counter, str methods and sorting keys."""

import string
from collections import Counter

TEXT = """It was the best of times, it was the worst of times, it was the age of
wisdom, it was the age of foolishness, it was the epoch of belief."""


def words(text):
    table = str.maketrans("", "", string.punctuation)
    return text.lower().translate(table).split()


def top_words(text, n):
    counts = Counter()
    for w in words(text):
        counts[w] += 1
    return counts.most_common(n)


def longest_words(text):
    best = []
    size = 0
    for w in set(words(text)):
        if len(w) > size:
            best, size = [w], len(w)
        elif len(w) == size:
            best.append(w)
    return sorted(best)


def letter_histogram(text):
    hist = {}
    for ch in text:
        if ch.isalpha():
            hist[ch.lower()] = hist.get(ch.lower(), 0) + 1
    return sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))[:5]


def default_report():
    return top_words(TEXT, 4), longest_words(TEXT), letter_histogram(TEXT)


CASES = [
    ("default_report", []),
    ("top_words", ["a b a c b a", 2]),
]
