"""A tokenizer and recursive-descent evaluator for arithmetic expressions."""

import re

TOKEN = r"\s*(?:(\d+\.?\d*)|(.))"


def tokenize(text):
    tokens = []
    for number, op in re.findall(TOKEN, text):
        if number:
            tokens.append(float(number) if "." in number else int(number))
        elif op.strip():
            tokens.append(op)
    return tokens


def parse_expr(tokens, pos):
    value, pos = parse_term(tokens, pos)
    while pos < len(tokens) and tokens[pos] in ("+", "-"):
        op = tokens[pos]
        rhs, pos = parse_term(tokens, pos + 1)
        value = value + rhs if op == "+" else value - rhs
    return value, pos


def parse_term(tokens, pos):
    value, pos = parse_factor(tokens, pos)
    while pos < len(tokens) and tokens[pos] in ("*", "/"):
        op = tokens[pos]
        rhs, pos = parse_factor(tokens, pos + 1)
        if op == "*":
            value = value * rhs
        else:
            value = value / rhs
    return value, pos


def parse_factor(tokens, pos):
    tok = tokens[pos]
    if tok == "(":
        value, pos = parse_expr(tokens, pos + 1)
        return value, pos + 1
    if tok == "-":
        value, pos = parse_factor(tokens, pos + 1)
        return -value, pos
    return tok, pos + 1


def evaluate(text):
    """
    >>> evaluate("2 * (3 + 4)")
    14
    """
    value, _ = parse_expr(tokenize(text), 0)
    return value


def evaluate_all(lines):
    results = []
    for line in lines:
        try:
            v = evaluate(line)
            results.append(v)
        except ZeroDivisionError:
            results.append("division by zero")
    return results


CASES = [
    ("evaluate", ["2 * (3 + 4) - 10 / 4"]),
    ("evaluate_all", [["1 + 2 * 3", "(1 + 2) * 3", "-(4 - 6) * 2.5", "7 / (3 - 3)"]]),
]
