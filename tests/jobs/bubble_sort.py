"""Bubble sort with an early exit; nested while/for loops."""


def bubble_sort(xs):
    a = list(xs)
    n = len(a)
    swapped = True
    passes = 0
    while swapped:
        swapped = False
        for i in range(n - 1 - passes):
            if a[i] > a[i + 1]:
                a[i], a[i + 1] = a[i + 1], a[i]
                swapped = True
        passes += 1
    return a, passes
