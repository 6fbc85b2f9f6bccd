"""Brute-force travelling salesman over itertools.permutations."""

import itertools
import math

CITIES = {"a": (0, 0), "b": (1, 5), "c": (5, 2), "d": (6, 6)}


def distance(p, q):
    return math.hypot(p[0] - q[0], p[1] - q[1])


def tour_length(order):
    total = 0.0
    for i in range(len(order)):
        total += distance(CITIES[order[i]], CITIES[order[(i + 1) % len(order)]])
    return total


def best_tour():
    names = sorted(CITIES)
    first = names[0]
    best = None
    for rest in itertools.permutations(names[1:]):
        order = (first,) + rest
        length = tour_length(order)
        if best is None or length < best[0]:
            best = (round(length, 6), order)
    return best


def pair_products(xs, ys):
    out = []
    for a, b in itertools.product(xs, ys):
        out.append(a * b)
    return out


CASES = [
    ("best_tour", []),
    ("pair_products", [[1, 2, 3], [10, 20]]),
]
