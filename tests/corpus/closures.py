"""Nested helper functions and closures."""


def make_counter(start):
    count = [start]

    def bump(step=1):
        count[0] += step
        return count[0]

    return bump


def tally(events):
    counter = make_counter(0)
    seen = []
    for e in events:
        seen.append(counter(e))
    return seen


def compose_all(values):
    def double(x):
        return 2 * x

    def inc(x):
        return x + 1

    out = []
    for v in values:
        out.append(inc(double(v)))
    return out


CASES = [
    ("tally", [[1, 2, 3, 4]]),
    ("compose_all", [[0, 5, -2]]),
]
