"""Conway's game of life on a list-of-lists grid (no generators)."""


def count_live(grid, r, c):
    rows, cols = len(grid), len(grid[0])
    total = 0
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if (dr or dc) and 0 <= r + dr < rows and 0 <= c + dc < cols:
                total += grid[r + dr][c + dc]
    return total


def step(grid):
    new = []
    for r in range(len(grid)):
        row = []
        for c in range(len(grid[0])):
            k = count_live(grid, r, c)
            row.append(1 if k == 3 or (k == 2 and grid[r][c]) else 0)
        new.append(row)
    return new


def run(grid, generations):
    for _ in range(generations):
        grid = step(grid)
    return grid


CASES = [
    ("run", [[[0, 1, 0], [0, 1, 0], [0, 1, 0]], 2]),
]
