"""Turn pydantic validation errors into one readable :class:`ConfigError` headline per problem."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from streamtune.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SECRET_LOCS = {"token", "secret", "webhooks"}
"""Fields whose value an error never repeats (a webhook's URL or secret, a token)."""


def parse_duration(value: Any) -> float:
    """Parse ``"10m"``, ``"30s"``, ``"250ms"`` or a plain number of seconds into seconds.

    Example:
        >>> parse_duration("10m")
        600.0
        >>> parse_duration(2.5)
        2.5
    """
    if isinstance(value, bool):
        raise ValueError('must be a duration like "10m", "30s" or a number of seconds')
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must be a duration of zero or more")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError('must be a duration like "10m", "30s" or a number of seconds')
    return float(match.group(1)) * _UNITS[match.group(2)]


def _loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif parts:
            parts.append(f".{item}")
        else:
            parts.append(str(item))
    return "".join(parts)


def _rule(err: Any) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", "is invalid"))
    if kind == "extra_forbidden":
        return "is not a known key; remove it or check its spelling"
    if kind == "missing":
        return "is required"
    if kind == "literal_error":  # "'tpe', 'random' or 'cmaes'" -> must be one of tpe, random, cmaes
        expected = str((err.get("ctx") or {}).get("expected", ""))
        names = re.findall(r"'([^']*)'", expected) or [p.strip() for p in re.split(r",| or ", expected) if p.strip()]
        return "must be one of " + ", ".join(names)
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return msg[0].lower() + msg[1:] if msg else "is invalid"


def format_validation_error(exc: ValidationError, *, prefix: str = "", source: str | None = None,
                            rename: Callable[[str], str] | None = None) -> ConfigError:
    """Build a :class:`ConfigError` whose headline names the field, the value and the rule.

    Example:
        >>> from pydantic import BaseModel, ConfigDict
        >>> class M(BaseModel):
        ...     model_config = ConfigDict(extra="forbid")
        ...     n: int
        >>> try:
        ...     M.model_validate({"n": "x"})
        ... except ValidationError as e:
        ...     print(format_validation_error(e).headline)
        Got "x" for n; input should be a valid integer, unable to parse string as an integer
        >>> from typing import Literal
        >>> class S(BaseModel):
        ...     search: Literal["tpe", "grid"]
        >>> try:
        ...     S.model_validate({"search": "bohb"})
        ... except ValidationError as e:
        ...     print(format_validation_error(e, prefix="sweep").headline)
        Got "bohb" for sweep.search; must be one of tpe, grid
    """
    lines = []
    for err in exc.errors():
        field = _loc(tuple(err.get("loc", ())))
        if prefix:
            field = f"{prefix}.{field}" if field else prefix
        if rename:
            field = rename(field)
        rule = _rule(err)
        if not field or rule.startswith('got "'):  # a rule whose message names the fields and values itself
            lines.append(rule[0].upper() + rule[1:])
        elif err.get("type") == "missing":
            lines.append(f"Missing {field}; it {rule}")
        elif err.get("type") == "extra_forbidden":
            lines.append(f'Got unknown key "{field}"; it {rule}')
        elif _SECRET_LOCS & {str(x) for x in err.get("loc", ())}:  # never echo what may hold a secret
            lines.append(f"Got a bad value for {field}; {rule}")
        else:
            lines.append(f'Got "{_short(err.get("input"))}" for {field}; {rule}')
    where = f" in {source}" if source else ""
    headline = lines[0] + where
    fix = None
    if len(lines) > 1:
        fix = "also: " + "; ".join(lines[1:])
    return ConfigError(headline, fix=fix)


def _short(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
