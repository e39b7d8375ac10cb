"""Finding 12 (expressions): property-based fuzzing of the expression parser and evaluator with hypothesis.

Attack: random syntax trees (every operator Python has, any function name, constants of any size, lists
anywhere, attribute access) and random strings (raw text, and token soups of the language's own pieces: power
towers, huge literals, repetition, lambdas, NUL bytes) parsed as a `derive` expression and, when they parse,
evaluated over a small frame. The properties: the only exceptions are ConfigError (and SchemaError for a
column the data lacks), each message is one line, and no input takes longer than the evaluation time budget.
Bounded (300 examples per property, derandomized) so it runs in `make test`; the outcome counts are printed
(`pytest -s`).
"""

from __future__ import annotations

import ast
import time
from collections import Counter

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from precimed import expressions
from precimed.errors import ConfigError, SchemaError

EXAMPLES = 300
FRAME = pd.DataFrame({"a": [1.5, np.nan, -2.0, 0.0, 1e300], "b": [1, 2, 3, 0, -5],
                      "s": ["x", "yy", None, "z", ""], "flag": [True, False, True, False, True]})
NAMES = ["a", "b", "s", "flag", "no_such_column", "__builtins__"]
FUNCTION_NAMES = [*expressions.FUNCTIONS, "eval", "open", "__import__", "getattr", "pow"]
BINARY = [ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.BitAnd, ast.BitOr, ast.BitXor,
          ast.LShift, ast.MatMult]
UNARY = [ast.USub, ast.UAdd, ast.Invert, ast.Not]
COMPARE = [ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.Is]
TOKENS = ["10", "**", "9" * 25, "1e308", "1j", "0", "-", "+", "*", "/", "//", "%", "~", "&", "|", "(", ")", "[",
          "]", ",", "'x'", "a", "b", "s", "where", "cut", "isin", "round", "log", "maximum", ".", "__class__",
          "lambda", ":", "==", "<", "and", "not", "if", "else", "@", "<<", "\x00", "\n", " ", "'", "\\"]
OUTCOMES: Counter[str] = Counter()

constants = st.one_of(st.integers(-10**25, 10**25), st.floats(), st.text(max_size=6), st.booleans(), st.none())
leaves = st.one_of(st.sampled_from(NAMES).map(lambda n: ast.Name(id=n, ctx=ast.Load())),
                   constants.map(ast.Constant),
                   st.lists(constants.map(ast.Constant), max_size=4).map(lambda e: ast.List(elts=e, ctx=ast.Load())))


def _extend(children: st.SearchStrategy[ast.expr]) -> st.SearchStrategy[ast.expr]:
    """One level more: any operator, comparison, boolean, call (known or not), attribute or subscript."""
    return st.one_of(
        st.builds(lambda left, op, right: ast.BinOp(left, op(), right), children, st.sampled_from(BINARY), children),
        st.builds(lambda op, x: ast.UnaryOp(op(), x), st.sampled_from(UNARY), children),
        st.builds(lambda left, pairs: ast.Compare(left, [op() for op, _ in pairs], [c for _, c in pairs]),
                  children, st.lists(st.tuples(st.sampled_from(COMPARE), children), min_size=1, max_size=3)),
        st.builds(lambda op, values: ast.BoolOp(op(), values), st.sampled_from([ast.And, ast.Or]),
                  st.lists(children, min_size=2, max_size=3)),
        st.builds(lambda name, args: ast.Call(ast.Name(id=name, ctx=ast.Load()), args, []),
                  st.sampled_from(FUNCTION_NAMES), st.lists(children, max_size=4)),
        st.builds(lambda x: ast.Attribute(x, "__class__", ast.Load()), children),
        st.builds(lambda x, i: ast.Subscript(x, i, ast.Load()), children, children),
    )


def _call(name: str, args: list[ast.expr], draw_list: list[ast.expr]) -> ast.Call:
    """A call of a known function with its own number of arguments, lists where it takes lists."""
    fewest, _ = expressions.ARITY[name]
    args = (args * fewest)[:fewest] if args else [ast.Name(id="a", ctx=ast.Load())] * fewest
    for position in expressions.LIST_ARGUMENTS.get(name, ()):
        args[position] = ast.List(elts=draw_list, ctx=ast.Load())
    return ast.Call(ast.Name(id=name, ctx=ast.Load()), args, [])


def _extend_in_language(children: st.SearchStrategy[ast.expr]) -> st.SearchStrategy[ast.expr]:
    """One level more, staying inside the language: its operators and its functions with the right arity."""
    allowed = [op for op in BINARY if op in (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow,
                                             ast.BitAnd, ast.BitOr)]
    return st.one_of(
        st.builds(lambda left, op, right: ast.BinOp(left, op(), right), children, st.sampled_from(allowed), children),
        st.builds(lambda op, x: ast.UnaryOp(op(), x), st.sampled_from(UNARY), children),
        st.builds(lambda left, op, right: ast.Compare(left, [op()], [right]), children,
                  st.sampled_from(COMPARE[:6]), children),
        st.builds(_call, st.sampled_from(sorted(expressions.FUNCTIONS)), st.lists(children, max_size=3),
                  st.lists(constants.map(ast.Constant), max_size=4)),
    )


def _source(node: ast.expr) -> str:
    return ast.unparse(ast.fix_missing_locations(node))


trees = st.one_of(st.recursive(leaves, _extend, max_leaves=25).map(_source),
                  st.recursive(leaves.filter(lambda n: not isinstance(n, ast.List)), _extend_in_language,
                               max_leaves=25).map(_source))
texts = st.one_of(st.text(max_size=200), st.lists(st.sampled_from(TOKENS), max_size=60).map("".join))


def _try(text: str) -> None:
    """Parse and evaluate `text`; only the project's errors may escape, in one line, within the time budget."""
    started = time.monotonic()
    try:
        expr = expressions.parse(text, where="derived column 'z'")
    except ConfigError as exc:
        OUTCOMES["refused when parsed"] += 1
        assert "\n" not in str(exc) and "derived column 'z'" in str(exc)
        return
    try:
        expr.evaluate(FRAME, where="fuzz, derived column 'z'")
        OUTCOMES["evaluated"] += 1
    except SchemaError as exc:
        OUTCOMES["missing column"] += 1
        assert "that the data lacks" in str(exc) and "\n" not in str(exc)
    except ConfigError as exc:
        OUTCOMES["refused when evaluated"] += 1
        assert "\n" not in str(exc) and "fuzz, derived column 'z'" in str(exc)
    finally:
        assert time.monotonic() - started < expressions.TIME_BUDGET_SECONDS, text


SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def test_random_syntax_trees_raise_only_config_errors_within_the_budget():
    OUTCOMES.clear()

    @given(text=trees)
    @SETTINGS
    def run(text: str) -> None:
        _try(text)

    run()
    print(f"\nexpression fuzz (trees): {sum(OUTCOMES.values())} inputs, {dict(OUTCOMES)}")
    assert OUTCOMES["evaluated"] and OUTCOMES["refused when parsed"] and OUTCOMES["refused when evaluated"]


def test_random_strings_raise_only_config_errors_within_the_budget():
    OUTCOMES.clear()

    @given(text=texts)
    @SETTINGS
    def run(text: str) -> None:
        _try(text)

    run()
    print(f"\nexpression fuzz (strings): {sum(OUTCOMES.values())} inputs, {dict(OUTCOMES)}")
    assert OUTCOMES["refused when parsed"]
