"""The base of every API model: camelCase on the wire, unknown fields refused."""

from __future__ import annotations

import copy
from typing import Any, Self

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# Values a deep copy may share: immutable and holding nothing mutable.
_ATOMIC = frozenset({str, int, float, bool, bytes, type(None)})


class Model(BaseModel):
    """Base: camelCase on the wire, unknown fields refused (the CRD prunes them anyway)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        """A deep copy that shares what cannot change (pydantic's goes through copy.deepcopy
        for every string: the engine copies the status once per decision, a hot path).

        A frozen model of plain values is shared, as copy.deepcopy shares a tuple of
        them; lists are copied; a nested model copies itself; anything else is given to
        copy.deepcopy. Equal to pydantic's copy field for field.
        """
        values = self.__dict__
        if (
            self.model_config.get("frozen")
            and self.__pydantic_extra__ is None
            and getattr(self, "__pydantic_private__", None) is None
            and all(type(v) in _ATOMIC for v in values.values())
        ):
            return self
        if memo is None:
            memo = {}
        cls = type(self)
        copied = cls.__new__(cls)
        memo[id(self)] = copied
        object.__setattr__(copied, "__dict__", {k: _deep(v, memo) for k, v in values.items()})
        object.__setattr__(copied, "__pydantic_extra__", _deep(self.__pydantic_extra__, memo))
        object.__setattr__(copied, "__pydantic_fields_set__", set(self.__pydantic_fields_set__))
        private = getattr(self, "__pydantic_private__", None)
        object.__setattr__(copied, "__pydantic_private__", _deep(private, memo))
        return copied


def _deep(value: Any, memo: dict[int, Any]) -> Any:
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if kind is list:
        seen = memo.get(id(value))
        if seen is None:
            seen = memo[id(value)] = [_deep(item, memo) for item in value]
            # copy.deepcopy keeps the original alive while its id is a memo key
            memo.setdefault(id(memo), []).append(value)
        return seen
    if isinstance(value, Model):
        done = memo.get(id(value))
        return value.__deepcopy__(memo) if done is None else done
    return copy.deepcopy(value, memo)
