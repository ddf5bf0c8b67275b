"""JSON from a peer, parsed with a bound on nesting depth and size (pure).

``json.loads`` recurses once per level of nesting: ``[[[[...`` a few thousand levels
deep (a few KB) raises ``RecursionError``, which is not a ``ValueError`` and so slips
past every ``except ValueError`` around a parse; a message just under the
interpreter's limit parses, then breaks whatever walks or re-encodes it later.
:func:`loads_bounded` refuses both with :class:`UnsafeJson` (a ``ValueError``), so a
caller's one ``except ValueError`` covers bad JSON and hostile JSON alike.

Cost: a message with at most ``max_depth`` brackets (``{`` and ``[``, counted
anywhere, strings included) cannot nest deeper than that, so it is parsed at once;
the count is two C-speed passes (0.3 ns a character each: about a tenth of what the
parse costs; nothing for a text shorter than ``max_depth``). Only a message with more
brackets (a Turn of more than about 250 words) is parsed with ``RecursionError``
caught, then its depth measured level by level on the result (a list of flat objects
in one pass; docs/performance.md).
"""

from __future__ import annotations

import json
from itertools import chain
from typing import Any

#: Nesting levels an upstream or client message may have. AssemblyAI's deepest
#: (a Turn's ``words``, a ``SpeakerRevision``) have 3 or 4; an LLM Gateway answer a
#: few more. Far below the interpreter's recursion limit (1000), so whatever walks a
#: parsed message later has room; high enough that a message with up to this many
#: objects and arrays in all (a Turn of up to about 250 words) takes the fast path.
MAX_JSON_DEPTH = 256

_CONTAINERS = frozenset((dict, list))
_OBJECTS = frozenset((dict,))


class UnsafeJson(ValueError):
    """JSON refused before or after parsing: too deep or too large. ``reason`` is
    a fixed label (safe in a log line or as a metric label)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def loads_bounded(
    text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH, max_chars: int | None = None
) -> object:
    """``json.loads(text)``, refusing text over ``max_chars`` and nesting deeper than
    ``max_depth``. Raises ValueError: ``json.JSONDecodeError`` for bad JSON,
    :class:`UnsafeJson` for what the bounds refuse."""
    if max_chars is not None and len(text) > max_chars:
        raise UnsafeJson("too_large", f"JSON of {len(text)} characters, over {max_chars}")
    if len(text) <= max_depth:  # too short to nest deeper
        return json.loads(text)
    if isinstance(text, bytes):
        brackets = text.count(b"{") + text.count(b"[")
    else:
        brackets = text.count("{") + text.count("[")
    if brackets <= max_depth:
        return json.loads(text)
    try:
        value = json.loads(text)
    except RecursionError:
        raise UnsafeJson("too_deep", f"JSON nested deeper than {max_depth} levels") from None
    if json_depth(value, max_depth) > max_depth:
        raise UnsafeJson("too_deep", f"JSON nested deeper than {max_depth} levels")
    return value


def json_depth(value: object, limit: int) -> int:
    """Levels of nesting of a parsed JSON value (a scalar is 0, ``[]`` 1), counted up
    to ``limit + 1`` at most (the walk stops there). Iterative: no recursion. A list
    of flat objects (a Turn's ``words``) is looked at in one C-speed pass, not object
    by object."""
    level: list[Any] = [value] if type(value) in _CONTAINERS else []
    depth = deepest = 0
    while level:
        depth += 1
        if depth > limit:
            return depth
        deeper: list[Any] = []
        for node in level:
            values = node.values() if type(node) is dict else node
            types = set(map(type, values))
            if types.isdisjoint(_CONTAINERS):  # a leaf
                continue
            if types == _OBJECTS:  # a list of objects: are they all flat?
                inner = set(map(type, chain.from_iterable(map(dict.values, values))))
                if inner.isdisjoint(_CONTAINERS):
                    deepest = depth + 1
                    continue
            deeper += [v for v in values if type(v) in _CONTAINERS]
        level = deeper
    return max(depth, deepest)
