"""Nested loops over many iterable kinds, with break/continue/else at each level."""

WEIGHTS = {"a": 1, "b": 2, "c": 3}


def mix(words, limit):
    total = 0
    seen = []
    for wi, word in enumerate(words):
        for ch, w in zip(word, range(len(word))):
            if ch == "x":
                continue
            if ch == "q":
                break
            for k, v in WEIGHTS.items():
                if k == ch:
                    total += v * (w + 1)
                    break
            else:
                total += 1
            j = 0
            while j < limit:
                j += 1
                if (j + wi) % 3 == 0:
                    continue
                total += j
                if total > 10**6:
                    break
            else:
                seen.append(ch)
        else:
            seen.append(word)
        for key in sorted(WEIGHTS.keys()):
            total += len(key)
        for c in "ok":
            total += ord(c) % 3
        for t in (1, 2):
            total -= t
    return total, seen
