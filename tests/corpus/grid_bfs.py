"""Breadth-first search on a grid of strings, with collections.deque."""

from collections import deque

MAZE = [
    "S.#.....",
    ".##.###.",
    "....#...",
    "#.#...#E",
]


def find(grid, ch):
    for r, row in enumerate(grid):
        c = row.find(ch)
        if c >= 0:
            return r, c
    return None


def shortest(grid):
    start = find(grid, "S")
    goal = find(grid, "E")
    seen = {start: 0}
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        if (r, c) == goal:
            return seen[(r, c)]
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < len(grid) and 0 <= nc < len(grid[0]) and grid[nr][nc] != "#":
                if (nr, nc) not in seen:
                    seen[(nr, nc)] = seen[(r, c)] + 1
                    queue.append((nr, nc))
    return -1


def count_islands(grid):
    rows, cols = len(grid), len(grid[0])
    seen = set()
    islands = 0
    for r in range(rows):
        for c in range(cols):
            if grid[r][c] == "1" and (r, c) not in seen:
                islands += 1
                stack = [(r, c)]
                while stack:
                    y, x = stack.pop()
                    if (y, x) in seen:
                        continue
                    seen.add((y, x))
                    for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                        if 0 <= ny < rows and 0 <= nx < cols and grid[ny][nx] == "1":
                            stack.append((ny, nx))
    return islands


def solve_default():
    return shortest(MAZE)


CASES = [
    ("solve_default", []),
    ("count_islands", [["11000", "11011", "00100", "00011"]]),
]
