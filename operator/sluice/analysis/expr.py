"""Conditions of analysis metrics: a small, safe expression language.

A condition (`successCondition` / `failureCondition`) is parsed with Python's `ast`
module and compiled, node by node, from a strict whitelist; nothing is ever handed to
`eval`. Anything not listed here is an `ExprError` that names the construct and, when
it can, the column.

Values are numbers (floats; NaN is a legitimate value), true/false, and vectors (lists:
the samples of an instant vector, or the points of a range query).

- Literals: numbers (`0.02`, `1e-3`, `5`), `true`/`false` (also `True`/`False`).
  No strings, lists, `None`.
- Names: only those in the environment given to `evaluate` (`result`, `baseline`, ...).
- Arithmetic `+ - * /` and unary `-`/`+`; division by zero gives NaN, never an error.
  No `**`, `//`, `%` or bit operators.
- Comparisons `< <= > >= == !=`, chained (`0 < result < 1`). IEEE semantics: `<`,
  `<=`, `>`, `>=` and `==` with a NaN are false, `!=` with a NaN is true.
  Ordering needs numbers; `==`/`!=` compare two numbers or two true/false values.
- `and`, `or`, `not` on true/false values; `and`/`or` short-circuit when the left side
  is a single value (`len(result) > 0 and result[0] < 1` never indexes an empty result).
- Indexing `result[0]`, `result[-1]` (counting from the end); out of range is an error.
- Broadcasting: an operation between a vector and a single value applies to each
  element; between two vectors of the same length it goes element by element. A vector
  of one element behaves like a single value, and a single value like a vector of one.
- Functions: `len(v)`, `all(v)`, `any(v)`, `isNaN(x)` (elementwise), `abs(x)`
  (elementwise), `min(v)`, `max(v)`, `sum(v)`, `avg(v)`. `min`/`max`/`avg` of an empty
  vector are NaN, and so are `min`/`max`/`sum`/`avg` of a vector holding a NaN.
- A condition must come to a single true/false: a vector of one true/false value counts
  as that value; a number is an error, and so is a vector of several values (wrap it in
  `all()` or `any()`).

Limits: expressions of at most 1000 characters nested at most 50 levels deep, vectors
of at most 100000 elements.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, TypeAlias

MAX_LENGTH = 1000
MAX_DEPTH = 50
MAX_VECTOR = 100_000

Scalar: TypeAlias = float | bool
Vector: TypeAlias = list[float | bool]
Value: TypeAlias = float | bool | list[float | bool]
EnvValue: TypeAlias = float | bool | Sequence[float] | Sequence[bool]
Env: TypeAlias = Mapping[str, Value]
Fn: TypeAlias = Callable[[Env], Value]
# What a node is known to give before any value is seen: numbers, true/false, or either.
Kind: TypeAlias = Literal["num", "bool", "any"]

TRUE_FALSE = {"true": True, "True": True, "false": False, "False": False}


class ExprError(ValueError):
    """A condition that does not parse, or cannot be evaluated on the values given."""

    def __init__(
        self, reason: str, text: str, column: int | None = None, line: int | None = None
    ) -> None:
        self.reason = reason
        self.text = text
        self.column = column
        self.line = line
        shown = text if len(text) <= MAX_LENGTH else text[:60] + "…"
        shown = "".join(c if c.isprintable() or c == "\n" else "\ufffd" for c in shown)
        where = ""
        if column is not None:
            where = f" (line {line}, column {column})" if "\n" in text else f" (column {column})"
        super().__init__(f"condition `{shown}`: {reason}{where}")


@dataclass(frozen=True)
class _Where:
    """A place in the text, for the errors a node can raise when it is evaluated."""

    text: str
    line: int | None = None
    column: int | None = None

    def error(self, reason: str) -> ExprError:
        return ExprError(reason, self.text, self.column, self.line)


# ---------------------------------------------------------------- values


def _describe(v: Value) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"the number {v:.6g}"
    if not v:
        return "an empty vector"
    what = "true/false value" if isinstance(v[0], bool) else "number"
    return f"a vector of {len(v)} {what}{'s' if len(v) > 1 else ''}"


def _kind(v: Value) -> Literal["num", "bool", "empty"]:
    """Vectors hold only numbers or only true/false values; an empty one fits either."""
    if isinstance(v, list):
        if not v:
            return "empty"
        v = v[0]
    return "bool" if isinstance(v, bool) else "num"


def _need(v: Value, want: Literal["num", "bool"], what: str, where: _Where) -> None:
    kind = _kind(v)
    if kind != "empty" and kind != want:
        wanted = "numbers" if want == "num" else "true/false values"
        raise where.error(f"{what} needs {wanted}, got {_describe(v)}")


def _map(v: Value, fn: Callable[[Scalar], Scalar]) -> Value:
    return [fn(x) for x in v] if isinstance(v, list) else fn(v)


def _zip(a: Value, b: Value, fn: Callable[[Scalar, Scalar], Scalar], where: _Where) -> Value:
    """Broadcast `fn` over two values (see the module docstring)."""
    if not isinstance(a, list):
        return [fn(a, y) for y in b] if isinstance(b, list) else fn(a, b)
    if not isinstance(b, list):
        return [fn(x, b) for x in a]
    if len(a) == len(b):
        return [fn(x, y) for x, y in zip(a, b, strict=True)]
    if len(a) == 1:
        x = a[0]
        return [fn(x, y) for y in b]
    if len(b) == 1:
        y = b[0]
        return [fn(x, y) for x in a]
    raise where.error(f"vectors of different lengths ({len(a)} and {len(b)})")


def _single(v: Value) -> Scalar | None:
    """The value itself if it is one value (a vector of one counts), else None."""
    if isinstance(v, list):
        return v[0] if len(v) == 1 else None
    return v


def _from_env(name: str, raw: object, where: _Where) -> Value:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float):
        return _to_float(raw, name, where)
    if isinstance(raw, list | tuple):
        if len(raw) > MAX_VECTOR:
            raise where.error(f"`{name}` has {len(raw)} values, more than {MAX_VECTOR}")
        if all(isinstance(x, bool) for x in raw):
            return list(raw)
        out: Vector = []
        for x in raw:
            if isinstance(x, bool) or not isinstance(x, int | float):
                raise where.error(
                    f"`{name}` must hold only numbers or only true/false values, "
                    f"found {type(x).__name__}"
                )
            out.append(_to_float(x, name, where))
        return out
    raise where.error(
        f"`{name}` is a {type(raw).__name__}: values must be numbers, true/false or lists"
    )


def _to_float(x: int | float, name: str, where: _Where) -> float:
    try:
        return float(x)
    except OverflowError:
        raise where.error(f"`{name}`: number too large") from None


# ---------------------------------------------------------------- operations


def _div(x: Scalar, y: Scalar) -> Scalar:
    return x / y if y != 0 else math.nan


_ARITHMETIC: dict[type[ast.operator], tuple[str, Callable[[Scalar, Scalar], Scalar]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", _div),
}
_UNSUPPORTED_BINARY: dict[type[ast.operator], tuple[str, str]] = {
    ast.Pow: ("**", ""),
    ast.FloorDiv: ("//", ""),
    ast.Mod: ("%", ""),
    ast.MatMult: ("@", ""),
    ast.LShift: ("<<", ""),
    ast.RShift: (">>", ""),
    ast.BitAnd: ("&", "; use `and`"),
    ast.BitOr: ("|", "; use `or`"),
    ast.BitXor: ("^", ""),
}
_COMPARISON: dict[type[ast.cmpop], tuple[str, Callable[[Scalar, Scalar], bool]]] = {
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
}
_UNSUPPORTED_COMPARISON: dict[type[ast.cmpop], str] = {
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}
_REJECTED: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access (`.`) is not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.IfExp: "`... if ... else ...` is not supported",
    ast.NamedExpr: "`:=` is not allowed",
    ast.List: "list literals are not supported",
    ast.Tuple: "tuples are not supported",
    ast.Set: "set literals are not supported",
    ast.Dict: "dict literals are not supported",
    ast.JoinedStr: "strings are not supported",
    ast.FormattedValue: "strings are not supported",
    ast.Starred: "`*` unpacking is not allowed",
    ast.Slice: "slices are not supported; index one element, e.g. result[0]",
    ast.Await: "`await` is not allowed",
    ast.Yield: "`yield` is not allowed",
    ast.YieldFrom: "`yield` is not allowed",
}


def _fn_len(v: Value, where: _Where) -> Value:
    return float(len(v)) if isinstance(v, list) else 1.0


def _fn_all(v: Value, where: _Where) -> Value:
    _need(v, "bool", "all()", where)
    return all(v) if isinstance(v, list) else v


def _fn_any(v: Value, where: _Where) -> Value:
    _need(v, "bool", "any()", where)
    return any(v) if isinstance(v, list) else v


def _fn_isnan(v: Value, where: _Where) -> Value:
    _need(v, "num", "isNaN()", where)
    return _map(v, math.isnan)


def _fn_abs(v: Value, where: _Where) -> Value:
    _need(v, "num", "abs()", where)
    return _map(v, abs)


def _reduce(
    name: str, reduce: Callable[[Vector], float], empty: float
) -> Callable[[Value, _Where], Value]:
    def fn(v: Value, where: _Where) -> Value:
        _need(v, "num", f"{name}()", where)
        if not isinstance(v, list):
            return v
        if not v:
            return empty
        if any(math.isnan(x) for x in v):
            return math.nan
        return float(reduce(v))

    return fn


# name -> (the kind of the argument it needs, the kind it gives, implementation)
_FUNCTIONS: dict[str, tuple[Kind, Kind, Callable[[Value, _Where], Value]]] = {
    "len": ("any", "num", _fn_len),
    "all": ("bool", "bool", _fn_all),
    "any": ("bool", "bool", _fn_any),
    "isNaN": ("num", "bool", _fn_isnan),
    "abs": ("num", "num", _fn_abs),
    "min": ("num", "num", _reduce("min", min, math.nan)),
    "max": ("num", "num", _reduce("max", max, math.nan)),
    "sum": ("num", "num", _reduce("sum", lambda v: sum(v, 0.0), 0.0)),
    "avg": ("num", "num", _reduce("avg", lambda v: sum(v, 0.0) / len(v), math.nan)),
}


def _truth(v: Value, where: _Where) -> bool:
    one = _single(v)
    if isinstance(one, bool):
        return one
    if isinstance(v, list) and len(v) != 1 and _kind(v) != "num":
        raise where.error(
            f"ambiguous: wrap it in all() or any() (the condition gives {len(v)} values)"
        )
    raise where.error(f"condition must be true/false, got {_describe(v if one is None else one)}")


# ---------------------------------------------------------------- compiler


class _Compiler:
    """Turns a parsed expression into nested closures, checking every node on the way."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.names: dict[str, _Where] = {}  # variable -> where it is first used

    def where(self, node: ast.AST) -> _Where:
        line: int = getattr(node, "lineno", 1)
        offset: int = getattr(node, "col_offset", 0)
        return self.at(line, offset)

    def at(self, line: int, byte_offset: int) -> _Where:
        """ast offsets count UTF-8 bytes; columns count characters, from 1."""
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        column = len(source.encode()[:byte_offset].decode(errors="ignore")) + 1
        return _Where(self.text, line, column)

    def where_op(self, left: ast.expr, right: ast.expr, symbol: str, node: ast.AST) -> _Where:
        """Where the operator between two operands is, if they are on one line."""
        if left.end_lineno == right.lineno and left.end_col_offset is not None:
            source = self.lines[right.lineno - 1].encode()
            found = source.find(symbol.encode(), left.end_col_offset, right.col_offset)
            if found >= 0:
                return self.at(right.lineno, found)
        return self.where(node)

    def error(self, node: ast.AST, reason: str) -> ExprError:
        return self.where(node).error(reason)

    def segment(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text, node) or ast.unparse(node)

    def build(self, node: ast.expr, depth: int) -> tuple[Fn, Kind]:
        if depth > MAX_DEPTH:
            raise self.error(node, f"nested too deeply (more than {MAX_DEPTH} levels)")
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.BinOp):
            return self.binop(node, depth)
        if isinstance(node, ast.UnaryOp):
            return self.unaryop(node, depth)
        if isinstance(node, ast.Compare):
            return self.compare(node, depth)
        if isinstance(node, ast.BoolOp):
            return self.boolop(node, depth)
        if isinstance(node, ast.Subscript):
            return self.subscript(node, depth)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        reason = _REJECTED.get(type(node), f"{type(node).__name__} is not allowed")
        raise self.error(node, reason)

    def constant(self, node: ast.Constant) -> tuple[Fn, Kind]:
        value = node.value
        if isinstance(value, bool):
            flag: bool = value
            return (lambda env: flag), "bool"
        if isinstance(value, int | float):
            try:
                number = float(value)
            except OverflowError:
                raise self.error(node, "number too large") from None
            return (lambda env: number), "num"
        if isinstance(value, str | bytes):
            raise self.error(node, "strings are not supported")
        if isinstance(value, complex):
            raise self.error(node, "complex numbers are not supported")
        raise self.error(node, f"`{self.segment(node)}` is not supported")

    def name(self, node: ast.Name) -> tuple[Fn, Kind]:
        name = node.id
        if name in TRUE_FALSE:
            flag = TRUE_FALSE[name]
            return (lambda env: flag), "bool"
        if name in _FUNCTIONS:
            raise self.error(node, f"`{name}` is a function: call it, e.g. {name}(result)")
        if name.startswith("_"):
            raise self.error(node, f"`{name}`: names starting with `_` are not allowed")
        self.names.setdefault(name, self.where(node))
        return (lambda env: env[name]), "any"

    def binop(self, node: ast.BinOp, depth: int) -> tuple[Fn, Kind]:
        op = type(node.op)
        if op not in _ARITHMETIC:
            symbol, hint = _UNSUPPORTED_BINARY.get(op, (type(node.op).__name__, ""))
            where = self.where_op(node.left, node.right, symbol, node)
            raise where.error(f"`{symbol}` is not supported{hint}")
        symbol, fn = _ARITHMETIC[op]
        left, lkind = self.build(node.left, depth + 1)
        right, rkind = self.build(node.right, depth + 1)
        where = self.where_op(node.left, node.right, symbol, node)
        what = f"`{symbol}`"
        for kind, side in ((lkind, node.left), (rkind, node.right)):
            if kind == "bool":
                raise self.error(side, f"{what} needs numbers, got true/false")

        def run(env: Env) -> Value:
            a, b = left(env), right(env)
            _need(a, "num", what, where)
            _need(b, "num", what, where)
            return _zip(a, b, fn, where)

        return run, "num"

    def unaryop(self, node: ast.UnaryOp, depth: int) -> tuple[Fn, Kind]:
        operand, kind = self.build(node.operand, depth + 1)
        where = self.where(node)
        if isinstance(node.op, ast.Not):
            if kind == "num":
                raise where.error("`not` needs true/false, got a number")

            def run_not(env: Env) -> Value:
                v = operand(env)
                _need(v, "bool", "`not`", where)
                return _map(v, operator.not_)

            return run_not, "bool"
        if isinstance(node.op, ast.USub | ast.UAdd):
            symbol = "-" if isinstance(node.op, ast.USub) else "+"
            if kind == "bool":
                raise where.error(f"unary `{symbol}` needs a number, got true/false")
            fn: Callable[[Scalar], Scalar] = (
                operator.neg if isinstance(node.op, ast.USub) else operator.pos
            )

            def run_sign(env: Env) -> Value:
                v = operand(env)
                _need(v, "num", f"unary `{symbol}`", where)
                return _map(v, fn)

            return run_sign, "num"
        raise where.error("`~` is not supported; use `not`")

    def compare(self, node: ast.Compare, depth: int) -> tuple[Fn, Kind]:
        operands = [node.left, *node.comparators]
        steps: list[tuple[str, Callable[[Scalar, Scalar], bool], _Where]] = []
        for i, op in enumerate(node.ops):
            if type(op) in _UNSUPPORTED_COMPARISON:
                symbol = _UNSUPPORTED_COMPARISON[type(op)]
                where = self.where_op(operands[i], operands[i + 1], symbol.split()[0], node)
                raise where.error(f"`{symbol}` is not supported")
            symbol, fn = _COMPARISON[type(op)]
            steps.append((symbol, fn, self.where_op(operands[i], operands[i + 1], symbol, node)))
        built = [self.build(o, depth + 1) for o in operands]
        for (symbol, _, where), (_, lkind), (_, rkind) in zip(
            steps, built, built[1:], strict=False
        ):
            if symbol in ("==", "!="):
                if {lkind, rkind} == {"num", "bool"}:
                    raise where.error(f"`{symbol}` compares a number with true/false")
            elif "bool" in (lkind, rkind):
                raise where.error(f"`{symbol}` needs numbers, got true/false")
        fns = [fn for fn, _ in built]

        def run(env: Env) -> Value:
            values = [f(env) for f in fns]
            result: Value | None = None
            for (symbol, fn, where), a, b in zip(steps, values, values[1:], strict=False):
                what = f"`{symbol}`"
                if symbol in ("==", "!="):
                    ka, kb = _kind(a), _kind(b)
                    if "empty" not in (ka, kb) and ka != kb:
                        raise where.error(f"{what} compares {_describe(a)} with {_describe(b)}")
                else:
                    _need(a, "num", what, where)
                    _need(b, "num", what, where)
                step = _zip(a, b, fn, where)
                result = step if result is None else _zip(result, step, operator.and_, where)
            assert result is not None
            return result

        return run, "bool"

    def boolop(self, node: ast.BoolOp, depth: int) -> tuple[Fn, Kind]:
        is_and = isinstance(node.op, ast.And)
        symbol = "and" if is_and else "or"
        what = f"`{symbol}`"
        built = [self.build(v, depth + 1) for v in node.values]
        for value, (_, kind) in zip(node.values, built, strict=True):
            if kind == "num":
                raise self.error(value, f"{what} needs true/false, got a number")
        fns = [fn for fn, _ in built]
        wheres = [self.where(v) for v in node.values]
        combine: Callable[[Scalar, Scalar], Scalar] = operator.and_ if is_and else operator.or_
        where_op = self.where(node)

        def run(env: Env) -> Value:
            acc = fns[0](env)
            _need(acc, "bool", what, wheres[0])
            for fn, where in zip(fns[1:], wheres[1:], strict=True):
                one = _single(acc)
                if one is not None and bool(one) is not is_and:
                    return acc  # false and ..., true or ...: the rest is not evaluated
                v = fn(env)
                _need(v, "bool", what, where)
                acc = _zip(acc, v, combine, where_op)
            return acc

        return run, "bool"

    def subscript(self, node: ast.Subscript, depth: int) -> tuple[Fn, Kind]:
        if isinstance(node.slice, ast.Slice | ast.Tuple):
            raise self.error(node.slice, _REJECTED[type(node.slice)])
        value, kind = self.build(node.value, depth + 1)
        index, ikind = self.build(node.slice, depth + 1)
        where = self.where(node)
        if ikind == "bool":
            raise self.error(node.slice, "an index must be a number, got true/false")
        about = self.segment(node.value)

        def run(env: Env) -> Value:
            v, i = value(env), index(env)
            one = _single(i)
            if isinstance(one, bool) or one is None:
                raise where.error(f"an index must be a number, got {_describe(i)}")
            if not (math.isfinite(one) and one == int(one)):
                raise where.error(f"an index must be a whole number, got {one:.6g}")
            items = v if isinstance(v, list) else [v]
            n = int(one)
            if not -len(items) <= n < len(items):
                count = f"{len(items)} value{'s' if len(items) != 1 else ''}"
                raise where.error(f"index {n} is out of range: `{about}` has {count}")
            return items[n]

        return run, kind

    def call(self, node: ast.Call, depth: int) -> tuple[Fn, Kind]:
        known = ", ".join(sorted(_FUNCTIONS, key=str.lower))
        if not isinstance(node.func, ast.Name):
            raise self.error(node, f"only the built-in functions can be called ({known})")
        name = node.func.id
        if name not in _FUNCTIONS:
            raise self.error(node, f"unknown function `{name}` (functions: {known})")
        if node.keywords:
            raise self.error(node, f"{name}() takes no keyword arguments")
        if len(node.args) != 1:
            raise self.error(node, f"{name}() takes exactly one argument")
        if isinstance(node.args[0], ast.Starred):
            raise self.error(node.args[0], _REJECTED[ast.Starred])
        needs, gives, impl = _FUNCTIONS[name]
        arg, kind = self.build(node.args[0], depth + 1)
        if needs != "any" and kind != "any" and kind != needs:
            wanted = "numbers" if needs == "num" else "true/false values"
            got = "numbers" if kind == "num" else "true/false"
            raise self.error(node, f"{name}() needs {wanted}, got {got}")
        where = self.where(node)
        return (lambda env: impl(arg(env), where)), gives


_HINTS = (
    (re.compile(r"&&"), "use `and` instead of `&&`"),
    (re.compile(r"\|\|"), "use `or` instead of `||`"),
    (re.compile(r"!(?!=)"), "use `not` instead of `!`"),
    (re.compile(r"(?<![<>=!])=(?!=)"), "use `==` to compare"),
)


def _syntax_error(text: str, exc: SyntaxError) -> ExprError:
    reason = exc.msg or "invalid syntax"
    hints = [hint for pattern, hint in _HINTS if pattern.search(text)]
    lines = text.split("\n")
    line = exc.lineno if exc.lineno and 0 < exc.lineno <= len(lines) else len(lines)
    column = exc.offset
    if not column or column < 1:  # the parser ran out of text
        line, column = len(lines), len(lines[-1]) + 1
        if reason == "invalid syntax":
            reason = "incomplete expression"
    if hints:
        reason += f" ({'; '.join(hints)})"
    return ExprError(reason, text, column, line)


@dataclass(frozen=True)
class _Compiled:
    text: str  # as parsed: the given text without surrounding whitespace
    fn: Fn
    kind: Kind
    names: dict[str, _Where]


@lru_cache(maxsize=512)
def _compile(given: str) -> _Compiled:
    text = given.strip()
    if len(given) > MAX_LENGTH:
        raise ExprError(f"too long ({len(given)} characters, at most {MAX_LENGTH})", text)
    if not text:
        raise ExprError("empty expression", text)
    try:
        with warnings.catch_warnings(action="ignore"):
            tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise _syntax_error(text, exc) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExprError(f"cannot parse: {exc or type(exc).__name__}", text) from None
    compiler = _Compiler(text)
    fn, kind = compiler.build(tree.body, 1)
    return _Compiled(text, fn, kind, compiler.names)


def _run(compiled: _Compiled, env: Mapping[str, EnvValue]) -> Value:
    missing = [n for n in compiled.names if n not in env]
    if missing:
        known = ", ".join(sorted(env)) or "none"
        listed = ", ".join(f"`{n}`" for n in missing)
        plural = "s" if len(missing) > 1 else ""
        where = compiled.names[missing[0]]
        raise where.error(f"unknown name{plural} {listed} (known: {known})")
    values = {n: _from_env(n, env[n], w) for n, w in compiled.names.items()}
    try:
        return compiled.fn(values)
    except ExprError:
        raise
    except (ArithmeticError, TypeError, ValueError, IndexError, RecursionError) as exc:
        # A bug here must not escape as anything but an ExprError.
        raise ExprError(f"cannot evaluate: {type(exc).__name__}: {exc}", compiled.text) from None


# ---------------------------------------------------------------- API


@dataclass(frozen=True)
class Condition:
    """A compiled condition: evaluate it as often as needed."""

    text: str
    names: frozenset[str]
    _compiled: _Compiled = field(repr=False, compare=False)

    def evaluate(self, env: Mapping[str, EnvValue]) -> bool:
        """True or false, or an ExprError (unknown name, wrong type, index out of range)."""
        value = _run(self._compiled, env)
        return _truth(value, _Where(self._compiled.text))


def compile_condition(text: str) -> Condition:
    """Parse and check `text` once; ExprError if it is not a valid condition."""
    compiled = _compile(text)
    if compiled.kind == "num":
        raise ExprError("condition must be true/false, not a number", compiled.text)
    return Condition(text, frozenset(compiled.names), compiled)


def evaluate_value(text: str, env: Mapping[str, EnvValue]) -> float | bool | list[float | bool]:
    """The value of any expression (a number, true/false or a vector), for tests and debugging."""
    return _run(_compile(text), env)
