"""heapq recipes: k smallest, merging sorted runs, running median."""

import heapq


def k_smallest(values, k):
    heap = []
    for v in values:
        heapq.heappush(heap, -v)
        if len(heap) > k:
            heapq.heappop(heap)
    return sorted(-x for x in heap)


def merge_runs(runs):
    heap = []
    for idx, run in enumerate(runs):
        if run:
            heapq.heappush(heap, (run[0], idx, 0))
    out = []
    while heap:
        value, idx, pos = heapq.heappop(heap)
        out.append(value)
        if pos + 1 < len(runs[idx]):
            heapq.heappush(heap, (runs[idx][pos + 1], idx, pos + 1))
    return out


def running_median(stream):
    low, high = [], []
    medians = []
    for x in stream:
        if not low or x <= -low[0]:
            heapq.heappush(low, -x)
        else:
            heapq.heappush(high, x)
        if len(low) > len(high) + 1:
            heapq.heappush(high, -heapq.heappop(low))
        elif len(high) > len(low):
            heapq.heappush(low, -heapq.heappop(high))
        if len(low) > len(high):
            medians.append(-low[0])
        else:
            medians.append((-low[0] + high[0]) / 2)
    return medians


CASES = [
    ("k_smallest", [[9, 1, 8, 2, 7, 3, 6, 4, 5], 3]),
    ("merge_runs", [[[1, 4, 9], [2, 3, 10], [], [0, 11]]]),
    ("running_median", [[5, 15, 1, 3, 8, 7, 9, 10]]),
]
