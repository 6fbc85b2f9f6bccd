"""Shapes as small classes with inheritance, properties and classmethods."""

import math


class Shape:
    name = "shape"

    def area(self):
        raise NotImplementedError

    def describe(self):
        return "%s %.3f" % (self.name, self.area())


class Circle(Shape):
    name = "circle"

    def __init__(self, r):
        self.r = r

    def area(self):
        return math.pi * self.r**2


class Rect(Shape):
    name = "rect"

    def __init__(self, w, h):
        self.w = w
        self.h = h

    @classmethod
    def square(cls, side):
        return cls(side, side)

    @property
    def perimeter(self):
        return 2 * (self.w + self.h)

    def area(self):
        return self.w * self.h


def catalogue(specs):
    shapes = []
    for kind, *dims in specs:
        if kind == "circle":
            shapes.append(Circle(*dims))
        elif kind == "square":
            shapes.append(Rect.square(*dims))
        else:
            shapes.append(Rect(*dims))
    shapes.sort(key=lambda s: s.area())
    return [s.describe() for s in shapes], sum(s.perimeter for s in shapes if isinstance(s, Rect))


CASES = [
    ("catalogue", [[["circle", 1.5], ["rect", 2, 3], ["square", 2], ["circle", 0.5]]]),
]
