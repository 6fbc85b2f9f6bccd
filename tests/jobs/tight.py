"""Tight call-free range loops (checked once per chunk of iterations)."""

import math


def tight(n, step):
    acc = 0
    hist = []
    len = 3  # shadows the builtin: the runtime must not depend on it
    for i in range(n):
        for j in range(0, i * 37 % 700, step):
            if j % 5 == 0:
                continue
            acc += j * j % 11 + int(math.sqrt(j))
        for k in range(600, 0, -7):
            acc -= k % len
        hist.append(acc)
    return acc, hist[-3:]
