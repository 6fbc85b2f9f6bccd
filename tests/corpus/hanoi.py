"""Towers of Hanoi, recursive, recording moves and checking them."""


def hanoi(n, source, target, spare, moves):
    if n == 0:
        return moves
    hanoi(n - 1, source, spare, target, moves)
    moves.append((source, target))
    hanoi(n - 1, spare, target, source, moves)
    return moves


def play(n):
    pegs = {"A": list(range(n, 0, -1)), "B": [], "C": []}
    moves = hanoi(n, "A", "C", "B", [])
    for src, dst in moves:
        disk = pegs[src].pop()
        if pegs[dst] and pegs[dst][-1] < disk:
            raise AssertionError("illegal move")
        pegs[dst].append(disk)
    return len(moves), pegs


CASES = [
    ("play", [5]),
]
