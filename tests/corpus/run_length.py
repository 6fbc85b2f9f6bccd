"""Run-length encoding with itertools.groupby and by hand."""

import itertools


def encode(text):
    """
    >>> encode("aaabcc")
    '3a1b2c'
    """
    return "".join("%d%s" % (len(list(g)), k) for k, g in itertools.groupby(text))


def decode(code):
    out = []
    count = ""
    for ch in code:
        if ch.isdigit():
            count += ch
        else:
            out.append(ch * int(count))
            count = ""
    return "".join(out)


def encode_by_hand(text):
    runs = []
    i = 0
    while i < len(text):
        j = i
        while j < len(text) and text[j] == text[i]:
            j += 1
        runs.append((text[i], j - i))
        i = j
    return runs


def round_trip(text):
    return decode(encode(text)) == text, encode_by_hand(text)


CASES = [
    ("round_trip", ["wwwwaaadexxxxxxywww"]),
    ("decode", ["12w1b3a"]),
]
