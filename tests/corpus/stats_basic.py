"""Descriptive statistics by hand and with the statistics module."""

import statistics


def mean(xs):
    total = 0.0
    for x in xs:
        total += x
    return total / len(xs)


def variance(xs):
    m = mean(xs)
    acc = 0.0
    for x in xs:
        acc += (x - m) ** 2
    return acc / (len(xs) - 1)


def describe(xs):
    return {
        "mean": mean(xs),
        "var": variance(xs),
        "median": statistics.median(xs),
        "stdev": statistics.stdev(xs),
        "mode": statistics.mode(xs),
    }


def zscores(xs):
    m = mean(xs)
    s = variance(xs) ** 0.5
    return [round((x - m) / s, 9) for x in xs]


CASES = [
    ("describe", [[2.5, 3.5, 3.5, 7.25, 1.0, 9.5, 3.5]]),
    ("zscores", [[10, 12, 23, 23, 16, 23, 21, 16]]),
]
