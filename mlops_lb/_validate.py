"""Field checks with readable errors: the one validation helper module of mlops_lb.

Every check takes the dotted field path first and raises :class:`mlops_lb.errors.SpecError` whose message names
what was expected and what arrived, in the attrs style: ``health_check.interval_s must be between 5 and 300
(got 2)``; an unknown key also gets a "did you mean". Checks return the value normalised (``int``, ``float``,
``str``), so a constructor reads ``self.port = check_int("port", port, 1, 65535)``.

Example::

    from mlops_lb._validate import check_int, check_choice
    check_int("capacity.max", 3, 1, 100)                       # 3
    check_choice("arrival", "poison", ("uniform", "poisson"))  # SpecError: arrival must be one of uniform,
                                                               # poisson (got 'poison'; did you mean 'poisson'?)
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

from .errors import SpecError

__all__ = [
    "check_bool",
    "check_choice",
    "check_cidr",
    "check_int",
    "check_num",
    "check_opt_str",
    "check_range",
    "check_str",
    "check_str_tuple",
    "did_you_mean",
    "fail",
    "fields_from_dict",
    "show",
    "to_plain_dict",
    "unknown_field",
]


def fail(path: str, msg: str) -> NoReturn:
    """Raise ``SpecError(path, msg)``: the message reads ``<path> <msg>``."""
    raise SpecError(path, msg)


def show(value: Any, limit: int = 60) -> str:
    """``repr`` for error messages: short, and never failing (a 5000-digit int cannot even be printed)."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _n(x: float) -> str:
    # Bounds read as written: 1000000, not 1e+06; 0.5 stays 0.5.
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def did_you_mean(got: Any, allowed: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` when ``got`` is close to one of ``allowed``, else ``""``."""
    close = difflib.get_close_matches(str(got), list(allowed), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_int(path: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """An integer within ``[lo, hi]`` (either bound optional)."""
    # bool is an int subclass: `interval_s: true` in YAML is a typo, not 1. numpy integers are welcome, stored as int
    # (YAML and JSON cannot write them).
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(path, f"must be an integer (got {show(value)})")
    check_range(path, value, lo, hi)
    return int(value)


def check_num(
    path: str, value: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False
) -> float:
    """A finite real number within ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(path, f"must be a number (got {show(value)})")
    if value != value or value in (float("inf"), float("-inf")):
        fail(path, f"must be a finite number (got {show(value)})")
    if lo_open and lo is not None and (float(value) <= lo or (hi is not None and float(value) > hi)):
        fail(
            path,
            f"must be > {lo:g}" + (f" and <= {hi:g}" if hi is not None else "") + f" (got {show(value)})",
        )
    check_range(path, value, lo, hi)
    return float(value)


def check_range(path: str, value: Any, lo: float | None, hi: float | None) -> None:
    """``lo <= value <= hi`` (either bound optional)."""
    if lo is not None and hi is not None and not lo <= value <= hi:
        fail(path, f"must be between {_n(lo)} and {_n(hi)} (got {show(value)})")
    if lo is not None and value < lo:
        fail(path, f"must be >= {_n(lo)} (got {show(value)})")
    if hi is not None and value > hi:
        fail(path, f"must be <= {_n(hi)} (got {show(value)})")


def check_str(path: str, value: Any, *, empty: bool = False) -> str:
    """A string (non-blank unless ``empty``)."""
    if not isinstance(value, str):
        fail(path, f"must be a string (got {show(value)})")
    if not empty and not value.strip():
        fail(path, "must not be empty")
    return value


def check_opt_str(path: str, value: Any) -> str | None:
    """None or a non-blank string."""
    return None if value is None else check_str(path, value)


def check_bool(path: str, value: Any) -> bool:
    """``True`` or ``False`` (not 0/1, not "yes")."""
    if not isinstance(value, bool):
        fail(path, f"must be true or false (got {show(value)})")
    return value


def check_choice(path: str, value: Any, allowed: Iterable[str]) -> str:
    """One of ``allowed``; a near miss gets a "did you mean"."""
    options = tuple(allowed)
    if not isinstance(value, str) or value not in options:
        fail(path, f"must be one of {', '.join(options)} (got {show(value)}{did_you_mean(value, options)})")
    return value


def check_cidr(path: str, value: Any) -> str:
    """A CIDR block without host bits, normalised (``10.0.0.0/16``)."""
    check_str(path, value)
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        fail(path, f"must be a CIDR block such as 203.0.113.0/24, without host bits (got {show(value)})")


def check_str_tuple(path: str, value: Any) -> tuple[str, ...]:
    """A list or tuple of non-blank strings, as a tuple."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        fail(path, f"must be a list of strings (got {show(value)})")
    return tuple(check_str(f"{path}[{i}]", v) for i, v in enumerate(value))


def unknown_field(path: str, key: Any, names: Iterable[str]) -> NoReturn:
    """Raise for a key that is not a field of ``path``, naming the closest field or all of them."""
    names = sorted(names)
    close = difflib.get_close_matches(str(key), names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(names)})"
    fail(f"{path}.{key}" if path else str(key), f"is not a known field{hint}")


# --------------------------------------------------------------------------- dict round trip of config dataclasses
# The spec's parts, the load profiles and the load settings all go to JSON/YAML and back; these two functions are
# that round trip, once: lists in the file are tuples in the object, unknown keys get a "did you mean".


def to_plain_dict(obj: Any) -> dict[str, Any]:
    """The fields of dataclass ``obj`` as JSON/YAML-ready builtins: nested objects with ``to_dict`` through it,
    tuples as lists, mappings as dicts.

    Example::

        to_plain_dict(CapacitySpec(min=1, max=4))   # {'min': 1, 'desired': 1, 'max': 4, 'warm_pool': None}
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v) and hasattr(v, "to_dict"):
            v = v.to_dict()
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, Mapping):
            v = dict(v)
        out[f.name] = v
    return out


def fields_from_dict(
    cls: type,
    data: Any,
    path: str,
    *,
    nested: Callable[[str, Any, str], Any] | None = None,
    ignore_unknown: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for dataclass ``cls`` from ``data``: a mapping of its field names (unknown ones refused
    with a suggestion unless ``ignore_unknown``), lists made tuples, every field without a default present.
    ``nested(name, value, dotted_path)`` may rebuild a field's value (a nested part) first.

    Example::

        CapacitySpec(**fields_from_dict(CapacitySpec, {"max": 4}, "capacity"))
        fields_from_dict(CapacitySpec, {"mx": 4}, "capacity")   # SpecError: capacity.mx is not a known field
                                                                 # (did you mean 'max'?)
    """
    if not isinstance(data, Mapping):
        fail(path or "spec", f"must be a mapping (got {show(data)})")
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            if ignore_unknown:
                continue
            unknown_field(path, key, names)
        where = f"{path}.{key}" if path else str(key)
        if nested is not None:
            value = nested(key, value, where)
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    for name, f in names.items():
        if (
            name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            fail(f"{path}.{name}" if path else name, "is required")
    return kwargs
