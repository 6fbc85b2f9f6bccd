"""An LRU cache simulation with OrderedDict, counting hits and misses."""

from collections import OrderedDict


class LRU:
    def __init__(self, capacity):
        self.capacity = capacity
        self.data = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        if key in self.data:
            self.data.move_to_end(key)
            self.hits += 1
            return self.data[key]
        self.misses += 1
        return None

    def put(self, key, value):
        self.data[key] = value
        self.data.move_to_end(key)
        if len(self.data) > self.capacity:
            self.data.popitem(last=False)


def simulate(capacity, requests):
    cache = LRU(capacity)
    for key in requests:
        if cache.get(key) is None:
            cache.put(key, key * key)
    return cache.hits, cache.misses, list(cache.data.items())


CASES = [
    ("simulate", [3, [1, 2, 3, 1, 4, 5, 2, 1, 1, 3, 4, 5, 6, 1]]),
]
