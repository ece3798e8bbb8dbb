"""Is a header route's regex one the routers can run? Istio, Envoy and Gateway API
implementations evaluate RE2, which has no backreferences, lookaround, atomic groups or
possessive repeats (it runs in linear time instead). A pattern outside RE2 would be written
to the router object and refused there, or ignored: here it is refused by name.

Python's parser reads the pattern (RE2's own escapes that Python lacks are put in Python
terms first); nothing is ever matched against it.
"""

from __future__ import annotations

import re
import re._constants as sre
import re._parser as sre_parse
from typing import Any

# RE2 escapes Python does not know, replaced by something of the same shape.
_RE2_ONLY = re.compile(r"\\[pP]\{[^}]*\}|\\[pP][A-Za-z]|\\z|\\C|\[:\^?[a-z]+:\]")
_NOT_RE2 = {
    sre.GROUPREF: "a backreference",
    sre.GROUPREF_EXISTS: "a conditional group",
    sre.ASSERT: "a lookahead or lookbehind",
    sre.ASSERT_NOT: "a negative lookahead or lookbehind",
    sre.ATOMIC_GROUP: "an atomic group",
    sre.POSSESSIVE_REPEAT: "a possessive repeat",
}


def re2_problem(pattern: str) -> str | None:
    """Why `pattern` is not an RE2 expression, or None."""
    text = _RE2_ONLY.sub(lambda m: "a" if m.group().startswith("[") else ".", pattern)
    try:
        parsed = sre_parse.parse(text)
    except re.error as exc:
        return f"not a regular expression: {exc}"
    found = _first(parsed)
    return None if found is None else f"{found} (the routers evaluate RE2, which has none)"


def _first(parsed: Any) -> str | None:
    for op, arg in parsed:
        if op in _NOT_RE2:
            return _NOT_RE2[op]
        for part in arg if isinstance(arg, tuple | list) else ():
            # a group's or a repeat's body, or a branch's alternatives
            subs = part if isinstance(part, list) else [part]
            for sub in subs:
                found = _first(sub) if isinstance(sub, sre_parse.SubPattern) else None
                if found:
                    return found
    return None
