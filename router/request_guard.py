"""A client's JSON body, loaded with the limits a gateway needs.

``load_json_body`` is ``json.loads`` for untrusted bytes: anything the
standard parser accepts but the rest of the router cannot carry safely is
an ``InvalidRequest`` (400) here, once, instead of a 500 somewhere later:

- not UTF-8 (RFC 8259 8.1), including the UTF-8 encoding of a surrogate
  (``ED A0 80``), which ``json.loads`` on bytes lets through;
- nesting deeper than ``MAX_JSON_DEPTH`` (the parser itself gives up with
  ``RecursionError`` near 1000 levels; the cache key, pickling and the
  providers' encoders recurse too, and fail well before);
- an integer literal over Python's digit limit (``sys.get_int_max_str_digits``);
- ``NaN``, ``Infinity`` and numbers that overflow to infinity (RFC 8259 6:
  not JSON; ``json.dumps`` would send them upstream as invalid JSON);
- a lone surrogate written as an escape (``"\\ud800"``): not Unicode, so
  it cannot be encoded for the cache key or sent upstream.

``check_json_tree`` is the walk behind the last three, iterative, so a tree
deeper than Python's stack is still only a 400. Errors name the field as a
path in the request (``messages[2].content``), rendered by ``field_path``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from math import isfinite
from typing import Any

from router.errors import InvalidRequest

__all__ = ["MAX_JSON_DEPTH", "load_json_body", "check_json_tree", "field_path"]

MAX_JSON_DEPTH = 64
"""Levels of nesting a body may have, counting the body object as 1.

Real requests use under 15 (a JSON schema in ``tools`` or
``response_format`` is the deepest part); 64 leaves room for any sane
schema while keeping every recursive consumer (cache key, pickling,
``json.dumps``) far from Python's recursion limit of 1000."""

MAX_PARAM_CHARS = 200
"""Longest ``param`` an error names."""

_DEEP = "deep"
_SURROGATE = "surrogate"
_NON_FINITE = "non-finite"


class _NonFiniteLiteral(ValueError):
    """``NaN`` / ``Infinity`` in the body; raised from the parser's hook."""


def load_json_body(body: bytes) -> Any:
    """The parsed body, or ``InvalidRequest`` (code ``invalid_json``, or
    ``invalid_value`` naming the field for a lone surrogate)."""
    try:
        # json.loads(bytes) would decode with 'surrogatepass'; strict decoding
        # turns away encoded surrogates (UTF-16/32 bodies still work).
        text = body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"request body is not valid UTF-8: {exc.reason} at byte {exc.start}", code="invalid_json") from exc
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    except RecursionError as exc:
        raise InvalidRequest(_too_deep(None), code="invalid_json") from exc
    except _NonFiniteLiteral as exc:
        raise InvalidRequest(_not_finite(None), code="invalid_json") from exc
    except ValueError as exc:
        # The parser's only other ValueError: int() refusing a literal over
        # the interpreter's digit limit.
        limit = sys.get_int_max_str_digits()
        raise InvalidRequest(f"request body has an integer literal over {limit} digits", code="invalid_json") from exc
    # A lone surrogate can only come from a \u escape once the text is UTF-8.
    check_json_tree(value, surrogates="\\u" in text)
    return value


def check_json_tree(value: Any, *, surrogates: bool = True) -> None:
    """Raise ``InvalidRequest`` if a parsed JSON value nests deeper than
    ``MAX_JSON_DEPTH``, holds a non-finite float, or (``surrogates``) a
    string or key with a lone surrogate. Walks iteratively; locates the
    offending field in a second walk, only when there is one."""
    problem = _first_problem(value, surrogates)
    if problem is None:
        return
    path = _locate(value, problem)
    if problem is _DEEP:
        top = field_path(path[:1]) if path and isinstance(path[0], str) else None
        raise InvalidRequest(_too_deep(top), param=top, code="invalid_json")
    if problem is _NON_FINITE:
        raise InvalidRequest(_not_finite(field_path(path)), param=field_path(path), code="invalid_json")
    param = field_path(path)
    where = f"'{param}'" if param else "request body"
    raise InvalidRequest(
        f"{where} contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not valid Unicode",
        param=param,
        code="invalid_value",
    )


def field_path(path: Sequence[str | int]) -> str | None:
    """A path in the request as clients write it: ``messages[2].content``.

    The path is echoed in the error reply, so a client's own key is made
    safe to encode (a lone surrogate becomes ``\\ud800``) and the whole is
    clipped to ``MAX_PARAM_CHARS``."""
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
            continue
        if not step.isascii():
            step = step.encode("utf-8", "backslashreplace").decode("utf-8")
        text += f".{step}" if text else step
        if len(text) > MAX_PARAM_CHARS:
            return text[: MAX_PARAM_CHARS - 3] + "..."
    return text or None


def _first_problem(root: Any, surrogates: bool) -> str | None:
    # Runs on every turn, so it walks level by level (no recursion, no
    # per-node tuples), only containers are queued, and str.isascii() is
    # O(1): ASCII text costs one call.
    level, depth = [root], 1
    while level:
        below: list[Any] = []
        queue = below.append
        for node in level:
            if type(node) is dict:
                if surrogates:
                    for key in node:
                        if not key.isascii() and _has_surrogate(key):
                            return _SURROGATE
                node = node.values()
            elif type(node) is not list:
                node = (node,)  # a scalar root
            for child in node:
                kind = type(child)
                if kind is str:
                    if surrogates and not child.isascii() and _has_surrogate(child):
                        return _SURROGATE
                elif kind is dict or kind is list:
                    queue(child)
                elif kind is float and not isfinite(child):
                    return _NON_FINITE
        if below and depth >= MAX_JSON_DEPTH:
            return _DEEP
        level, depth = below, depth + 1
    return None


def _locate(root: Any, problem: str) -> list[str | int]:
    """The path to the first node with ``problem`` (the slow path: errors only)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if _is(problem, node, len(path)):
            return list(path)
        if isinstance(node, dict):
            for key, child in node.items():
                if problem is _SURROGATE and not key.isascii() and _has_surrogate(key):
                    return [*path, key]
                stack.append((child, (*path, key)))
        elif isinstance(node, list):
            stack.extend((child, (*path, i)) for i, child in enumerate(node))
    return []


def _is(problem: str, node: Any, length: int) -> bool:
    if problem is _DEEP:
        return length >= MAX_JSON_DEPTH and isinstance(node, (dict, list))
    if problem is _NON_FINITE:
        return isinstance(node, float) and not isfinite(node)
    return isinstance(node, str) and not node.isascii() and _has_surrogate(node)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _refuse_constant(name: str) -> Any:
    raise _NonFiniteLiteral(name)


def _too_deep(field: str | None) -> str:
    where = f" in '{field}'" if field else ""
    return f"request body is nested too deeply{where}: at most {MAX_JSON_DEPTH} levels are allowed"


def _not_finite(param: str | None) -> str:
    where = f"'{param}'" if param else "request body"
    return f"{where} holds a number that is not finite (NaN, Infinity or too large): not valid JSON"
