"""Shortest paths on a dict-of-dicts graph."""

import heapq

GRAPH = {
    "a": {"b": 7, "c": 9, "f": 14},
    "b": {"a": 7, "c": 10, "d": 15},
    "c": {"a": 9, "b": 10, "d": 11, "f": 2},
    "d": {"b": 15, "c": 11, "e": 6},
    "e": {"d": 6, "f": 9},
    "f": {"a": 14, "c": 2, "e": 9},
}


def dijkstra(graph, source):
    dist = {source: 0}
    prev = {}
    queue = [(0, source)]
    done = set()
    while queue:
        d, node = heapq.heappop(queue)
        if node in done:
            continue
        done.add(node)
        for nxt, w in graph[node].items():
            nd = d + w
            if nd < dist.get(nxt, float("inf")):
                dist[nxt] = nd
                prev[nxt] = node
                heapq.heappush(queue, (nd, nxt))
    return dist, prev


def path(source, target):
    """
    >>> path("a", "e")
    (20, ['a', 'c', 'f', 'e'])
    """
    dist, prev = dijkstra(GRAPH, source)
    route = [target]
    while route[-1] != source:
        route.append(prev[route[-1]])
    return dist[target], route[::-1]


CASES = [
    ("path", ["a", "e"]),
    ("path", ["d", "a"]),
    ("dijkstra", [{"x": {"y": 1}, "y": {"z": 2}, "z": {}}, "x"]),
]
