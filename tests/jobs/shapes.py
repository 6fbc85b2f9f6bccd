"""Instances of job classes in the state, shared references, a module-level cache."""

import math

CACHE = {}


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def norm(self):
        return math.hypot(self.x, self.y)


class Path:
    def __init__(self, name):
        self.name = name
        self.points = []
        self.owner = self

    def add(self, p):
        self.points.append(p)


def length(path):
    total = 0.0
    prev = None
    for p in path.points:
        if prev is not None:
            total += math.hypot(p.x - prev.x, p.y - prev.y)
        prev = p
    return total


def build(coords):
    path = Path("main")
    shared = Point(0, 0)
    for x, y in coords:
        path.add(Point(x, y))
        path.add(shared)
        key = (x, y)
        CACHE[key] = CACHE.get(key, 0) + 1
    shared.x = 1
    total = length(path)
    same = all(q is shared for q in path.points[1::2])
    return round(total, 6), same, len(CACHE), path.owner is path, sorted(CACHE.values())
