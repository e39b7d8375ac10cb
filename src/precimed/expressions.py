"""A small, safe, bounded expression language for filters and derived columns in run configs.

Expressions are parsed with :mod:`ast` and evaluated over DataFrame columns by walking the tree:
arithmetic, comparisons, ``&`` ``|`` ``~`` (and ``and``/``or``/``not``), numbers, strings and a
whitelist of functions. Nothing is passed to ``eval``; attribute access, subscripts and unknown
names or functions are refused when the config is loaded.

The language is also bounded, so a config (a user's, or one inside an uploaded bundle) cannot hang
or exhaust the machine:

- an expression has at most ``MAX_LENGTH`` characters and ``MAX_DEPTH`` levels of nesting;
- integer literals have at most ``MAX_INT_DIGITS`` digits, and integer arithmetic on literals stops at
  that many digits;
- ``**`` is computed on floats (numpy), so it overflows to ``inf`` instead of building a huge integer;
  a literal exponent is at most ``MAX_EXPONENT`` in magnitude and an exponent may not itself contain
  ``**`` (no power towers such as ``10 ** 10 ** 10``);
- ``*`` never repeats text (``'a' * 10**9``), and lists appear only where a function takes one
  (the edges and labels of ``cut``, the values of ``isin``);
- every function takes a fixed number of arguments, checked when the config loads;
- an evaluation that runs longer than ``TIME_BUDGET_SECONDS`` stops between two steps.

Every problem is a :class:`~precimed.errors.ConfigError` (a missing column a
:class:`~precimed.errors.SchemaError`) of one line naming the place (derived column or filter), the
expression and the part of it at fault.
"""

from __future__ import annotations

import ast
import operator
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from precimed.errors import ConfigError, PrecimedError, SchemaError

MAX_LENGTH = 2_000
MAX_DEPTH = 100
MAX_INT_DIGITS = 18
MAX_EXPONENT = 100
TIME_BUDGET_SECONDS = 10.0
_INT_LIMIT = 10**MAX_INT_DIGITS
_PART_CHARS = 60


def _where(cond: Any, a: Any, b: Any) -> Any:
    return pd.Series(np.where(_as_bool(cond), a, b), index=getattr(cond, "index", None))


def _as_bool(x: Any) -> Any:
    if isinstance(x, pd.Series):
        return x.fillna(False).astype(bool)
    return x


def _cut(x: pd.Series, edges: list[float], labels: list[str]) -> pd.Series:
    out = pd.cut(x, bins=edges, labels=labels, right=True)
    return out.astype(object).where(out.notna(), np.nan)


def _isin(x: pd.Series, values: list[Any]) -> pd.Series:
    return x.isin(values)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "where": _where,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "log": np.log,
    "log1p": np.log1p,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "clip": lambda x, lo, hi: np.clip(x, lo, hi),
    "isna": pd.isna,
    "notna": pd.notna,
    "cut": _cut,
    "isin": _isin,
    "round": np.round,
}
# (fewest, most) arguments of each function, and the argument positions that must be a literal list.
ARITY: dict[str, tuple[int, int]] = {
    "where": (3, 3), "maximum": (2, 2), "minimum": (2, 2), "log": (1, 1), "log1p": (1, 1), "exp": (1, 1),
    "sqrt": (1, 1), "abs": (1, 1), "clip": (3, 3), "isna": (1, 1), "notna": (1, 1), "cut": (3, 3),
    "isin": (2, 2), "round": (1, 2),
}
LIST_ARGUMENTS: dict[str, tuple[int, ...]] = {"cut": (1, 2), "isin": (1,)}
_MAX_DECIMALS = 15


def _is_text(x: Any) -> bool:
    """True for strings, lists and non-numeric columns: the operands that `*` would repeat."""
    if isinstance(x, str | bytes | list | tuple):
        return True
    if isinstance(x, pd.Series | np.ndarray):
        return not pd.api.types.is_numeric_dtype(x.dtype)
    return False


def _as_float(x: Any) -> Any:
    """A number or numeric column as float64, so that `**` overflows to inf instead of growing an integer."""
    if _is_text(x):
        raise TypeError("** needs numbers, got text")
    if isinstance(x, pd.Series):
        return x.astype(float)
    return np.float64(x)


def _power(a: Any, b: Any) -> Any:
    return np.power(_as_float(a), _as_float(b))


def _multiply(a: Any, b: Any) -> Any:
    if _is_text(a) or _is_text(b):
        raise ConfigError("'*' needs numbers: repeating text is not allowed")
    return operator.mul(a, b)


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: _multiply,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
    ast.BitAnd: lambda a, b: _as_bool(a) & _as_bool(b),
    ast.BitOr: lambda a, b: _as_bool(a) | _as_bool(b),
}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: lambda a: ~_as_bool(a),
          ast.Not: lambda a: ~_as_bool(a)}
_ALLOWED = (f"use column names, numbers, strings, arithmetic, comparisons, & | ~ and functions "
            f"{sorted(FUNCTIONS)}")


def _literal_number(node: ast.AST) -> float | None:
    """The value of a number literal, possibly signed (``-3``, ``+0.5``); None for anything else."""
    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = -sign if isinstance(node.op, ast.USub) else sign
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return sign * float(node.value)  # integer literals are already checked to have at most MAX_INT_DIGITS
    return None


def _contains_power(node: ast.AST) -> bool:
    return any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow) for n in ast.walk(node))


class Expression:
    """A parsed, checked expression; `names` are the columns it reads."""

    def __init__(self, text: str, *, where: str | None = None) -> None:
        self.text = text
        self._where = where
        if not isinstance(text, str):
            raise ConfigError(self._message(f"expected text, got {type(text).__name__}"))
        if len(text) > MAX_LENGTH:
            raise ConfigError(f"{where + ': ' if where else ''}expression {text[:_PART_CHARS]!r}... has "
                              f"{len(text)} characters; at most {MAX_LENGTH} are allowed")
        try:
            with warnings.catch_warnings():  # "invalid decimal literal" and the like: the error below says it
                warnings.simplefilter("ignore", SyntaxWarning)
                self.tree = ast.parse(text, mode="eval").body
        except SyntaxError as exc:
            raise ConfigError(self._message(f"not valid: {exc.msg}")) from None
        except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, too deep for the parser
            raise ConfigError(self._message(f"not valid: {type(exc).__name__}")) from None
        self.names: set[str] = set()
        self._check(self.tree, 1)

    # ----- messages -----------------------------------------------------------------------------------------
    def _message(self, problem: str, node: ast.AST | None = None, where: str | None = None) -> str:
        """One line: the place, the expression, the part at fault and the problem."""
        where = where or self._where
        text = self.text if isinstance(self.text, str) else repr(self.text)
        shown = text if len(text) <= 2 * _PART_CHARS else text[:2 * _PART_CHARS] + "..."
        segment = self.part(node) if node is not None else text
        part = f" at {segment!r}" if segment != text else ""
        return f"{where + ': ' if where else ''}expression {shown!r}{part}: {problem}"

    def part(self, node: ast.AST) -> str:
        """The source text of `node`, cut to a readable length."""
        segment = ast.get_source_segment(self.text, node) or type(node).__name__
        segment = " ".join(segment.split())
        return segment if len(segment) <= _PART_CHARS else segment[:_PART_CHARS] + "..."

    # ----- the checks made when the config loads ------------------------------------------------------------
    def _check(self, node: ast.AST, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ConfigError(self._message(f"nested more than {MAX_DEPTH} levels deep", node))
        if isinstance(node, ast.Name):
            self.names.add(node.id)
        elif isinstance(node, ast.Constant):
            self._check_constant(node)
        elif isinstance(node, ast.List | ast.Tuple):
            raise ConfigError(self._message("a list is allowed only as the edges or labels of cut() "
                                            "or the values of isin()", node))
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            self._check(node.left, depth + 1)
            self._check(node.right, depth + 1)
            self._check_binary(node)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            self._check(node.operand, depth + 1)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value, depth + 1)
        elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            for child in (node.left, *node.comparators):
                self._check(child, depth + 1)
        elif isinstance(node, ast.Call):
            self._check_call(node, depth)
        else:
            raise ConfigError(self._message(f"{type(node).__name__} is not allowed ({_ALLOWED})", node))

    def _check_constant(self, node: ast.Constant) -> None:
        value = node.value
        if not isinstance(value, int | float | str | bool) and value is not None:
            raise ConfigError(self._message(f"constant of type {type(value).__name__} is not allowed", node))
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _INT_LIMIT:
            raise ConfigError(self._message(f"integer literal too large: at most {MAX_INT_DIGITS} digits", node))

    def _check_binary(self, node: ast.BinOp) -> None:
        """Refuse power towers, huge literal exponents and text repetition before anything runs."""
        if isinstance(node.op, ast.Pow):
            if _contains_power(node.right):
                raise ConfigError(self._message("a power tower is not allowed: an exponent may not contain **",
                                                node))
            exponent = _literal_number(node.right)
            if exponent is not None and not abs(exponent) <= MAX_EXPONENT:
                raise ConfigError(self._message(f"exponent {self.part(node.right)} is too large: at most "
                                                f"{MAX_EXPONENT} in magnitude", node))
        if isinstance(node.op, ast.Mult) and any(isinstance(side, ast.Constant) and isinstance(side.value, str)
                                                 for side in (node.left, node.right)):
            raise ConfigError(self._message("'*' needs numbers: repeating text is not allowed", node))

    def _check_call(self, node: ast.Call, depth: int) -> None:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise ConfigError(self._message(f"unknown function {self.part(node.func)!r}; allowed: "
                                            f"{sorted(FUNCTIONS)}", node))
        name = node.func.id
        if node.keywords:
            raise ConfigError(self._message(f"{name}() takes no keyword arguments", node))
        fewest, most = ARITY[name]
        if not fewest <= len(node.args) <= most:
            expected = str(fewest) if fewest == most else f"{fewest} to {most}"
            raise ConfigError(self._message(f"{name}() takes {expected} argument{'s' * (most > 1)}, "
                                            f"got {len(node.args)}", node))
        lists = LIST_ARGUMENTS.get(name, ())
        for position, arg in enumerate(node.args):
            if position in lists:
                self._check_list(name, position, arg)
            else:
                self._check(arg, depth + 1)
        if name == "cut":
            self._check_cut(node)
        if name == "round" and len(node.args) == 2:
            decimals = _literal_number(node.args[1])
            if decimals is None or decimals != int(decimals) or abs(decimals) > _MAX_DECIMALS:
                raise ConfigError(self._message(f"round()'s decimals must be a whole number from "
                                                f"-{_MAX_DECIMALS} to {_MAX_DECIMALS}", node.args[1]))

    def _check_list(self, name: str, position: int, node: ast.AST) -> None:
        if not isinstance(node, ast.List | ast.Tuple):
            raise ConfigError(self._message(f"argument {position + 1} of {name}() must be a list such as "
                                            "[0, 20, 50]", node))
        for elt in node.elts:
            if not isinstance(elt, ast.Constant):
                raise ConfigError(self._message(f"lists may hold only constants; {name}() got "
                                                f"{self.part(elt)!r}", node))
            self._check_constant(elt)

    def _check_cut(self, node: ast.Call) -> None:
        edges, labels = node.args[1].elts, node.args[2].elts  # type: ignore[attr-defined]
        values = [e.value for e in edges]
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values) or len(values) < 2 \
                or any(not a < b for a, b in zip(values, values[1:], strict=False)):
            raise ConfigError(self._message("cut() needs at least two increasing numeric edges", node.args[1]))
        if len(labels) != len(edges) - 1:
            raise ConfigError(self._message(f"cut() with {len(edges)} edges needs {len(edges) - 1} labels, "
                                            f"got {len(labels)}", node.args[2]))

    # ----- evaluation ---------------------------------------------------------------------------------------
    def evaluate(self, frame: pd.DataFrame, *, where: str, budget: float | None = None) -> Any:
        """Evaluate over the columns of `frame` within `budget` seconds (default TIME_BUDGET_SECONDS).

        A missing column raises SchemaError naming it; a step that fails (text minus a number, division of
        two integer literals by zero, a function given the wrong kind of value) or an evaluation over its
        time budget raises ConfigError naming `where`, the expression and the part.
        """
        missing = sorted(n for n in self.names if n not in frame.columns)
        if missing:
            raise SchemaError(
                f"{where}: expression {self.text!r} uses column(s) {missing} that the data lacks",
                column=missing[0],
            )
        budget = TIME_BUDGET_SECONDS if budget is None else budget
        run = _Run(self, frame, where, budget)
        with np.errstate(all="ignore"):
            return run.value(self.tree)


class _Run:
    """One evaluation of an expression over a frame, with its place (for messages) and its deadline."""

    def __init__(self, expr: Expression, frame: pd.DataFrame, where: str, budget: float) -> None:
        self.expr, self.frame, self.where, self.budget = expr, frame, where, budget
        self.deadline = time.monotonic() + budget

    def value(self, node: ast.AST) -> Any:
        """Evaluate `node`, checking the deadline before each step."""
        if time.monotonic() > self.deadline:
            raise ConfigError(self.expr._message(f"evaluation stopped: over its time budget of {self.budget:g} s",
                                                 node, self.where))
        if isinstance(node, ast.Name):
            return self.frame[node.id]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            return [elt.value for elt in node.elts]  # type: ignore[attr-defined]
        if isinstance(node, ast.BinOp):
            left, right = self.value(node.left), self.value(node.right)
            return self.apply(node, _BINARY[type(node.op)], left, right)
        if isinstance(node, ast.UnaryOp):
            return self.apply(node, _UNARY[type(node.op)], self.value(node.operand))
        if isinstance(node, ast.BoolOp):
            return self.apply(node, _combine, isinstance(node.op, ast.And), *(self.value(v) for v in node.values))
        if isinstance(node, ast.Compare):
            return self._compare(node)
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return self.apply(node, FUNCTIONS[node.func.id], *(self.value(a) for a in node.args))

    def _compare(self, node: ast.Compare) -> Any:
        left = self.value(node.left)
        result = None
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = self.value(comp)
            part = self.apply(node, _COMPARE[type(op)], left, right)
            result = part if result is None else self.apply(node, _combine, True, result, part)
            left = right
        return result

    def apply(self, node: ast.AST, function: Callable[..., Any], *args: Any) -> Any:
        """Run one step; any failure becomes a ConfigError naming the part, and integers stay bounded."""
        try:
            out = function(*args)
        except PrecimedError as exc:
            raise ConfigError(self.expr._message(str(exc), node, self.where)) from None
        except Exception as exc:  # a user's expression over a user's data: every failure is the user's to fix
            raise ConfigError(self.expr._message(_reason(exc), node, self.where)) from None
        if isinstance(out, int) and not isinstance(out, bool) and abs(out) >= _INT_LIMIT:
            raise ConfigError(self.expr._message(f"integer result too large: at most {MAX_INT_DIGITS} digits",
                                                 node, self.where))
        return out


def _combine(conjunction: bool, *values: Any) -> Any:
    """``and``/``&`` (conjunction) or ``or``/``|`` of several values, missing counting as false."""
    out = _as_bool(values[0])
    for v in values[1:]:
        out = (out & _as_bool(v)) if conjunction else (out | _as_bool(v))
    return out


def _reason(exc: Exception) -> str:
    """Why a step failed, without echoing data values: the message only for type and arithmetic errors."""
    if isinstance(exc, TypeError | ArithmeticError):
        first = (str(exc).splitlines() or [""])[0][:120]
        return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return f"{type(exc).__name__} (check the kinds of the values this part combines)"


def parse(text: str, *, where: str | None = None) -> Expression:
    """Parse and check an expression; raise ConfigError (naming `where`, if given) if it is not allowed."""
    return Expression(text, where=where)
