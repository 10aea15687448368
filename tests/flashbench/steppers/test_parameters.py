"""Bad parameters fail early with a ValueError naming the argument."""

import pytest

from flashbench.settings import steppers

BAD = [
    ("alp", {"interval": 0}, "interval"),
    ("alp", {"interval": 2.5}, "interval"),
    ("alp", {"order": -1}, "order"),
    ("alp", {"warmup": 0}, "warmup"),
    ("alp", {"alpha": float("nan")}, "alpha"),
    ("alp", {"threshold": -0.1}, "threshold"),
    ("alp", {"threshold": float("nan")}, "threshold"),
    ("alp", {"spacing": "time"}, "spacing"),
    ("alp", {"form": "lagrange"}, "form"),
    ("alp", {"level": "block"}, "level"),
    ("alp", {"groups": 0}, "groups"),
    ("alp", {"groups": 2, "level": "output"}, "forecasts the velocity"),
    ("taylorseer", {"cache_dtype": "float8"}, "cache_dtype"),
    ("alp", {"reading": "variance"}, "reading"),
    ("alp", {"K": 5}, "unknown parameter 'K' of stepper 'alp'"),
    ("alp", {"intervall": 5}, "unknown parameter 'intervall' .* did you mean 'interval'"),
    ("alp", {"order": 10**6}, r"order=1000000 must be an integer in \[0, 8\]"),
    ("alp", {"interval": 10**12}, "interval"),
    ("taylorseer", {"interval": 0}, "interval"),
    ("taylorseer", {"order": -2}, "order"),
    ("teacache", {"threshold": -1.0}, "threshold"),
    ("teacache", {"indicator": "modulation"}, "indicator"),
    ("teacache", {"coefficients": ()}, "coefficients"),
    ("teacache", {"calibration": "/nonexistent/teacache.json"}, "calibrate teacache"),
    ("fora", {"interval": 0}, "interval"),
    ("first_block_cache", {"threshold": -0.05}, "threshold"),
    ("magcache", {"threshold": -0.2}, "threshold"),
    ("magcache", {"max_skip": -1}, "max_skip"),
    ("magcache", {"retention": 1.5}, "retention"),
    ("magcache", {"ratios": (1.0, -1.0)}, "ratios"),
    ("fewer_steps", {"steps": 0}, "steps"),
    ("fewer_steps", {"steps": 10**12}, r"steps=1000000000000 must be an integer in \[1, 10000\]"),
    ("fewer_steps", {"shift": -5.0}, "shift"),
    ("dpmpp_2m", {"steps": 0}, "steps"),
]


@pytest.mark.parametrize(("name", "kwargs", "word"), BAD)
def test_bad_parameters_raise_a_clear_value_error(name, kwargs, word):
    with pytest.raises(ValueError, match=word):
        steppers.build(name, **kwargs)


def test_unknown_windowing_parameter_suggests_the_close_one():
    from flashbench.settings import windowings

    with pytest.raises(ValueError, match=r"unknown parameter 'overlapp' .*did you mean 'overlap'"):
        windowings.build("sliding", overlapp=2)
