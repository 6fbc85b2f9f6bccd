"""Matrix helpers on lists of lists: product, transpose, determinant."""


def transpose(m):
    return [list(row) for row in zip(*m)]


def matmul(a, b):
    """
    >>> matmul([[1, 2], [3, 4]], [[5, 6], [7, 8]])
    [[19, 22], [43, 50]]
    """
    bt = transpose(b)
    out = []
    for row in a:
        new = []
        for col in bt:
            s = 0
            for x, y in zip(row, col):
                s += x * y
            new.append(s)
        out.append(new)
    return out


def determinant(m):
    if len(m) == 1:
        return m[0][0]
    if len(m) == 2:
        return m[0][0] * m[1][1] - m[0][1] * m[1][0]
    total = 0
    for c in range(len(m)):
        minor = [row[:c] + row[c + 1 :] for row in m[1:]]
        sub = determinant(minor)
        total += (-1) ** c * m[0][c] * sub
    return total


def power(m, k):
    result = [[int(i == j) for j in range(len(m))] for i in range(len(m))]
    for _ in range(k):
        result = matmul(result, m)
    return result


CASES = [
    ("matmul", [[[1, 2, 3], [4, 5, 6]], [[7, 8], [9, 10], [11, 12]]]),
    ("determinant", [[[2, 0, 1, 3], [1, 1, 0, 2], [4, 1, 3, 0], [0, 2, 1, 1]]]),
    ("power", [[[1, 1], [1, 0]], 10]),
]
