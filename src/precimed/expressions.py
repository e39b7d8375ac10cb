"""A small, safe expression language for filters and derived columns in run configs.

Expressions are parsed with :mod:`ast` and evaluated over DataFrame columns by walking the tree:
arithmetic, comparisons, ``&`` ``|`` ``~`` (and ``and``/``or``/``not``), numbers, strings, lists and a
whitelist of functions. Nothing is passed to ``eval``; attribute access, subscripts and unknown
names or functions are refused when the config is loaded.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from precimed.errors import ConfigError, SchemaError


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

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
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


class Expression:
    """A parsed expression; `names` are the columns it reads."""

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            self.tree = ast.parse(text, mode="eval").body
        except SyntaxError as exc:
            raise ConfigError(f"expression {text!r} is not valid: {exc.msg}") from None
        self.names: set[str] = set()
        self._check(self.tree)

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            self.names.add(node.id)
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, int | float | str | bool) and node.value is not None:
                raise ConfigError(f"expression {self.text!r}: constant {node.value!r} is not allowed")
        elif isinstance(node, ast.List | ast.Tuple):
            for elt in node.elts:
                if not isinstance(elt, ast.Constant):
                    raise ConfigError(f"expression {self.text!r}: lists may hold only constants")
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            self._check(node.operand)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value)
        elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            self._check(node.left)
            for comp in node.comparators:
                self._check(comp)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = getattr(node.func, "id", ast.unparse(node.func))
                raise ConfigError(
                    f"expression {self.text!r}: unknown function {name!r}; allowed: {sorted(FUNCTIONS)}"
                )
            if node.keywords:
                raise ConfigError(f"expression {self.text!r}: keyword arguments are not allowed")
            for arg in node.args:
                self._check(arg)
        else:
            raise ConfigError(
                f"expression {self.text!r}: {type(node).__name__} is not allowed "
                "(use column names, numbers, strings, arithmetic, comparisons, & | ~ and functions "
                f"{sorted(FUNCTIONS)})"
            )

    def evaluate(self, frame: pd.DataFrame, *, where: str) -> Any:
        """Evaluate over the columns of `frame`; missing columns raise SchemaError naming them."""
        missing = sorted(n for n in self.names if n not in frame.columns)
        if missing:
            raise SchemaError(
                f"{where}: expression {self.text!r} uses column(s) {missing} that the data lacks",
                column=missing[0],
            )
        return self._eval(self.tree, frame)

    def _eval(self, node: ast.AST, frame: pd.DataFrame) -> Any:
        if isinstance(node, ast.Name):
            return frame[node.id]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            return [elt.value for elt in node.elts]  # type: ignore[attr-defined]
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](self._eval(node.left, frame), self._eval(node.right, frame))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self._eval(node.operand, frame))
        if isinstance(node, ast.BoolOp):
            values = [_as_bool(self._eval(v, frame)) for v in node.values]
            out = values[0]
            for v in values[1:]:
                out = (out & v) if isinstance(node.op, ast.And) else (out | v)
            return out
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, frame)
            result = None
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = self._eval(comp, frame)
                part = _COMPARE[type(op)](left, right)
                result = part if result is None else (_as_bool(result) & _as_bool(part))
                left = right
            return result
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return FUNCTIONS[node.func.id](*(self._eval(a, frame) for a in node.args))


def parse(text: str) -> Expression:
    """Parse and check an expression; raise ConfigError if it is not allowed."""
    return Expression(text)
