"""Integer formulas of a point's numbers, for a [command]'s derived placeholders.

    [command.derived]
    x = "isqrt(ranks) * size"
    cells = "x * x"

A formula is parsed with ``ast`` and only whole-number arithmetic is allowed: numbers,
names of the point's values and earlier derived ones, ``+ - * // % **``, unary minus and
the functions ``min``, ``max``, ``isqrt`` and ``iroot(value, n)`` (the whole n-th root).
Anything else (attributes, calls of other names, ``/``, strings) is refused when the
study is read; nothing is ever passed to ``eval``.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping

from hpc.errors import UserError

_BINARY: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1 << 62  # a placeholder is a command-line number, not a bignum


def iroot(value: int, n: int) -> int:
    """The largest r with r**n <= value."""
    if value < 0 or n < 1:
        raise ValueError("iroot needs value >= 0 and n >= 1")
    r = int(round(value ** (1.0 / n)))
    while r ** n > value:
        r -= 1
    while (r + 1) ** n <= value:
        r += 1
    return r


# Nodes allowed as they are: the operators above and the structure around them.
_STRUCTURE = {ast.Expression, ast.Load, ast.BinOp, ast.UnaryOp, ast.USub, ast.UAdd, *_BINARY}
_FUNCTIONS: dict[str, Callable[..., int]] = {"min": min, "max": max, "isqrt": math.isqrt,
                                             "iroot": iroot}


def check_formula(text: str, names: set[str], where: str) -> ast.Expression:
    """Parse ``text``; refuse anything but whole-number arithmetic on ``names``."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise UserError(f"{where}: {text!r} is not a formula: {exc.msg}") from None
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if type(node) in _STRUCTURE:
            continue
        if isinstance(node, ast.Constant) and type(node.value) is int:
            continue
        if isinstance(node, ast.Name):
            if node.id not in names and not (id(node) in called and node.id in _FUNCTIONS):
                raise UserError(f"{where}: {text!r} uses {node.id!r}; it may use "
                                f"{', '.join(sorted(names))} and "
                                f"{', '.join(_FUNCTIONS)}()")
            continue
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in _FUNCTIONS and not node.keywords):
            continue
        raise UserError(f"{where}: {text!r}: only whole numbers, the names "
                        f"{', '.join(sorted(names))}, + - * // % ** and "
                        f"{', '.join(_FUNCTIONS)}() are allowed (no {type(node).__name__})")
    return tree


def evaluate(tree: ast.Expression, values: Mapping[str, int], where: str) -> int:
    """The formula's value for one point; a clear error for 1 // 0 and the like."""

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.UnaryOp):
            inner = value(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and not 0 <= right <= MAX_EXPONENT:
                raise ValueError(f"exponent {right} is outside 0..{MAX_EXPONENT}")
            return _BINARY[type(node.op)](left, right)
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return _FUNCTIONS[node.func.id](*(value(a) for a in node.args))

    try:
        result = value(tree)
    except (ZeroDivisionError, ValueError, TypeError) as exc:
        raise UserError(f"{where}: {exc} (with {dict(values)})") from None
    if abs(result) > MAX_MAGNITUDE:
        raise UserError(f"{where}: the value {result} is too large")
    return result
