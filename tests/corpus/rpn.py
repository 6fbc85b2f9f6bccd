"""Reverse Polish notation with a module-level table of operator functions."""

import operator

OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def rpn(expression):
    """
    >>> rpn("3 4 + 2 *")
    14
    """
    stack = []
    for token in expression.split():
        if token in OPS:
            b = stack.pop()
            a = stack.pop()
            stack.append(OPS[token](a, b))
        else:
            stack.append(int(token))
    return stack.pop()


CASES = [
    ("rpn", ["5 1 2 + 4 * + 3 -"]),
]
