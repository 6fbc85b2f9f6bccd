"""Disjoint sets as a class with methods, and Kruskal's spanning tree."""


class DisjointSet:
    def __init__(self, n):
        self.parent = list(range(n))
        self.rank = [0] * n

    def find(self, x):
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if self.rank[ra] < self.rank[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        if self.rank[ra] == self.rank[rb]:
            self.rank[ra] += 1
        return True


def kruskal(n, edges):
    """
    >>> kruskal(3, [[0, 1, 1], [1, 2, 2], [0, 2, 3]])
    (3, [(0, 1, 1), (1, 2, 2)])
    """
    ds = DisjointSet(n)
    total = 0
    tree = []
    for u, v, w in sorted(edges, key=lambda e: e[2]):
        if ds.union(u, v):
            total += w
            tree.append((u, v, w))
    return total, tree


def components(n, pairs):
    ds = DisjointSet(n)
    for a, b in pairs:
        ds.union(a, b)
    groups = {}
    for i in range(n):
        groups.setdefault(ds.find(i), []).append(i)
    return sorted(groups.values())


CASES = [
    ("kruskal", [5, [[0, 1, 4], [0, 2, 3], [1, 2, 1], [1, 3, 2], [2, 3, 4], [3, 4, 2], [2, 4, 6]]]),
    ("components", [7, [[0, 1], [2, 3], [1, 4], [5, 6]]]),
]
