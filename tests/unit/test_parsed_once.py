"""The reconciler parses a spec once: what it hands to decide() is what decide() would have
parsed itself, and decide() decides the same with it."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from sluice.engine import decide
from sluice.engine.types import RolloutInput
from sluice.engine.validate import InvalidSpec, parse_spec, with_name

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from engine_decisions import make_case


def test_a_spec_parsed_without_a_name_is_the_named_parse_when_the_name_is_fine() -> None:
    rng = random.Random(3)
    for index in range(30):
        case = make_case(rng, index)
        named = with_name(parse_spec(case.inp.spec), case.inp.name)
        assert named == parse_spec(case.inp.spec, case.inp.name)


def test_a_name_no_service_can_have_is_left_to_decide() -> None:
    case = make_case(random.Random(1), 0)
    too_long = "x" * 60
    with pytest.raises(InvalidSpec, match="Service name"):
        parse_spec(case.inp.spec, too_long)
    assert with_name(parse_spec(case.inp.spec), too_long) is None


def test_decide_decides_the_same_with_the_spec_parsed_already() -> None:
    rng = random.Random(5)
    for index in range(60):
        case = make_case(rng, index)
        parsed = with_name(parse_spec(case.inp.spec), case.inp.name)
        given = RolloutInput(**{**case.inp.__dict__, "parsed": parsed})
        assert decide(given, case.observed, case.now) == decide(case.inp, case.observed, case.now)
