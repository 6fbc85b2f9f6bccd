"""Small Ackermann: deep, loop-free recursion with a nested job call."""


def ack(m, n):
    if m == 0:
        return n + 1
    if n == 0:
        return ack(m - 1, 1)
    return ack(m - 1, ack(m, n - 1))


def ack_table(mmax, nmax):
    rows = []
    for m in range(mmax + 1):
        rows.append([])
        for n in range(nmax + 1):
            rows[-1].append(ack(m, n))
    return rows
