"""Interval merging, insertion and meeting rooms."""

import heapq


def merge_intervals(intervals):
    """
    >>> merge_intervals([[1, 3], [2, 6], [8, 10]])
    [[1, 6], [8, 10]]
    """
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def rooms_needed(meetings):
    ends = []
    rooms = 0
    for start, end in sorted(meetings):
        while ends and ends[0] <= start:
            heapq.heappop(ends)
        heapq.heappush(ends, end)
        rooms = max(rooms, len(ends))
    return rooms


def free_slots(busy, day_start, day_end):
    slots = []
    current = day_start
    for start, end in merge_intervals(busy):
        if start > current:
            slots.append((current, start))
        current = max(current, end)
    if current < day_end:
        slots.append((current, day_end))
    return slots


CASES = [
    ("merge_intervals", [[[1, 4], [4, 5], [7, 9], [8, 12], [0, 0]]]),
    ("rooms_needed", [[[0, 30], [5, 10], [15, 20], [10, 25], [25, 40]]]),
    ("free_slots", [[[9, 10], [12, 13], [9, 11], [15, 17]], 8, 18]),
]
