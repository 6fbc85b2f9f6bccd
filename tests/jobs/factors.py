"""Factor finding: break, continue and loop-else."""


def is_prime(n):
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True


def find_factors(numbers):
    out = {}
    for n in numbers:
        if n < 0:
            continue
        fs = []
        for d in range(1, n + 1):
            if n % d:
                continue
            fs.append(d)
            if len(fs) > 6:
                fs.append("many")
                break
        else:
            fs.append("all")
        out[n] = (fs, is_prime(n))
    return out
