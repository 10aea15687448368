"""The cache_dit stepper refuses any cache-dit but the one whose private context manager it reads."""

import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from flashbench.steppers.cache_dit import CACHE_DIT_VERSION, check_cache_dit_version

ROOT = Path(__file__).resolve().parents[3]


def test_another_cache_dit_release_is_refused_naming_both_versions() -> None:
    with pytest.raises(ValueError) as error:
        check_cache_dit_version("1.6.0")
    message = str(error.value)
    assert (
        f"cache-dit=={CACHE_DIT_VERSION}" in message and "cache-dit 1.6.0 is installed" in message
    )
    assert (
        "_cached_context_manager" in message
        and f"pip install 'cache-dit=={CACHE_DIT_VERSION}'" in message
    )


def test_the_pinned_release_passes() -> None:
    check_cache_dit_version(CACHE_DIT_VERSION)


def test_pyproject_pins_the_release_the_stepper_checks() -> None:
    wan = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "wan"
    ]
    assert f"cache-dit=={CACHE_DIT_VERSION}" in wan


def test_the_installed_cache_dit_is_the_checked_one() -> None:
    pytest.importorskip("cache_dit", reason="pip install 'flashbench[wan]'")
    from flashbench.steppers.cache_dit import import_cache_dit

    assert metadata.version("cache-dit") == CACHE_DIT_VERSION
    import_cache_dit()
