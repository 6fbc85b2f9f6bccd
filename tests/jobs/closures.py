"""Nested functions and closures that live in a frame across freezes (tests/test_tasklet_closures.py)."""


def components(edges, n):
    """Connected components by a recursive nested dfs over captured state."""
    adj = {i: [] for i in range(n)}
    for a, b in edges:
        adj[a % n].append(b % n)
        adj[b % n].append(a % n)
    seen = set()
    sizes = []
    visits = 0

    def dfs(node):
        nonlocal visits
        visits += 1
        seen.add(node)
        size = 1
        for nxt in adj[node]:
            if nxt not in seen:
                size += dfs(nxt)
        return size

    for start in range(n):
        if start not in seen:
            sizes.append(dfs(start))
    return sorted(sizes), visits


def scaled(values, factor=3):
    """A closure over a variable the outer loop rebinds, and defaults fixed at def time."""
    offset = 0

    def shift(v, k=factor):
        return v * k + offset

    factor = factor + 1  # the default stays the old factor
    out = []
    for i, v in enumerate(values):
        out.append(shift(v))
        offset = offset + i  # the closure sees the new value, after a thaw too
        if i % 3 == 0:
            out.append(max(values, key=shift))
    return out, sorted(values, key=shift)


def counters(words):
    """Two closures sharing one cell, one rebinding it with nonlocal; a def inside a loop."""
    count = 0

    def add(k):
        nonlocal count
        count += k
        return count

    def peek():
        return count

    log = []
    for w in words:
        add(len(w))
        for c in w:

            def weight(ch, base=len(log)):
                return ord(ch) % 7 + base

            log.append(weight(c) + peek())
        count = count * 2 % 1009  # the outer frame rebinds the shared cell
    return log, peek()


def memo_paths(rows, cols):
    """A memoized recursive nested function with a helper nested inside it."""
    memo = {}

    def paths(r, c):
        def key():
            return (r, c)

        if r == 0 or c == 0:
            return 1
        if key() not in memo:
            memo[key()] = paths(r - 1, c) + paths(r, c - 1)
        return memo[key()]

    total = 0
    for r in range(rows):
        for c in range(cols):
            total += paths(r, c) % 1000003
    return total, len(memo)


def twice(v):
    for _ in range(2):
        v = v + 1
    return v


def order_of_evaluation(n):
    """A nested function rebinding the frame's variable inside an expression that calls a job
    function: the variable is read before the call, as natively."""
    x = 1

    def bump():
        nonlocal x
        x += 10
        return x

    out = []
    for _ in range(n):
        out.append(x + twice(bump()))
    return out, x


def shared_default(n):
    """A nested function's default is the same list as a local: still the same list after a thaw."""
    store = []

    def add(v, acc=store):
        acc.append(v)
        return len(acc)

    for i in range(n):
        add(i * i)
        store.append(-i)
    return store, add(99), store
