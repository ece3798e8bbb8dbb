"""The condition language of analysis metrics: semantics, errors, hostile input, limits."""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.analysis.expr import (
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_VECTOR,
    Condition,
    ExprError,
    compile_condition,
    evaluate_value,
)

NAN = math.nan


def holds(text: str, **env: Any) -> bool:
    return compile_condition(text).evaluate(env)


def value(text: str, **env: Any) -> Any:
    return evaluate_value(text, env)


def error(text: str, **env: Any) -> str:
    """The message of the ExprError that compiling and evaluating `text` raises."""
    with pytest.raises(ExprError) as info:
        compile_condition(text).evaluate(env)
    return str(info.value)


def same(a: Any, b: Any) -> bool:
    """Equal as IEEE values: NaN matches NaN, and 0.0 does not match -0.0."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return False


# ---------------------------------------------------------------- the documented examples


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("result < 0.02", {"result": 0.01}, True),
        ("result < 0.02", {"result": [0.03]}, False),
        ("result < 0.02", {"result": NAN}, False),
        ("result[0] <= baseline[0] * 1.5 + 0.005", {"result": 0.02, "baseline": 0.01}, True),
        ("result[0] <= baseline[0] * 1.5 + 0.005", {"result": [0.021], "baseline": [0.01]}, False),
        ("all(result < 0.5)", {"result": [0.1, 0.2, 0.49]}, True),
        ("all(result < 0.5)", {"result": [0.1, 0.5]}, False),
        ("all(result < 0.5)", {"result": []}, True),
        ("len(result) == 0 or isNaN(result)", {"result": []}, True),
        ("len(result) == 0 or isNaN(result)", {"result": [NAN]}, True),
        ("len(result) == 0 or isNaN(result)", {"result": 0.3}, False),
    ],
)
def test_examples(text: str, env: dict[str, Any], expected: bool) -> None:
    assert compile_condition(text).evaluate(env) is expected


def test_condition_object() -> None:
    cond = compile_condition("result[0] <= baseline[0] * 1.5 + 0.005 and true")
    assert isinstance(cond, Condition)
    assert cond.text == "result[0] <= baseline[0] * 1.5 + 0.005 and true"
    assert cond.names == {"result", "baseline"}
    assert compile_condition("all(result < 0.5)").names == {"result"}
    assert compile_condition("1 < 2").names == set()
    # compiled once, evaluated often, with different values
    assert cond.evaluate({"result": 0.01, "baseline": 0.01}) is True
    assert cond.evaluate({"result": 0.1, "baseline": 0.01}) is False


def test_the_built_in_triggers_conditions_compile() -> None:
    for text in ("result <= 0.01", "result <= 1e-05", "result <= 0.25", "result <= 0"):
        assert compile_condition(text).evaluate({"result": 0.0}) is True


# ---------------------------------------------------------------- literals and names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1.0),
        ("2.5", 2.5),
        ("1e-3", 0.001),
        ("0x10", 16.0),
        ("1_000", 1000.0),
        ("1e999", math.inf),
        ("true", True),
        ("True", True),
        ("false", False),
        ("False", False),
    ],
)
def test_literals(text: str, expected: float | bool) -> None:
    assert same(value(text), expected)


def test_numbers_are_floats() -> None:
    assert type(value("3")) is float
    assert type(value("len(x)", x=[1, 2])) is float
    assert value("x", x=[1, 2]) == [1.0, 2.0]
    assert all(type(v) is float for v in value("x", x=[1, 2]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("result == 'a'", "strings are not supported"),
        ('result == "a"', "strings are not supported"),
        ("result == b'a'", "strings are not supported"),
        ("result == f'{result}'", "strings are not supported"),
        ("result == None", "`None` is not supported"),
        ("result == 1j", "complex numbers are not supported"),
        ("result == ...", "`...` is not supported"),
        ("result == [1, 2]", "list literals are not supported"),
        ("result == (1, 2)", "tuples are not supported"),
        ("result == {1}", "set literals are not supported"),
        ("result == {1: 2}", "dict literals are not supported"),
    ],
)
def test_other_literals_are_rejected(text: str, message: str) -> None:
    with pytest.raises(ExprError, match=message):
        compile_condition(text)


def test_unknown_name_is_named_with_the_known_ones() -> None:
    msg = error("latency < 1", result=1.0, baseline=2.0)
    assert "unknown name `latency`" in msg
    assert "known: baseline, result" in msg
    msg = error("a < b", result=1.0)
    assert "unknown names `a`, `b`" in msg
    assert "unknown name `x` (known: none)" in error("x < 1")


def test_extra_names_from_the_caller() -> None:
    assert holds("result < limit", result=1.0, limit=2.0) is True
    assert compile_condition("result < limit").names == {"result", "limit"}


def test_true_and_false_are_literals_not_names() -> None:
    assert compile_condition("true and not false").names == set()
    assert holds("true", true=False) is True


@pytest.mark.parametrize("text", ["_x < 1", "__builtins__ < 1", "__class__ < 1"])
def test_underscore_names_are_rejected(text: str) -> None:
    with pytest.raises(ExprError, match="names starting with `_` are not allowed"):
        compile_condition(text)


def test_a_function_name_is_not_a_value() -> None:
    with pytest.raises(ExprError, match="`len` is a function"):
        compile_condition("len < 1")


# ---------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("10 - 4 - 3", 3.0),
        ("12 / 4 / 3", 1.0),
        ("-2 * -3", 6.0),
        ("--2", 2.0),
        ("+2", 2.0),
        ("-(1 + 2)", -3.0),
        ("7 / 2", 3.5),
        ("1 / 0", NAN),
        ("-1 / 0", NAN),
        ("0 / 0", NAN),
        ("1 / -0.0", NAN),
        ("1e308 * 10", math.inf),
        ("1e999 - 1e999", NAN),
    ],
)
def test_arithmetic(text: str, expected: float) -> None:
    assert same(value(text), expected)


def test_division_by_zero_is_nan_everywhere() -> None:
    assert same(value("x / 0", x=[1, 0, -1]), [NAN, NAN, NAN])
    assert same(value("1 / x", x=[0, 2]), [NAN, 0.5])
    assert holds("isNaN(result / baseline)", result=0.0, baseline=0.0) is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 < 2", True),
        ("2 < 1", False),
        ("1 <= 1", True),
        ("2 > 1", True),
        ("1 >= 2", False),
        ("1 == 1.0", True),
        ("1 != 1", False),
        ("0 < 0.5 < 1", True),
        ("0 < 1.5 < 1", False),
        ("1 < 2 < 3 <= 3 != 4", True),
        ("true == true", True),
        ("true != false", True),
        ("not true", False),
        ("not not true", True),
        ("true and false", False),
        ("true or false", True),
        ("false or false or true", True),
        ("true and true and false", False),
        ("not 1 < 2 or 3 < 4", True),
        ("1 < 2 and 2 < 1 or true", True),
    ],
)
def test_comparisons_and_logic(text: str, expected: bool) -> None:
    assert holds(text) is expected


def test_chained_comparison_on_vectors() -> None:
    assert value("0 < x < 1", x=[0.5, 1.5, -1]) == [True, False, False]
    assert holds("all(0 < x < 1)", x=[0.1, 0.9]) is True
    assert holds("0 < result < 1", result=0.5) is True


def test_and_or_short_circuit() -> None:
    # the right side would be an index error on an empty result
    assert holds("len(result) > 0 and result[0] < 1", result=[]) is False
    assert holds("len(result) == 0 or result[0] < 1", result=[]) is True
    assert holds("len(result) > 0 and result[0] < 1", result=[0.5]) is True
    with pytest.raises(ExprError, match="out of range"):
        holds("len(result) == 0 and result[0] < 1", result=[])
    # the right side is not needed, so not even its names' values
    assert holds("true or nothing_here < 1 and x < 2", x=1.0, nothing_here=0.0) is True


def test_logic_on_vectors_is_elementwise() -> None:
    assert value("not x", x=[True, False]) == [False, True]
    assert value("x and y", x=[True, True, False], y=[True, False, False]) == [True, False, False]
    assert value("x or y", x=[True, True, False], y=[True, False, False]) == [True, True, False]
    assert value("(a < 1) and (a > 0)", a=[0.5, 2.0]) == [True, False]
    assert holds("any(a > 1 or a < 0)", a=[0.5, 2.0]) is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2 ** 3 > 1", "`\\*\\*` is not supported"),
        ("10**10**10 > 1", "`\\*\\*` is not supported"),
        ("7 // 2 > 1", "`//` is not supported"),
        ("7 % 2 > 1", "`%` is not supported"),
        ("1 << 2 > 1", "`<<` is not supported"),
        ("1 @ 2 > 1", "`@` is not supported"),
        ("true | false", "`\\|` is not supported; use `or`"),
        ("true & false", "`&` is not supported; use `and`"),
        ("true ^ false", "`\\^` is not supported"),
        ("~result", "`~` is not supported; use `not`"),
        ("result in result", "`in` is not supported"),
        ("result not in result", "`not in` is not supported"),
        ("result is result", "`is` is not supported"),
        ("result is not result", "`is not` is not supported"),
        ("1 if true else 2", "if ... else"),
        ("(x := 1) > 0", "`:=` is not allowed"),
    ],
)
def test_unsupported_operators(text: str, message: str) -> None:
    with pytest.raises(ExprError, match=message):
        compile_condition(text)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("result > 0 && result < 1", "use `and` instead of `&&`"),
        ("result > 0 || result < 1", "use `or` instead of `||`"),
        ("!isNaN(result)", "use `not` instead of `!`"),
        ("result = 1", "use `==` to compare"),
    ],
)
def test_other_spellings_get_a_hint(text: str, hint: str) -> None:
    with pytest.raises(ExprError, match=hint):
        compile_condition(text)


# ---------------------------------------------------------------- type errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("true + 1 > 0", "`\\+` needs numbers, got true/false"),
        ("-true", "unary `-` needs a number"),
        ("not 1", "`not` needs true/false, got a number"),
        ("1 and true", "`and` needs true/false, got a number"),
        ("true or 1", "`or` needs true/false, got a number"),
        ("true < false", "`<` needs numbers, got true/false"),
        ("true == 1", "`==` compares a number with true/false"),
        ("all(1 + 1)", "all\\(\\) needs true/false values, got numbers"),
        ("isNaN(true)", "isNaN\\(\\) needs numbers, got true/false"),
        ("result[true] > 0", "an index must be a number"),
    ],
)
def test_type_errors_found_when_compiling(text: str, message: str) -> None:
    with pytest.raises(ExprError, match=message):
        compile_condition(text)


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("flag + 1 > 0", {"flag": True}, "`\\+` needs numbers, got true"),
        ("-flag > 0", {"flag": [True]}, "unary `-` needs numbers"),
        ("not result", {"result": 1.0}, "`not` needs true/false values, got the number 1"),
        ("result and true", {"result": [1.0, 2.0]}, "`and` needs true/false values"),
        ("result < flag", {"result": 1.0, "flag": False}, "`<` needs numbers, got false"),
        ("result == flag", {"result": 1.0, "flag": False}, "`==` compares the number 1 with false"),
        ("all(result)", {"result": [1.0]}, "all\\(\\) needs true/false values"),
        ("any(result)", {"result": 1.0}, "any\\(\\) needs true/false values"),
        ("isNaN(flag)", {"flag": [True]}, "isNaN\\(\\) needs numbers"),
        ("sum(flag) > 0", {"flag": [True]}, "sum\\(\\) needs numbers"),
        ("result[i] > 0", {"result": 1.0, "i": True}, "an index must be a number, got true"),
        ("result[i] > 0", {"result": 1.0, "i": [0.0, 1.0]}, "an index must be a number"),
        ("result[i] > 0", {"result": 1.0, "i": 0.5}, "an index must be a whole number"),
        ("result[i] > 0", {"result": 1.0, "i": NAN}, "an index must be a whole number"),
    ],
)
def test_type_errors_found_when_evaluating(text: str, env: dict[str, Any], message: str) -> None:
    cond = compile_condition(text)  # the types of names are only known with the values
    with pytest.raises(ExprError, match=message):
        cond.evaluate(env)


# ---------------------------------------------------------------- indexing


def test_indexing() -> None:
    assert value("x[0]", x=[3, 4, 5]) == 3.0
    assert value("x[2]", x=[3, 4, 5]) == 5.0
    assert value("x[-1]", x=[3, 4, 5]) == 5.0
    assert value("x[-3]", x=[3, 4, 5]) == 3.0
    assert value("x[len(x) - 1]", x=[3, 4, 5]) == 5.0
    assert value("x[1 + 0]", x=[3, 4, 5]) == 4.0
    assert value("(x < 4)[0]", x=[3, 4, 5]) is True
    # a single value is a vector of one
    assert value("x[0]", x=7.0) == 7.0
    assert value("x[-1]", x=7.0) == 7.0


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("x[3] > 0", {"x": [1, 2, 3]}, "index 3 is out of range: `x` has 3 values"),
        ("x[-4] > 0", {"x": [1, 2, 3]}, "index -4 is out of range"),
        ("x[0] > 0", {"x": []}, "index 0 is out of range: `x` has 0 values"),
        ("x[1] > 0", {"x": 1.0}, "index 1 is out of range: `x` has 1 value"),
        ("(x * 2)[5] > 0", {"x": [1]}, "`x \\* 2` has 1 value"),
    ],
)
def test_index_out_of_range(text: str, env: dict[str, Any], message: str) -> None:
    compile_condition(text)  # fine until evaluated
    assert "column 1" in error(text, **env)
    with pytest.raises(ExprError, match=message):
        compile_condition(text).evaluate(env)


def test_slices_and_multiple_indices_are_rejected() -> None:
    with pytest.raises(ExprError, match="slices are not supported"):
        compile_condition("all(x[0:2] > 1)")
    with pytest.raises(ExprError, match="tuples are not supported"):
        compile_condition("x[0, 1] > 1")


# ---------------------------------------------------------------- broadcasting


def test_vector_and_scalar() -> None:
    assert value("x + 1", x=[1, 2]) == [2.0, 3.0]
    assert value("1 - x", x=[1, 2]) == [0.0, -1.0]
    assert value("x * 2", x=[1, 2]) == [2.0, 4.0]
    assert value("x / 2", x=[1, 2]) == [0.5, 1.0]
    assert value("-x", x=[1, -2]) == [-1.0, 2.0]
    assert value("x < 1.5", x=[1, 2]) == [True, False]
    assert value("1.5 < x", x=[1, 2]) == [False, True]
    assert value("x == 2", x=[1, 2]) == [False, True]


def test_vector_and_vector() -> None:
    assert value("x + y", x=[1, 2], y=[10, 20]) == [11.0, 22.0]
    assert value("x < y", x=[1, 30], y=[10, 20]) == [True, False]
    assert holds("all(result <= baseline * 1.5)", result=[1, 2], baseline=[1, 2]) is True
    with pytest.raises(ExprError, match="vectors of different lengths \\(2 and 3\\)"):
        value("x + y", x=[1, 2], y=[1, 2, 3])
    with pytest.raises(ExprError, match="vectors of different lengths"):
        value("x < y", x=[1, 2], y=[1, 2, 3])
    with pytest.raises(ExprError, match="vectors of different lengths"):
        value("x and y", x=[True, False], y=[True, False, True])


def test_a_vector_of_one_is_a_scalar() -> None:
    assert value("x + y", x=[1], y=[10, 20]) == [11.0, 21.0]
    assert value("x + y", x=[10, 20], y=[1]) == [11.0, 21.0]
    assert value("x + 1", x=[1]) == [2.0]
    assert value("x + y", x=[1], y=[]) == []
    assert holds("result < 0.5", result=[0.1]) is True
    assert holds("result[0] < 0.5 and result < 1", result=[0.1]) is True
    assert holds("result", result=[True]) is True
    assert holds("result * 2 == baseline", result=[1], baseline=2.0) is True


def test_empty_vectors() -> None:
    assert value("x + 1", x=[]) == []
    assert value("x < 1", x=[]) == []
    assert value("x + y", x=[], y=[]) == []
    assert value("len(x)", x=[]) == 0.0
    assert holds("all(x < 1)", x=[]) is True
    assert holds("any(x < 1)", x=[]) is False


# ---------------------------------------------------------------- functions


def test_functions() -> None:
    x = [3.0, -1.0, 2.0]
    assert value("len(x)", x=x) == 3.0
    assert value("len(x)", x=5.0) == 1.0
    assert value("min(x)", x=x) == -1.0
    assert value("max(x)", x=x) == 3.0
    assert value("sum(x)", x=x) == 4.0
    assert value("avg(x)", x=x) == pytest.approx(4 / 3)
    assert value("abs(x)", x=x) == [3.0, 1.0, 2.0]
    assert value("abs(-2)") == 2.0
    assert value("isNaN(x)", x=[1.0, NAN]) == [False, True]
    assert value("isNaN(x)", x=NAN) is True
    assert value("all(x > -2)", x=x) is True
    assert value("any(x > 2.5)", x=x) is True
    assert value("all(x > 0)", x=x) is False
    assert value("any(x > 5)", x=x) is False
    for fn in ("min", "max", "sum", "avg"):
        assert value(f"{fn}(x)", x=7.0) == 7.0
        assert value(f"{fn}(x)", x=[7.0]) == 7.0
    assert value("all(x)", x=True) is True
    assert value("any(x)", x=[False]) is False


def test_empty_and_nan_reductions() -> None:
    assert same(value("min(x)", x=[]), NAN)
    assert same(value("max(x)", x=[]), NAN)
    assert same(value("avg(x)", x=[]), NAN)
    assert value("sum(x)", x=[]) == 0.0
    for fn in ("min", "max", "sum", "avg"):
        assert same(value(f"{fn}(x)", x=[1.0, NAN, 0.0]), NAN), fn
    assert holds("max(result) < 0.5", result=[]) is False
    assert holds("max(result) < 0.5", result=[0.1, NAN]) is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("min(x, 1) < 1", "min\\(\\) takes exactly one argument"),
        ("all() or true", "all\\(\\) takes exactly one argument"),
        ("len(x=1) > 1", "len\\(\\) takes no keyword arguments"),
        ("len(*x) > 1", "`\\*` unpacking is not allowed"),
        ("foo(x) > 1", "unknown function `foo` \\(functions: abs, all, any, avg, isNaN"),
        ("isnan(x)", "unknown function `isnan`"),
        ("x(1) > 1", "unknown function `x`"),
        ("x[0](1) > 1", "only the built-in functions can be called"),
        ("(len)(x) > 1", None),  # parentheses around a name are just the name
    ],
)
def test_calls(text: str, message: str | None) -> None:
    if message is None:
        assert compile_condition(text).evaluate({"x": [1.0, 2.0]}) is True
        return
    with pytest.raises(ExprError, match=message):
        compile_condition(text)


# ---------------------------------------------------------------- NaN


@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "=="])
def test_comparisons_with_nan_are_false(op: str) -> None:
    for text in (f"result {op} 0.01", f"0.01 {op} result", f"result {op} result"):
        assert holds(text, result=NAN) is False, text
    assert value(f"x {op} 1", x=[NAN, NAN]) == [False, False]


def test_not_equal_with_nan_is_true() -> None:
    # IEEE: != is the negation of ==, so `not (a == b)` and `a != b` always agree
    assert holds("result != 0.01", result=NAN) is True
    assert holds("result != result", result=NAN) is True
    assert holds("not (result == result)", result=NAN) is True


def test_nan_values_are_legitimate() -> None:
    assert holds("isNaN(result)", result=NAN) is True
    assert holds("isNaN(result)", result=1.0) is False
    assert holds("not isNaN(result) and result < 0.01", result=NAN) is False
    assert holds("any(isNaN(result))", result=[1.0, NAN]) is True
    assert holds("all(not isNaN(result))", result=[1.0, NAN]) is False
    assert same(value("result + 1", result=NAN), NAN)
    assert holds("isNaN(result[1])", result=[0.0, NAN]) is True


def test_infinities() -> None:
    assert holds("result > 1e308", result=math.inf) is True
    assert holds("result < 0", result=-math.inf) is True
    assert holds("isNaN(result - result)", result=math.inf) is True


# ---------------------------------------------------------------- the final value


def test_a_condition_must_be_true_or_false() -> None:
    for text in ("1", "result + 1", "len(result)", "-result", "sum(result) * 2", "abs(result)"):
        with pytest.raises(ExprError, match="condition must be true/false"):
            compile_condition(text)  # known to be a number without any value
    # a name alone may be anything until it has a value
    assert holds("flag", flag=True) is True
    assert holds("flag", flag=[False]) is False
    assert holds("result[0]", result=[True, False]) is True
    with pytest.raises(ExprError, match=r"condition must be true/false, got the number 0\.5"):
        holds("result", result=0.5)
    with pytest.raises(ExprError, match="condition must be true/false, got the number 1"):
        holds("result", result=[1.0])
    with pytest.raises(ExprError, match="condition must be true/false, got a vector of 2 num"):
        holds("result", result=[1.0, 0.0])
    with pytest.raises(ExprError, match="condition must be true/false"):
        holds("result[0]", result=[0.0, 1.0])


def test_several_values_are_ambiguous() -> None:
    values: list[list[float]] = [[0.01, 0.02], []]
    for result in values:
        with pytest.raises(ExprError, match="ambiguous: wrap it in all\\(\\) or any\\(\\)"):
            holds("result < 0.5", result=result)
    assert "the condition gives 2 values" in error("result < 0.5", result=[0.1, 0.2])
    assert holds("all(result < 0.5)", result=[0.01, 0.02]) is True


def test_evaluate_returns_a_real_bool() -> None:
    assert compile_condition("result < 1").evaluate({"result": [0.5]}) is True
    assert compile_condition("result").evaluate({"result": (False,)}) is False


# ---------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os')", "unknown function `__import__`"),
        ("__import__('os').system('true')", "only the built-in functions"),
        ("result.__class__", "attribute access \\(`.`\\) is not allowed"),
        ("result.__class__.__bases__[0].__subclasses__()", "only the built-in functions"),
        ("(1).__class__ == 1", "attribute access"),
        ("lambda: 1", "lambda is not allowed"),
        ("(lambda x: x)(1) > 0", "only the built-in functions"),
        ("[x for x in result]", "comprehensions are not allowed"),
        ("any(x < 1 for x in result)", "comprehensions are not allowed"),
        ("{x for x in result}", "comprehensions are not allowed"),
        ("{x: 1 for x in result}", "comprehensions are not allowed"),
        ("eval('1') == 1", "unknown function `eval`"),
        ("exec('1')", "unknown function `exec`"),
        ("open('/etc/passwd')", "unknown function `open`"),
        ("getattr(result, 'x')", "unknown function `getattr`"),
        ("globals()", "unknown function `globals`"),
        ("10**10**10", "`\\*\\*` is not supported"),
        ("9**9**9**9 > 0", "`\\*\\*` is not supported"),
        ("'a' * 10**9 == 'a'", "strings are not supported"),
        ("result; import os", "invalid syntax"),
        ("import os", "invalid syntax"),
        ("result\nimport os", "invalid syntax"),
        ("await result", "`await` is not allowed"),
        ("(yield)", "`yield` is not allowed"),
        ("print(result)", "unknown function `print`"),
        ("__builtins__", "names starting with `_`"),
        ("min.__self__", "attribute access"),
    ],
)
def test_hostile_input(text: str, message: str) -> None:
    with pytest.raises(ExprError, match=message):
        compile_condition(text).evaluate({"result": [1.0]})


def test_hostile_env_values() -> None:
    for bad in ("0.5", b"1", None, {"a": 1}, object(), [1.0, "2"], [1.0, None], [1.0, True]):
        with pytest.raises(ExprError, match="`result`"):
            holds("result < 1", result=bad)
    with pytest.raises(ExprError, match="number too large"):
        holds("result < 1", result=10**400)
    # ints and tuples are fine
    assert holds("all(result < 3)", result=(1, 2)) is True
    assert holds("result < 3", result=2) is True


# ---------------------------------------------------------------- limits


def test_length_limit() -> None:
    ok = "result < 1" + " " * (MAX_LENGTH - 10)
    assert len(ok) == MAX_LENGTH
    assert holds(ok, result=0.0) is True
    too_long = "0 < " * 250 + "1"
    assert len(too_long) > MAX_LENGTH
    msg = error(too_long)
    assert f"too long ({len(too_long)} characters, at most {MAX_LENGTH})" in msg
    assert len(msg) < 200  # the text is shortened in the message


def test_depth_limit() -> None:
    assert value("-" * (MAX_DEPTH - 1) + "1") == -1.0
    with pytest.raises(ExprError, match=f"nested too deeply \\(more than {MAX_DEPTH} levels\\)"):
        evaluate_value("-" * MAX_DEPTH + "1", {})
    assert holds("(" * 100 + "true" + ")" * 100) is True  # parentheses are not levels
    with pytest.raises(ExprError, match="nested too deeply"):
        compile_condition("not " * 60 + "true")
    with pytest.raises(ExprError, match="nested too deeply"):
        compile_condition(" + ".join(["1"] * 60) + " > 0")


@pytest.mark.parametrize(
    "text",
    [
        "(" * 300 + "1" + ")" * 300,
        "-" * 999 + "1",
        "not " * 249 + "x",
        "[" * 300,
        "x" + "[0]" * 300,
        "len(" * 200 + "x" + ")" * 200,
    ],
)
def test_deep_nesting_is_an_expr_error(text: str) -> None:
    with pytest.raises(ExprError):
        compile_condition(text)


def test_vector_limit() -> None:
    assert holds("len(result) == 100000", result=[0.0] * MAX_VECTOR) is True
    with pytest.raises(ExprError, match="`result` has 100001 values, more than 100000"):
        holds("len(result) > 0", result=[0.0] * (MAX_VECTOR + 1))


def test_a_large_vector_is_quick() -> None:
    cond = compile_condition("all(result < 0.5) and avg(result) < 1 and not any(isNaN(result))")
    start = time.perf_counter()
    assert cond.evaluate({"result": [0.1] * MAX_VECTOR}) is True
    assert time.perf_counter() - start < 2


# ---------------------------------------------------------------- error messages


def test_expr_error_is_a_value_error_with_the_text() -> None:
    with pytest.raises(ValueError, match="condition `result <`"):
        compile_condition("result <")


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("result <", 9),  # ran out of text
        ("result < 0.02 )", 15),
        ("(result < 0.02", 1),
        ("result && 1", 9),
        ("result < 'a'", 10),
        ("result ** 2 > 1", 8),
        ("result < 1 and result.x", 16),
        ("é < 'a'", 5),  # columns count characters, not UTF-8 bytes
        ("é + ü ** 2 > 1", 7),
        ("1 < foo(2)", 5),
        ("true == 1", 6),
    ],
)
def test_parse_errors_give_the_column(text: str, column: int) -> None:
    with pytest.raises(ExprError) as info:
        compile_condition(text)
    assert info.value.column == column
    assert f"(column {column})" in str(info.value)
    assert f"condition `{text}`" in str(info.value)
    assert info.value.text == text


def test_errors_on_a_second_line_give_the_line() -> None:
    with pytest.raises(ExprError, match="line 2, column 3") as info:
        compile_condition("(result < 1 and\n  'x')")
    assert info.value.line == 2


def test_surrounding_whitespace_is_ignored() -> None:
    assert holds("  result < 1\n", result=0.0) is True
    assert holds("\n\tresult < 1", result=0.0) is True
    with pytest.raises(ExprError, match="empty expression"):
        compile_condition("  ")
    with pytest.raises(ExprError, match="empty expression"):
        compile_condition("")


def test_control_characters_are_not_echoed() -> None:
    with pytest.raises(ExprError) as info:
        compile_condition("result\x00 < 1\x1b[31m")
    assert "\x00" not in str(info.value)
    assert "\x1b" not in str(info.value)


def test_evaluation_errors_name_the_place() -> None:
    msg = error("result < 1 and baseline[4] > 0", result=0.0, baseline=[1.0])
    assert "condition `result < 1 and baseline[4] > 0`" in msg
    assert "(column 16)" in msg


# ---------------------------------------------------------------- properties


Tree = tuple[str, float]  # (text, the value Python's float arithmetic gives)

_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": lambda a, b: a / b if b != 0 else NAN,
}
numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(10**6), 10**6).map(float),
    st.sampled_from([0.0, -0.0, 1.0, 0.5, 1e-300, 1e300]),
)


def _leaf(x: float) -> Tree:
    return repr(x), x


def _binary(children: st.SearchStrategy[Tree]) -> st.SearchStrategy[Tree]:
    def combine(args: tuple[Tree, str, Tree]) -> Tree:
        (lt, lv), op, (rt, rv) = args
        return f"({lt} {op} {rt})", _ARITH[op](lv, rv)

    def negate(t: Tree) -> Tree:
        return f"-({t[0]})", -t[1]

    return st.one_of(
        st.tuples(children, st.sampled_from(sorted(_ARITH)), children).map(combine),
        children.map(negate),
    )


arithmetic = st.recursive(numbers.map(_leaf), _binary, max_leaves=12)


@given(arithmetic)
@settings(max_examples=300, deadline=None)
def test_arithmetic_is_python_float_arithmetic(tree: Tree) -> None:
    text, expected = tree
    assert same(evaluate_value(text, {}), expected), text


@given(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
    st.floats(allow_nan=True, allow_infinity=True),
)
@settings(max_examples=300, deadline=None)
def test_comparisons_are_python_float_comparisons(a: float, op: str, b: float) -> None:
    expected = {
        "<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">=": a >= b,
        "==": a == b,
        "!=": a != b,
    }[op]
    assert compile_condition(f"a {op} b").evaluate({"a": a, "b": b}) is expected


@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=20),
    st.sampled_from(sorted(_ARITH)),
    st.floats(allow_nan=True, allow_infinity=True),
)
@settings(max_examples=200, deadline=None)
def test_broadcasting_is_elementwise(xs: list[float], op: str, c: float) -> None:
    fn = _ARITH[op]
    assert same(evaluate_value(f"x {op} c", {"x": xs, "c": c}), [fn(x, c) for x in xs])
    assert same(evaluate_value(f"c {op} x", {"x": xs, "c": c}), [fn(c, x) for x in xs])
    assert same(evaluate_value(f"x {op} x", {"x": xs}), [fn(x, x) for x in xs])
    assert evaluate_value("x < c", {"x": xs, "c": c}) == [x < c for x in xs]
    assert compile_condition("all(x < c)").evaluate({"x": xs, "c": c}) is all(x < c for x in xs)
    assert compile_condition("any(x >= c)").evaluate({"x": xs, "c": c}) is any(x >= c for x in xs)


TOKENS = [
    "result", "baseline", "x", "true", "false", "0", "1", "0.5", "1e3", "-", "+", "*", "/",
    "**", "//", "%", "<", "<=", ">", ">=", "==", "!=", "=", "and", "or", "not", "&&", "||",
    "!", "(", ")", "[", "]", ",", ".", ":", "len", "all", "any", "isNaN", "min", "max", "sum",
    "avg", "abs", "lambda", "for", "in", "if", "else", "'s'", "__import__", "__class__", " ",
    "\n", "\\", "#", "@", "~", "|", "&", "^", "...", "None", "j", "_",
]  # fmt: skip
env_values = st.one_of(
    st.floats(),
    st.booleans(),
    st.lists(st.floats(), max_size=5),
    st.lists(st.booleans(), max_size=5),
)


def _never_raises_anything_else(text: str, env: Mapping[str, Any]) -> None:
    try:
        cond = compile_condition(text)
    except ExprError as exc:
        assert "condition `" in str(exc)
        return
    assert isinstance(cond.names, frozenset)
    try:
        assert cond.evaluate(env) in (True, False)
    except ExprError as exc:
        assert "condition `" in str(exc)
        assert "cannot evaluate" not in str(exc), exc  # the safety net caught a bug


@given(st.text(max_size=200), st.dictionaries(st.sampled_from(["result", "baseline"]), env_values))
@settings(max_examples=500, deadline=None)
def test_junk_text_only_raises_expr_error(text: str, env: dict[str, Any]) -> None:
    _never_raises_anything_else(text, env)


@given(
    st.lists(st.sampled_from(TOKENS), max_size=30).map(" ".join),
    st.dictionaries(st.sampled_from(["result", "baseline", "x"]), env_values),
)
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_junk_tokens_only_raise_expr_error(text: str, env: dict[str, Any]) -> None:
    _never_raises_anything_else(text, env)


@given(
    st.lists(st.sampled_from([t for t in TOKENS if t.strip()]), max_size=30).map("".join),
    st.dictionaries(st.sampled_from(["result", "baseline", "x"]), env_values),
)
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_glued_junk_tokens_only_raise_expr_error(text: str, env: dict[str, Any]) -> None:
    _never_raises_anything_else(text, env)
