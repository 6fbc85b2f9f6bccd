"""A job that fails after some work."""


def divide_all(xs):
    out = []
    for x in xs:
        out.append(100 // x)
    return out
