"""Regular expressions: tokenising a log, extracting fields, substitution."""

import re

LINE = re.compile(r"(?P<date>\d{4}-\d\d-\d\d) (?P<level>[A-Z]+) (?P<msg>.*)")


def parse_log(lines):
    counts = {}
    messages = []
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        level = m.group("level")
        counts[level] = counts.get(level, 0) + 1
        if level == "ERROR":
            messages.append(m.group("msg"))
    return counts, messages


def snake_case(names):
    out = []
    for name in names:
        s = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
        out.append(s)
    return out


def emails(text):
    return re.findall(r"[\w.]+@[\w.]+\.\w+", text)


CASES = [
    (
        "parse_log",
        [
            [
                "2024-01-01 INFO start",
                "2024-01-01 ERROR disk full",
                "junk",
                "2024-01-02 WARN hot",
                "2024-01-02 ERROR fan",
            ]
        ],
    ),
    ("snake_case", [["CamelCase", "HTTPServer", "simple", "getX"]]),
    ("emails", ["write to ann@example.org or bob.smith@mail.example.com today"]),
]
