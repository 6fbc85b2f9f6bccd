"""Fibonacci four ways: recursion with a dict memo, iteration, matrix power."""

MEMO = {0: 0, 1: 1}


def fib_memo(n):
    if n in MEMO:
        return MEMO[n]
    a = fib_memo(n - 1)
    b = fib_memo(n - 2)
    MEMO[n] = a + b
    return MEMO[n]


def fib_iter(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def mat_mult(x, y):
    return [
        [x[0][0] * y[0][0] + x[0][1] * y[1][0], x[0][0] * y[0][1] + x[0][1] * y[1][1]],
        [x[1][0] * y[0][0] + x[1][1] * y[1][0], x[1][0] * y[0][1] + x[1][1] * y[1][1]],
    ]


def fib_matrix(n):
    result = [[1, 0], [0, 1]]
    base = [[1, 1], [1, 0]]
    while n:
        if n & 1:
            result = mat_mult(result, base)
        base = mat_mult(base, base)
        n >>= 1
    return result[0][1]


def all_agree(n):
    """
    >>> all_agree(30)
    832040
    """
    a = fib_memo(n)
    b = fib_iter(n)
    c = fib_matrix(n)
    assert a == b == c
    return a


CASES = [
    ("all_agree", [60]),
    ("fib_iter", [300]),
]
