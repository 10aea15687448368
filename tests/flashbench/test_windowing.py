import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flashbench.windowing import Sliding


@st.composite
def slidings(draw):
    window = draw(st.integers(1, 12))
    return Sliding(
        window=window,
        overlap=draw(st.integers(0, window - 1)),
        weighting=draw(st.sampled_from(["linear", "uniform"])),
        shift=draw(st.integers(0, 5)),
    )


@given(windowing=slidings(), frames=st.integers(1, 60), step=st.integers(0, 40))
def test_weights_are_a_partition_of_unity_on_every_frame(windowing, frames, step):
    total = torch.zeros(frames, dtype=torch.float64)
    for (start, stop), w in zip(
        windowing.windows(frames, step), windowing.weights(frames, step), strict=True
    ):
        assert w.shape == (stop - start,)
        assert (w >= 0).all()
        total[start:stop] += w
    torch.testing.assert_close(total, torch.ones(frames, dtype=torch.float64), atol=1e-12, rtol=0)


@given(windowing=slidings(), frames=st.integers(1, 60), step=st.integers(0, 40))
def test_windows_cover_every_frame_and_stay_in_range(windowing, frames, step):
    covered = torch.zeros(frames, dtype=torch.bool)
    for start, stop in windowing.windows(frames, step):
        assert 0 <= start < stop <= frames
        assert stop - start == min(windowing.window, frames)
        covered[start:stop] = True
    assert covered.all()


def test_linear_blend_ramps_j_over_l_minus_one_against_previous_window():
    windowing = Sliding(window=6, overlap=3)
    (w0, w1, _), windows = windowing.weights(12, step=1), windowing.windows(12, 1)
    assert windows == [(0, 6), (3, 9), (6, 12)]
    torch.testing.assert_close(w1[:3], torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(w0[3:], torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))


def test_linear_blend_at_step_zero_lets_the_later_window_overwrite():
    w0, w1 = Sliding(window=6, overlap=3).weights(9, step=0)
    assert w0[3:].eq(0).all() and w1.eq(1).all()


def test_last_window_is_reanchored_to_the_end():
    assert Sliding(window=5, overlap=1).windows(11, 0)[-1] == (6, 11)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"window": 16, "overlap": 16}, "overlap=16 must be smaller than window=16"),
        ({"window": 0}, "window"),
        ({"overlap": -1}, "overlap"),
        ({"weighting": "cosine"}, "weighting"),
        ({"shift": -2}, "shift"),
    ],
)
def test_bad_windowing_arguments_name_the_argument(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Sliding(**kwargs)
