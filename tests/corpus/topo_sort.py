"""Depth-first topological sort and cycle detection (recursive)."""


def visit(node, graph, state, order):
    if state.get(node) == 1:
        raise ValueError("cycle at %s" % node)
    if state.get(node) == 2:
        return
    state[node] = 1
    for nxt in graph.get(node, []):
        visit(nxt, graph, state, order)
    state[node] = 2
    order.append(node)


def topo_sort(graph):
    """
    >>> topo_sort({"a": ["b"], "b": []})
    ['a', 'b']
    """
    state = {}
    order = []
    for node in sorted(graph):
        visit(node, graph, state, order)
    order.reverse()
    return order


def has_cycle(graph):
    try:
        topo_sort(graph)
    except ValueError as exc:
        return str(exc)
    return False


CASES = [
    (
        "topo_sort",
        [
            {
                "shirt": ["tie", "belt"],
                "tie": ["jacket"],
                "pants": ["shoes", "belt"],
                "belt": ["jacket"],
                "socks": ["shoes"],
            }
        ],
    ),
    ("has_cycle", [{"a": ["b"], "b": ["c"], "c": ["a"]}]),
    ("has_cycle", [{"a": ["b"], "b": []}]),
]
