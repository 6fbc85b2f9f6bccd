"""N queens by backtracking with sets."""


def place(row, n, cols, diag1, diag2, board, solutions):
    if row == n:
        solutions.append(list(board))
        return
    for col in range(n):
        if col in cols or row - col in diag1 or row + col in diag2:
            continue
        cols.add(col)
        diag1.add(row - col)
        diag2.add(row + col)
        board.append(col)
        place(row + 1, n, cols, diag1, diag2, board, solutions)
        board.pop()
        cols.remove(col)
        diag1.remove(row - col)
        diag2.remove(row + col)


def solve(n):
    """
    >>> len(solve(4))
    2
    """
    solutions = []
    place(0, n, set(), set(), set(), [], solutions)
    return solutions


def count(n):
    return len(solve(n))


CASES = [
    ("solve", [4]),
    ("count", [4]),
]
