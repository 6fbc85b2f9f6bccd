"""Classic dynamic programming tables: LCS, edit distance, coin change."""


def lcs(a, b):
    """
    >>> lcs("ABCBDAB", "BDCABA")
    4
    """
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def coin_change(coins, amount):
    best = [0] + [None] * amount
    for value in range(1, amount + 1):
        for c in coins:
            if c <= value and best[value - c] is not None:
                cand = best[value - c] + 1
                if best[value] is None or cand < best[value]:
                    best[value] = cand
    return best[amount]


def knapsack(items, capacity):
    table = [0] * (capacity + 1)
    for weight, value in items:
        for cap in range(capacity, weight - 1, -1):
            table[cap] = max(table[cap], table[cap - weight] + value)
    return table[capacity]


CASES = [
    ("lcs", ["AGGTAB", "GXTXAYB"]),
    ("edit_distance", ["kitten", "sitting"]),
    ("coin_change", [[1, 5, 10, 25], 30]),
    ("knapsack", [[[1, 1], [3, 4], [4, 5], [5, 7]], 7]),
]
