"""Atomic files of a run directory: Ctrl-C never lands inside a writer."""

import signal

import pytest
import torch

from flashbench.models.video import encode_video, read_video
from flashbench.run.files import atomic_with, interrupts_held


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Python's own Ctrl-C handler, whatever this process inherited: a test runner started in the
    background (``cmd &`` in a script) has SIGINT ignored, and Ctrl-C would then never arrive."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, inherited)


def test_ctrl_c_during_a_video_write_arrives_once_the_whole_file_is_in_place(tmp_path):
    path = tmp_path / "v.mp4"
    video = torch.rand(6, 3, 16, 16)

    def interrupted_write(tmp):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C while the writer is open
        encode_video(tmp, video, fps=24)

    with pytest.raises(KeyboardInterrupt):
        atomic_with(path, interrupted_write)
    assert read_video(path).shape == video.shape
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]  # no temp file left
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_held_interrupts_go_to_the_handler_that_was_in_place_once(monkeypatch):
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        with interrupts_held():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            assert calls == []
        assert calls == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_no_interrupt_means_nothing_is_delivered(tmp_path):
    atomic_with(tmp_path / "a", lambda tmp: tmp.write_bytes(b"x"))
    assert (tmp_path / "a").read_bytes() == b"x"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
