"""A sample market job: count the primes below ``limit`` by trial division (deliberately slow)."""


def is_prime(n):
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True


def count_primes(limit):
    count = 0
    for n in range(limit):
        if is_prime(n):
            count += 1
        if n % 10000 == 0:
            progress(n / limit)  # type: ignore[name-defined]  # noqa: F821 - the runtime gives every job progress()
    return count
