"""Conway's game of life on a set of live cells."""

BLINKER = [(1, 0), (1, 1), (1, 2)]
GLIDER = [(0, 1), (1, 2), (2, 0), (2, 1), (2, 2)]


def neighbours(cell):
    r, c = cell
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr or dc:
                yield r + dr, c + dc


def step(live):
    counts = {}
    for cell in live:
        for n in neighbours(cell):
            counts[n] = counts.get(n, 0) + 1
    return {cell for cell, k in counts.items() if k == 3 or (k == 2 and cell in live)}


def run(generations):
    live = set(GLIDER)
    for _ in range(generations):
        live = step(live)
    return sorted(live)


CASES = [
    ("run", [8]),
]
