"""A generator job: yields its own checkpoint, resumes from it."""


def partial_sums(n, step=3, resume=None):
    if resume is None:
        i, acc, hist = 0, 0, []
    else:
        i, acc, hist = resume
    while i < n:
        acc += i * i
        i += 1
        if i % step == 0:
            hist.append(acc)
            yield (i, acc, hist)
    return acc, hist
