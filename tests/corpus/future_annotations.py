"""Modern annotations with from __future__ import annotations."""

from __future__ import annotations


def chunk(items: list[int], size: int) -> list[list[int]]:
    """
    >>> chunk([1, 2, 3], 2)
    [[1, 2], [3]]
    """
    out: list[list[int]] = []
    for i in range(0, len(items), size):
        out.append(items[i : i + size])
    return out


def flatten(rows: list[list[int]] | None) -> list[int]:
    flat: list[int] = []
    for row in rows or []:
        for x in row:
            flat.append(x)
    return flat


def chunk_sums(items: list[int], size: int) -> dict[int, int]:
    return {i: sum(c) for i, c in enumerate(chunk(items, size))}


CASES = [
    ("chunk", [[1, 2, 3, 4, 5, 6, 7], 3]),
    ("flatten", [[[1, 2], [3], [], [4, 5]]]),
    ("chunk_sums", [[3, 1, 4, 1, 5, 9, 2, 6], 3]),
]
