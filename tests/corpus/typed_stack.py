# ruff: noqa: UP006, UP035, UP045  (the corpus keeps the typing-module style people write)
"""A typed stack and a bracket matcher, annotated with typing."""

from typing import Dict, List, Optional

PAIRS: Dict[str, str] = {")": "(", "]": "[", "}": "{"}


class Stack:
    def __init__(self) -> None:
        self.items: List[str] = []

    def push(self, x: str) -> None:
        self.items.append(x)

    def pop(self) -> Optional[str]:
        return self.items.pop() if self.items else None


def balanced(text: str) -> bool:
    """
    >>> balanced("{[()]}")
    True
    """
    stack = Stack()
    for ch in text:
        if ch in "([{":
            stack.push(ch)
        elif ch in PAIRS:
            if stack.pop() != PAIRS[ch]:
                return False
    return not stack.items


CASES = [
    ("balanced", ["{[()()]}([])"]),
    ("balanced", ["{[(])}"]),
]
