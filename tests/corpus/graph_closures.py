"""Graph search written with nested helpers, the way people write it (recursive dfs over captured
state, a nonlocal counter, a key function passed to sorted/min)."""

from collections import deque


def count_islands(grid):
    """
    >>> count_islands(["11000", "11000", "00100", "00011"])
    3
    """
    rows = len(grid)
    cols = len(grid[0]) if rows else 0
    seen = set()

    def sink(r, c):
        if r < 0 or c < 0 or r >= rows or c >= cols:
            return
        if grid[r][c] != "1" or (r, c) in seen:
            return
        seen.add((r, c))
        sink(r + 1, c)
        sink(r - 1, c)
        sink(r, c + 1)
        sink(r, c - 1)

    islands = 0
    for r in range(rows):
        for c in range(cols):
            if grid[r][c] == "1" and (r, c) not in seen:
                sink(r, c)
                islands += 1
    return islands


def topo_order(n, edges):
    """Topological order by dfs post-order; raises on a cycle."""
    graph = {i: [] for i in range(n)}
    for a, b in edges:
        graph[a].append(b)
    state = {}
    order = []
    steps = 0

    def visit(u):
        nonlocal steps
        steps += 1
        if state.get(u) == 1:
            raise ValueError("cycle at %d" % u)
        if state.get(u) == 2:
            return
        state[u] = 1
        for v in sorted(graph[u]):
            visit(v)
        state[u] = 2
        order.append(u)

    for u in range(n):
        visit(u)
    return order[::-1], steps


def nearest_first(points, origin):
    """Points by distance to origin, nearest first, with a nested key function."""
    ox, oy = origin

    def dist(p):
        return (p[0] - ox) ** 2 + (p[1] - oy) ** 2

    ranked = sorted(points, key=dist)
    out = []
    for p in ranked:
        out.append((p, dist(p)))
    return out, min(points, key=dist)


def bfs_levels(n, edges, start):
    adj = [[] for _ in range(n)]
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)

    def neighbours(u):
        return sorted(adj[u])

    level = {start: 0}
    queue = deque([start])
    while queue:
        u = queue.popleft()
        for v in neighbours(u):
            if v not in level:
                level[v] = level[u] + 1
                queue.append(v)
    return sorted(level.items())


CASES = [
    ("count_islands", [["11000", "11000", "00100", "00011"]]),
    ("count_islands", [["1011101", "0010100", "1110111", "0000000", "1111111"]]),
    ("topo_order", [6, [(5, 2), (5, 0), (4, 0), (4, 1), (2, 3), (3, 1)]]),
    ("topo_order", [3, [(0, 1), (1, 2), (2, 0)]]),
    ("nearest_first", [[(3, 4), (1, 1), (-2, 5), (0, 0), (7, -1)], (1, 2)]),
    ("bfs_levels", [8, [(0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (6, 7)], 0]),
]
