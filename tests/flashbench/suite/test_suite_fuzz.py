"""Fuzzing the suite loader: any TOML document is a valid suite or one clear ValueError, never a traceback.

Two sources of documents: random ones (sections and keys drawn mostly from the schema's own
names, so that they get past the first check) and random mutations of the shipped suites
(set, delete, duplicate or add a value anywhere in them). Both are written with tomli_w, so
every document is valid TOML and the validator, not the TOML parser, is what is exercised.
"""

import copy
import tomllib

import tomli_w
from hypothesis import assume, given
from hypothesis import strategies as st

from flashbench.settings import settings, steppers, windowings
from flashbench.suite.document import SECTIONS, SUITES_DIR, Suite, parse_suite, shipped_suites
from flashbench.suite.schema import section_keys

SECTION_KEYS = {
    section: tuple(section_keys(record, section))
    for section, record in SECTIONS.items()
    if section != "settings"
}
SETTING_KEYS = tuple(section_keys(SECTIONS["settings"], "settings"))

PATH = "fuzz.toml"
SHIPPED = {
    name: tomllib.loads((SUITES_DIR / f"{name}.toml").read_text()) for name in shipped_suites()
}
KEYS = sorted(
    {*SECTION_KEYS, "settings", *SETTING_KEYS, *(k for ks in SECTION_KEYS.values() for k in ks)}
)
WORDS = [
    *settings.names(),
    *steppers.names(),
    *windowings.names(),
    *["toy", "reference", "test", "train", "self", "cross", "2s", "16f", "0.5s", "expression"],
    *["psnr", "ssim", "fvd", "speed", "ground_truth", "baseline", "{window}", "{interval}"],
    *[".tmp-1-x", "../x", "a/b", "x__y", "reference_model/weights/dit_small.pt", "~nobody/x"],
    *["stepper.interval", "windowing.window", "stepper.order"],
]
LEAVES = (
    st.integers(-(2**70), 2**70)
    | st.integers(-3, 40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.text(max_size=20)
    | st.sampled_from(WORDS)
)
KEY = st.sampled_from(KEYS) | st.text(max_size=8)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEY, inner, max_size=4),
    max_leaves=10,
)


def check(text: str) -> Suite | None:
    """The property: a Suite whose baseline is one of its settings, or a one-line ValueError naming the file."""
    try:
        suite = parse_suite(text, PATH)
    except ValueError as err:
        message = str(err)
        assert message.startswith(f"{PATH}: "), message
        assert "\n" not in message.split("not valid TOML")[0], message
        return None
    assert suite.settings and suite.baseline in {s.name for s in suite.settings}
    return suite


def dump(document: dict) -> str:
    try:
        return tomli_w.dumps(document)
    except (TypeError, ValueError):  # e.g. a nested value tomli_w cannot write
        assume(False)
        raise


@given(st.dictionaries(KEY, VALUES, max_size=6))
def test_random_documents_are_a_suite_or_a_clear_error(document):
    check(dump(document))


@st.composite
def schema_shaped(draw):
    """A minimal valid suite whose sections get random values under the schema's keys."""
    document = {"suite": {"version": "1"}, "settings": [{"use": "baseline"}]}
    for section, keys in SECTION_KEYS.items():
        chosen = draw(st.lists(st.sampled_from(keys), max_size=3, unique=True))
        document.setdefault(section, {}).update({key: draw(VALUES) for key in chosen})
    entries = draw(st.lists(st.dictionaries(st.sampled_from(SETTING_KEYS), VALUES), max_size=3))
    document["settings"] += entries
    return document


@given(schema_shaped())
def test_schema_shaped_documents_are_a_suite_or_a_clear_error(document):
    check(dump(document))


def _paths(value, prefix=()):
    """Every path (keys and indices) to a value inside ``value``."""
    children = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in children:
        yield (*prefix, key)
        if isinstance(child, dict | list):
            yield from _paths(child, (*prefix, key))


@st.composite
def mutated_shipped_suites(draw):
    document = copy.deepcopy(SHIPPED[draw(st.sampled_from(sorted(SHIPPED)))])
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(document))
        if not paths:
            break
        *parent_path, key = draw(st.sampled_from(paths))
        parent = document
        for step in parent_path:
            parent = parent[step]
        action = draw(st.sampled_from(["set", "delete", "duplicate", "add"]))
        if action == "set":
            parent[key] = draw(VALUES)
        elif action == "delete":
            del parent[key]
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif action == "add" and isinstance(parent[key], dict):
            parent[key][draw(KEY)] = draw(VALUES)
    return document


@given(mutated_shipped_suites())
def test_mutations_of_the_shipped_suites_are_a_suite_or_a_clear_error(document):
    check(dump(document))


def test_the_shipped_suites_rewritten_by_tomli_w_still_load():
    """The mutation test starts from valid suites (nfeb_ablation needs user-trained checkpoints)."""
    loaded = {name: check(dump(document)) for name, document in SHIPPED.items()}
    assert [name for name, suite in loaded.items() if suite is None] == ["nfeb_ablation"]
