"""Dynamic programming with a memoized nested function (a dict captured by the closure), and a
nested function whose defaults are fixed when it is defined."""


def edit_distance(a, b):
    memo = {}

    def d(i, j):
        if i == len(a):
            return len(b) - j
        if j == len(b):
            return len(a) - i
        if (i, j) in memo:
            return memo[(i, j)]
        if a[i] == b[j]:
            r = d(i + 1, j + 1)
        else:
            r = 1 + min(d(i + 1, j), d(i, j + 1), d(i + 1, j + 1))
        memo[(i, j)] = r
        return r

    return d(0, 0)


def coin_ways(coins, totals):
    results = []
    for total in totals:
        cache = {}

        def ways(amount, k=len(coins)):
            if amount == 0:
                return 1
            if amount < 0 or k == 0:
                return 0
            key = (amount, k)
            if key not in cache:  # noqa: B023 (consumed in the same iteration)
                cache[key] = ways(amount - coins[k - 1], k) + ways(amount, k - 1)  # noqa: B023 (consumed in the same iteration)
            return cache[key]  # noqa: B023 (consumed in the same iteration)

        results.append(ways(total))
    return results


def running_stats(values):
    total = 0
    count = 0

    def add(v):
        nonlocal total, count
        total += v
        count += 1

    def mean():
        return total / count if count else 0.0

    means = []
    for v in values:
        add(v)
        means.append(round(mean(), 6))
    return means, total, count


CASES = [
    ("edit_distance", ["kitten", "sitting"]),
    ("edit_distance", ["intention", "execution"]),
    ("coin_ways", [[1, 2, 5], [0, 5, 11, 30]]),
    ("running_stats", [[3, 1, 4, 1, 5, 9, 2, 6]]),
]
