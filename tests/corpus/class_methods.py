"""Algorithms kept as static and class methods, doctests inside the class (the reviewers' corpus has 58
such modules): each entry is Class.method."""


class NumberTools:
    BASE = 10

    @staticmethod
    def digit_sum(n):
        total = 0
        while n:
            total += n % 10
            n //= 10
        return total

    @staticmethod
    def digital_root(n):
        """
        >>> NumberTools.digital_root(987654321)
        9
        """
        while n >= NumberTools.BASE:
            n = NumberTools.digit_sum(n)
        return n

    @staticmethod
    def gcd(a, b):
        """
        >>> NumberTools.gcd(84, 36)
        12
        """
        if b == 0:
            return a
        return NumberTools.gcd(b, a % b)

    @classmethod
    def roots(cls, xs):
        """
        >>> NumberTools.roots([38, 12345])
        [2, 6]
        """
        out = []
        for x in xs:
            out.append(cls.digital_root(x))
        return out


class Sorter:
    @staticmethod
    def insertion(xs):
        """
        >>> Sorter.insertion([3, 1, 2])
        [1, 2, 3]
        """
        xs = list(xs)
        for i in range(1, len(xs)):
            j = i
            while j > 0 and xs[j - 1] > xs[j]:
                xs[j - 1], xs[j] = xs[j], xs[j - 1]
                j -= 1
        return xs

    @classmethod
    def merge_sort(cls, xs):
        """
        >>> Sorter.merge_sort([5, 2, 4, 1])
        [1, 2, 4, 5]
        """
        if len(xs) <= 1:
            return list(xs)
        mid = len(xs) // 2
        left = cls.merge_sort(xs[:mid])
        right = cls.merge_sort(xs[mid:])
        out = []
        i = j = 0
        while i < len(left) and j < len(right):
            if left[i] <= right[j]:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
        return out + left[i:] + right[j:]


CASES = [
    ("NumberTools.digital_root", [987654321987654321]),
    ("NumberTools.gcd", [1071, 462]),
    ("NumberTools.roots", [[38, 12345, 999999999, 7]]),
    ("Sorter.insertion", [[9, 4, 7, 1, 8, 2, 6, 3, 5, 0]]),
    ("Sorter.merge_sort", [[9, 4, 7, 1, 8, 2, 6, 3, 5, 0, 11, -3]]),
]
