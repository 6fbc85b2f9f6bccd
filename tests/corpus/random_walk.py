"""A seeded random walk (uses the random module)."""

import random


def walk(seed, steps):
    rng = random.Random(seed)
    x = y = 0
    for _ in range(steps):
        dx, dy = rng.choice([(1, 0), (-1, 0), (0, 1), (0, -1)])
        x += dx
        y += dy
    return x, y


CASES = [
    ("walk", [42, 200]),
]
