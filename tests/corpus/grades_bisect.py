"""Grade lookup with bisect and a sorted insertion list."""

import bisect

BREAKPOINTS = [60, 70, 80, 90]
GRADES = "FDCBA"


def grade(score):
    """
    >>> grade(85)
    'B'
    """
    return GRADES[bisect.bisect(BREAKPOINTS, score)]


def report(scores):
    by_grade = {}
    ranked = []
    for name, score in scores:
        by_grade.setdefault(grade(score), []).append(name)
        bisect.insort(ranked, (score, name))
    return by_grade, ranked[-3:]


CASES = [
    ("report", [[["ann", 91], ["bob", 67], ["cy", 80], ["dee", 59], ["eve", 79], ["fay", 100]]]),
]
