"""Greedy word wrap and full justification."""


def wrap(text, width):
    lines = []
    line = []
    size = 0
    for word in text.split():
        if line and size + 1 + len(word) > width:
            lines.append(line)
            line, size = [word], len(word)
        else:
            size += len(word) + (1 if line else 0)
            line.append(word)
    if line:
        lines.append(line)
    return lines


def justify(text, width):
    out = []
    lines = wrap(text, width)
    for n, words in enumerate(lines):
        if n == len(lines) - 1 or len(words) == 1:
            out.append(" ".join(words).ljust(width))
            continue
        gaps = len(words) - 1
        spaces = width - sum(len(w) for w in words)
        row = ""
        for i, w in enumerate(words[:-1]):
            row += w + " " * (spaces // gaps + (1 if i < spaces % gaps else 0))
        out.append(row + words[-1])
    return out


CASES = [
    ("justify", ["This is an example of text justification done greedily by a job.", 16]),
    ("wrap", ["a bb ccc dddd eeeee", 7]),
]
