"""Generator pipelines: helpers that yield, consumed by a driver function."""


def read_numbers(text):
    for token in text.split(","):
        token = token.strip()
        if token:
            yield int(token)


def running_total(numbers):
    total = 0
    for n in numbers:
        total += n
        yield total


def window_pairs(numbers):
    prev = None
    for n in numbers:
        if prev is not None:
            yield prev, n
        prev = n


def report(text):
    totals = list(running_total(read_numbers(text)))
    rises = sum(1 for a, b in window_pairs(read_numbers(text)) if b > a)
    return totals, rises


CASES = [
    ("report", ["3, 1, 4, 1, 5, 9, 2, 6, 5, 3"]),
]
