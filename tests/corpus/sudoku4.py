"""A 4x4 sudoku solver (backtracking over a flat list)."""


def candidates(grid, pos):
    r, c = divmod(pos, 4)
    used = set()
    for i in range(4):
        used.add(grid[r * 4 + i])
        used.add(grid[i * 4 + c])
    br, bc = r - r % 2, c - c % 2
    for dr in range(2):
        for dc in range(2):
            used.add(grid[(br + dr) * 4 + bc + dc])
    return [v for v in range(1, 5) if v not in used]


def solve(grid):
    grid = list(grid)
    if not fill(grid):
        return None
    return [grid[i : i + 4] for i in range(0, 16, 4)]


def fill(grid):
    if 0 not in grid:
        return True
    pos = grid.index(0)
    for v in candidates(grid, pos):
        grid[pos] = v
        if fill(grid):
            return True
    grid[pos] = 0
    return False


CASES = [
    ("solve", [[1, 0, 0, 0, 0, 0, 3, 0, 0, 4, 0, 0, 0, 0, 0, 2]]),
    ("solve", [[0, 0, 0, 3, 0, 4, 0, 0, 0, 0, 2, 0, 2, 0, 0, 0]]),
    ("solve", [[1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0]]),
]
