"""mlops_lb._validate: one set of field checks whose errors name the field, what was expected and what arrived."""

from __future__ import annotations

import dataclasses

import pytest

from mlops_lb._validate import (
    check_bool,
    check_choice,
    check_int,
    check_num,
    check_str,
    fields_from_dict,
    to_plain_dict,
    unknown_field,
)
from mlops_lb.autoscaling import TargetTrackingPolicy
from mlops_lb.errors import SpecError


def _msg(fn, *args, **kw) -> tuple[str | None, str]:
    with pytest.raises(SpecError) as err:
        fn(*args, **kw)
    return err.value.field, str(err.value)


class TestMessages:
    def test_integer_checks(self):
        """Type first, then range; bool is no integer; bounds print as written (1000000, not 1e+06)."""
        assert check_int("a.b", 3, 1, 5) == 3
        assert _msg(check_int, "a.b", True, 1, 5) == ("a.b", "a.b must be an integer (got True)")
        assert _msg(check_int, "a.b", 0, 1, 1_000_000)[1] == "a.b must be between 1 and 1000000 (got 0)"
        assert _msg(check_int, "n", 0, 1_000_000, None)[1] == "n must be >= 1000000 (got 0)"

    def test_number_checks(self):
        """Finite numbers only; an open lower bound reads '> lo and <= hi'."""
        assert check_num("x", 2, 0, 3) == 2.0
        assert _msg(check_num, "x", float("nan"))[1] == "x must be a finite number (got nan)"
        assert _msg(check_num, "x", "1")[1] == "x must be a number (got '1')"
        assert _msg(check_num, "x", 0, 0, 1, lo_open=True)[1] == "x must be > 0 and <= 1 (got 0)"
        assert _msg(check_num, "x", 2, 0, 1, lo_open=True)[1] == "x must be > 0 and <= 1 (got 2)"
        assert _msg(check_num, "x", 2.5, 0, 1)[1] == "x must be between 0 and 1 (got 2.5)"

    def test_choices_and_fields_suggest_the_near_miss(self):
        """A near miss gets 'did you mean'; an unknown field lists the allowed ones when nothing is close."""
        assert _msg(check_choice, "arrival", "poison", ("uniform", "poisson"))[1] == (
            "arrival must be one of uniform, poisson (got 'poison'; did you mean 'poisson'?)"
        )
        assert _msg(unknown_field, "capacity", "maxx", ["min", "max"])[1] == (
            "capacity.maxx is not a known field (did you mean 'max'?)"
        )
        assert "allowed: max, min" in _msg(unknown_field, "capacity", "zzz", ["min", "max"])[1]

    def test_strings_and_bools(self):
        """Strings must not be blank; bools must be real bools."""
        assert _msg(check_str, "name", "  ")[1] == "name must not be empty"
        assert _msg(check_bool, "flag", 1)[1] == "flag must be true or false (got 1)"


class TestUsers:
    @pytest.mark.parametrize(
        ("kw", "field", "text"),
        [
            ({"target_value": 0}, "policy.target_value", "must be > 0 (got 0)"),
            (
                {"target_value": 10, "scale_out_periods": 0},
                "policy.scale_out_periods",
                "must be >= 1 (got 0)",
            ),
            (
                {"target_value": 10, "scale_in_ratio": 1.5},
                "policy.scale_in_ratio",
                "must be > 0 and <= 1 (got 1.5)",
            ),
            ({"target_value": 10, "warmup_periods": -1}, "policy.warmup_periods", "must be >= 0 (got -1)"),
            (
                {"target_value": 10, "scale_in_enabled": "no"},
                "policy.scale_in_enabled",
                "must be true or false",
            ),
        ],
    )
    def test_autoscaling_policy(self, kw, field, text):
        """The target-tracking policy validates through the same helpers, with its dotted field."""
        got_field, message = _msg(TargetTrackingPolicy, **kw)
        assert got_field == field and text in message

    def test_run_load_keywords(self):
        """run_load's keyword checks use them too: the field and the range are named before anything starts."""
        from mlops_lb.load import constant, run_load

        with pytest.raises(SpecError, match=r"connections must be between 1 and 100000 \(got 0\)"):
            run_load("http://127.0.0.1:9/x", constant(1, 1), [b"{}"], connections=0, progress=False)


@dataclasses.dataclass(frozen=True)
class _Conf:
    name: str
    sizes: tuple[int, ...] = ()
    extra: dict[str, str] = dataclasses.field(default_factory=dict)


class TestDictRoundTrip:
    def test_a_dataclass_goes_to_builtins_and_back(self):
        """to_plain_dict gives lists and dicts; fields_from_dict turns the lists back into tuples."""
        conf = _Conf("a", (1, 2), {"k": "v"})
        plain = to_plain_dict(conf)
        assert plain == {"name": "a", "sizes": [1, 2], "extra": {"k": "v"}}
        assert _Conf(**fields_from_dict(_Conf, plain, "conf")) == conf

    def test_unknown_missing_and_non_mapping_are_named(self):
        """A typo gets a suggestion with its dotted path; a required field and a non-mapping are named."""
        with pytest.raises(SpecError, match=r"conf\.sizse is not a known field \(did you mean 'sizes'\?\)"):
            fields_from_dict(_Conf, {"name": "a", "sizse": []}, "conf")
        with pytest.raises(SpecError, match=r"conf\.name is required"):
            fields_from_dict(_Conf, {}, "conf")
        with pytest.raises(SpecError, match="conf must be a mapping"):
            fields_from_dict(_Conf, ["a"], "conf")
        assert fields_from_dict(_Conf, {"name": "a", "url": "x"}, "conf", ignore_unknown=True) == {
            "name": "a"
        }
