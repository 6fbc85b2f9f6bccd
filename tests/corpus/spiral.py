"""Spiral order of a matrix and rotating a matrix in place."""


def spiral(matrix):
    out = []
    top, bottom = 0, len(matrix) - 1
    left, right = 0, len(matrix[0]) - 1
    while top <= bottom and left <= right:
        for c in range(left, right + 1):
            out.append(matrix[top][c])
        for r in range(top + 1, bottom + 1):
            out.append(matrix[r][right])
        if top < bottom:
            for c in range(right - 1, left - 1, -1):
                out.append(matrix[bottom][c])
        if left < right:
            for r in range(bottom - 1, top, -1):
                out.append(matrix[r][left])
        top, bottom, left, right = top + 1, bottom - 1, left + 1, right - 1
    return out


def rotate(matrix):
    n = len(matrix)
    m = [row[:] for row in matrix]
    for i in range(n):
        for j in range(i + 1, n):
            m[i][j], m[j][i] = m[j][i], m[i][j]
    for row in m:
        row.reverse()
    return m


CASES = [
    ("spiral", [[[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]]),
    ("rotate", [[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]),
]
