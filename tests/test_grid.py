"""Overrides in Hydra's grammar and the grids they span."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrunner import grid
from mrunner.errors import MrunnerError


def points(texts, multirun=True, base=None):
    return [grid.apply(base or {}, point) for point in grid.grid(texts, multirun)]


def test_sweeps_multiply_in_hydra_basic_sweeper_order():
    # Hydra's basic sweeper: itertools.product of the overrides in order, the last one varying fastest.
    expected = [{"lr": lr, "seed": s} for lr, s in itertools.product([0.1, 0.01], [0, 1, 2])]
    assert points(["lr=0.1,0.01", "seed=range(3)"]) == expected


def test_grammar_choice_range_quoting_nesting_add_delete():
    result = points(
        ["opt=choice(adam,sgd)", "+model.depth=3", "name='a, b'", "x=[1,2]", "~drop", "f=range(0,1,0.5)"],
        base={"drop": 1, "keep": 2},
    )
    assert result == [
        {"keep": 2, "opt": "adam", "model": {"depth": 3}, "name": "a, b", "x": [1, 2], "f": 0.0},
        {"keep": 2, "opt": "adam", "model": {"depth": 3}, "name": "a, b", "x": [1, 2], "f": 0.5},
        {"keep": 2, "opt": "sgd", "model": {"depth": 3}, "name": "a, b", "x": [1, 2], "f": 0.0},
        {"keep": 2, "opt": "sgd", "model": {"depth": 3}, "name": "a, b", "x": [1, 2], "f": 0.5},
    ]


def test_a_million_points_are_counted_without_being_built():
    g = grid.grid(["a=range(0,1000)", "b=range(0,1000)"], multirun=True)
    assert len(g) == 1_000_000
    assert isinstance(g.axes[0].values, range)  # lazy
    assert grid.apply({}, g[999_999]) == {"a": 999, "b": 999}
    assert grid.apply({}, g[1234]) == {"a": 1, "b": 234}


def test_sweep_without_multirun_says_to_add_m():
    with pytest.raises(MrunnerError, match=r"add -m"):
        grid.grid(["lr=0.1,0.01"], multirun=False)


def test_invalid_syntax_points_at_the_character():
    with pytest.raises(MrunnerError) as error:
        grid.grid(["lr=0.1,,2"], multirun=True)
    assert "at character 8" in str(error.value)
    assert "lr=0.1,\u2192,2" in str(error.value)


@pytest.mark.parametrize(
    "text, message",
    [("=3", "has no key"), ("lr=interval(0,1)", "interval"), ("lr=(0.1", "invalid override")],
)
def test_bad_overrides(text, message):
    with pytest.raises(MrunnerError, match=message):
        grid.grid([text], multirun=True)


def test_the_same_key_twice_is_an_error():
    with pytest.raises(MrunnerError, match="set the same key"):
        grid.grid(["lr=1", "lr=2"], multirun=True)


def test_add_refuses_an_existing_key_and_delete_a_missing_one():
    with pytest.raises(MrunnerError, match="exists already"):
        points(["+lr=1"], base={"lr": 0})
    with pytest.raises(MrunnerError, match="no key 'nope'"):
        points(["~nope"])


def test_glob_selects_among_the_options_given():
    g = grid.grid(["db=glob(m*)"], multirun=True, glob_options=lambda key: ["mysql", "mongo", "postgres"])
    assert [grid.apply({}, p)["db"] for p in g] == ["mysql", "mongo"]


texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_values_reach_a_hydra_app_exactly(value):
    """What a Hydra app receives as ``++key=value`` parses back (by Hydra's own parser) to the same value."""
    (override,) = grid.hydra_overrides({"key": value})
    parsed = grid.parse(override).value()
    if isinstance(value, str) and "${" in value:
        value = value.replace("${", "\\${")  # kept literal: OmegaConf turns \${ back into ${ in the app
    assert parsed == value


def test_keys_varied_together_are_one_dimension_and_a_union_runs_its_grids_in_turn():
    """The engine under spec files and the original's helper: a dimension of several axes, and a union."""
    lr, bs, seed = (
        grid.parameter_axis(k, v) for k, v in [("lr", [0.1, 0.01]), ("bs", [32, 64, 128]), ("seed", [0, 1])]
    )
    together = grid.Grid([(lr, bs), seed])  # zipped to the shorter: (0.1, 32), (0.01, 64)
    assert [grid.parameters(p) for p in together] == [
        {"lr": 0.1, "bs": 32, "seed": 0},
        {"lr": 0.1, "bs": 32, "seed": 1},
        {"lr": 0.01, "bs": 64, "seed": 0},
        {"lr": 0.01, "bs": 64, "seed": 1},
    ]
    union = grid.Union([grid.Grid([seed]), grid.Grid([grid.parameter_axis("x", [])]), together])
    assert len(union) == 6
    assert [grid.parameters(union[i]) for i in (0, 1, 2, -1)] == [
        {"seed": 0},
        {"seed": 1},
        {"lr": 0.1, "bs": 32, "seed": 0},
        {"lr": 0.01, "bs": 64, "seed": 1},
    ]
    assert [grid.parameters(p) for p in union] == [grid.parameters(union[i]) for i in range(6)]
    with pytest.raises(IndexError):
        union[6]


def test_a_python_grid_of_a_million_points_is_counted_without_being_built():
    big = grid.python_grid(
        [{"a": range(1000), "b": range(1000)}, {"c": [1]}],
        lambda g: [grid.parameter_axis(key, values) for key, values in g.items()],
    )
    assert len(big) == 1_000_001
    assert grid.parameters(big[999_999]) == {"a": 999, "b": 999} and grid.parameters(big[-1]) == {"c": 1}


def _typed(values):
    return [(type(value), value) for value in values] if not isinstance(values, range) else values


def _same_as_hydra(text):
    """``plain_axis`` gives what Hydra's parser gives, or leaves the override to it (which Hydra then reads:
    a float range of 1e300 values is not built here)."""
    plain = grid.plain_axis(text)
    if plain is not None:
        override = grid.parse(text)
        expected = grid.axis(override)
        axis, sweep = plain
        assert axis == expected, text
        assert _typed(axis.values) == _typed(expected.values), text
        assert sweep == override.is_sweep_override(), text
    return plain


_TOKENS = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["a", "adam", "_x", "True", "false", "NULL", "nan", "Inf", "inf_x", "range", "choice", "x-y"]),
    st.sampled_from(["01", "1_000", "1.", ".5", "1e3", "-0", "+1", "0.50", "a b", "'q'", "", "${x}", "[1]"]),
)


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(["lr", "a.b", "context.mem", "_k9", "9a", "a-b", "+a", "~a", "a@p", "db/x"]),
    tokens=st.lists(_TOKENS, min_size=1, max_size=3),
    ranged=st.booleans(),
)
def test_an_override_read_without_hydra_is_read_as_hydra_reads_it(key, tokens, ranged):
    value = f"range({','.join(tokens)})" if ranged else ",".join(tokens)
    _same_as_hydra(f"{key}={value}")


def test_the_plain_overrides_of_most_command_lines_need_no_hydra():
    for text in ["i=range(3)", "a=range(2,10,3)", "lr=0.1,0.01", "seed=0", "opt=adam,sgd", "context.max_parallel=2",
                 "a.b=-3", "x=range(-2,2)", "w=choice"]:  # fmt: skip
        assert _same_as_hydra(text) is not None, text
    for text in ["a=true", "a=null", "a=1e3", "a=01", "+a=1", "~a", "a=range(0,3,0)", "a=range(3,0,-1)", "a=1.",
                 "a=x-y", "a='q'", "a=choice(1,2)", "a=range(0,1,0.5)", "a=[1,2]", "a="]:  # fmt: skip
        assert grid.plain_axis(text) is None, text
