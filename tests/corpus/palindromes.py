"""Palindromes: checks, longest palindromic substring, palindromic partitions."""


def is_palindrome(s):
    """
    >>> is_palindrome("A man, a plan, a canal: Panama")
    True
    """
    cleaned = [c.lower() for c in s if c.isalnum()]
    i, j = 0, len(cleaned) - 1
    while i < j:
        if cleaned[i] != cleaned[j]:
            return False
        i += 1
        j -= 1
    return True


def expand(s, left, right):
    while left >= 0 and right < len(s) and s[left] == s[right]:
        left -= 1
        right += 1
    return s[left + 1 : right]


def longest_palindrome(s):
    best = ""
    for i in range(len(s)):
        odd = expand(s, i, i)
        even = expand(s, i, i + 1)
        for cand in (odd, even):
            if len(cand) > len(best):
                best = cand
    return best


def partitions(s):
    if not s:
        return [[]]
    out = []
    for i in range(1, len(s) + 1):
        head = s[:i]
        if head == head[::-1]:
            for rest in partitions(s[i:]):
                out.append([head] + rest)
    return out


CASES = [
    ("is_palindrome", ["Was it a car or a cat I saw?"]),
    ("longest_palindrome", ["forgeeksskeegforabacdc"]),
    ("partitions", ["aabbc"]),
]
