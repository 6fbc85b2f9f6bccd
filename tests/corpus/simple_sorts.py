"""Insertion, selection and shell sort on copies of the input."""


def insertion_sort(seq):
    """
    >>> insertion_sort([3, 1, 2])
    [1, 2, 3]
    """
    a = list(seq)
    for i in range(1, len(a)):
        key = a[i]
        j = i - 1
        while j >= 0 and a[j] > key:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = key
    return a


def selection_sort(seq):
    a = list(seq)
    n = len(a)
    for i in range(n):
        smallest = i
        for j in range(i + 1, n):
            if a[j] < a[smallest]:
                smallest = j
        a[i], a[smallest] = a[smallest], a[i]
    return a


def shell_sort(seq):
    a = list(seq)
    gap = len(a) // 2
    while gap > 0:
        for i in range(gap, len(a)):
            tmp = a[i]
            j = i
            while j >= gap and a[j - gap] > tmp:
                a[j] = a[j - gap]
                j -= gap
            a[j] = tmp
        gap //= 2
    return a


CASES = [
    ("insertion_sort", [[5, 2, 9, 1, 5, 6, -3, 0]]),
    ("selection_sort", [["pear", "apple", "fig", "kiwi"]]),
    ("shell_sort", [[23, 4, 42, 8, 15, 16, 1, 0, 99, -7]]),
]
