"""Loops over dict items, keys and values, with zip, updating values in place."""


def normalise(scores):
    total = sum(scores.values())
    for name, value in scores.items():
        scores[name] = round(value / total, 6)
    return scores


def invert(mapping):
    out = {}
    for key, value in sorted(mapping.items()):
        out.setdefault(value, []).append(key)
    return out


def pair_up(names, ages):
    people = {}
    for name, age in zip(names, ages):
        people[name] = age
    older = [n for n, a in people.items() if a >= 30]
    return people, older


def bump_all(counts, keys):
    for k in list(counts):
        if k in keys:
            counts[k] += 10
        else:
            del counts[k]
    return counts


CASES = [
    ("normalise", [{"ann": 3, "bob": 5, "cy": 2}]),
    ("invert", [{"a": 1, "b": 2, "c": 1, "d": 3}]),
    ("pair_up", [["ann", "bob", "cy", "dee"], [31, 25, 40]]),
    ("bump_all", [{"x": 1, "y": 2, "z": 3}, ["x", "z"]]),
]
