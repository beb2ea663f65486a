"""Independent oracle for the Countdown verifier (reference/tasks.hpp): Python's
own parser (ast) and exact rationals (fractions.Fraction) judge each answer.

Run as `/usr/bin/python3 countdown_oracle.py IN.txt OUT.txt`. Each line of IN.txt
is `HEX<TAB>USE<TAB>TARGET<TAB>N1,N2,...`: the answer text's bytes in hex, the
rule (exactly_once or at_most_once), the target and the given numbers. Each line
of OUT.txt is `VALID NUM DEN USES_OK CORRECT` (integers; NUM DEN the value in
lowest terms, 0 1 when invalid). OUT.txt is written whole or not at all.

The rules written here rather than taken from Python: only the bytes
"0123456789+-*/() " after trimming " \\t\\n\\r" at both ends; no literal with a
leading zero (Python itself accepts "00"); at most 1024 bytes before trimming and
64 nested parentheses; every literal and every operation's result within int64
(|num| and den at most 2^63 - 1). Everything else — the grammar (binary + - * /
only: no unary minus, no **, no //), precedence, associativity and arithmetic —
is Python's.
"""
import ast
import operator
import os
import re
import sys
from fractions import Fraction

LIMIT = 2**63 - 1
MAX_BYTES = 1024
MAX_DEPTH = 64
ALLOWED = set(b"0123456789+-*/() ")
OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


class Invalid(Exception):
    pass


def check(value):
    if abs(value.numerator) > LIMIT or value.denominator > LIMIT:
        raise Invalid("overflow")
    return value


def evaluate(raw):
    """(value, literals) of the answer bytes, or None when invalid."""
    if len(raw) > MAX_BYTES:
        return None
    s = raw.strip(b" \t\n\r")
    if any(c not in ALLOWED for c in s):
        return None
    depth = 0
    for c in s:
        depth += (c == ord("(")) - (c == ord(")"))
        if depth > MAX_DEPTH:
            return None
    text = s.decode("ascii")
    if re.search(r"(?<![0-9])0[0-9]", text):
        return None
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    literals = []

    def ev(node):
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            left, right = ev(node.left), ev(node.right)
            try:
                return check(OPS[type(node.op)](left, right))
            except ZeroDivisionError:
                raise Invalid("division by zero")
        if isinstance(node, ast.Constant) and type(node.value) is int:
            literals.append(node.value)
            return check(Fraction(node.value))
        raise Invalid(type(node).__name__)

    try:
        return ev(tree.body), literals
    except Invalid:
        return None


def verdict(line):
    hexa, use, target, numbers = line.rstrip("\n").split("\t")
    given = sorted(int(n) for n in numbers.split(",") if n)
    result = evaluate(bytes.fromhex(hexa))
    if result is None:
        return "0 0 1 0 0"
    value, literals = result
    used = sorted(literals)
    if use == "exactly_once":
        uses_ok = used == given
    else:
        remaining = list(given)
        uses_ok = True
        for n in used:
            if n in remaining:
                remaining.remove(n)
            else:
                uses_ok = False
    correct = uses_ok and value == Fraction(int(target))
    return f"1 {value.numerator} {value.denominator} {int(uses_ok)} {int(correct)}"


def main():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} IN.txt OUT.txt")
    sys.setrecursionlimit(20000)
    in_path, out_path = sys.argv[1:]
    with open(in_path) as fin:
        answers = [verdict(line) for line in fin if line.strip()]
    partial = out_path + ".partial"
    with open(partial, "w") as fout:
        fout.write("\n".join(answers) + "\n")
    os.replace(partial, out_path)


if __name__ == "__main__":
    main()
