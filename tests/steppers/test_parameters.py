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
    ("alp", {"reading": "variance"}, "reading"),
    ("alp", {"K": 5}, "unexpected keyword"),
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
    ("fewer_steps", {"shift": -5.0}, "shift"),
    ("dpmpp_2m", {"steps": 0}, "steps"),
]


@pytest.mark.parametrize(("name", "kwargs", "word"), BAD)
def test_bad_parameters_raise_a_clear_value_error(name, kwargs, word):
    with pytest.raises(ValueError, match=word):
        steppers.build(name, **kwargs)
