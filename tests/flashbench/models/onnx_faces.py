"""Tiny stand-ins for FlashPortrait's ``face_det.onnx`` and ``face_landmark.onnx``.

Both report constant outputs with the released files' input/output counts and shapes, optionally
gated on the input: the outputs' scores/probability are zeroed when the input's maximum is not
above ``gate``, so a black frame (or crop) shows no face.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the face landmark tests write ONNX models with onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

# Detector anchors per stride on its 272 x 160 (h x w) input: rows x columns.
GRID = {8: (34, 20), 16: (17, 10), 32: (9, 5)}
NO_GATE = -1e9


def detector_outputs(
    faces: Sequence[tuple[int, int, int, float, Sequence[int]]],
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Raw outputs (``[1, N, 1]`` scores, ``[1, N, 32]`` bin logits per stride) reporting each face
    ``(stride, row, col, score, (left, top, right, bottom) in whole strides)`` at that anchor."""
    scores = {s: np.zeros((1, rows * cols, 1), np.float32) for s, (rows, cols) in GRID.items()}
    logits = {s: np.zeros((1, rows * cols, 4, 8), np.float32) for s, (rows, cols) in GRID.items()}
    for stride, row, col, score, sides in faces:
        anchor = row * GRID[stride][1] + col
        scores[stride][0, anchor, 0] = score
        logits[stride][0, anchor] = -40.0
        logits[stride][0, anchor, range(4), list(sides)] = 40.0  # all mass on one bin per side
    return list(scores.values()), [v.reshape(1, -1, 32) for v in logits.values()]


def _write(
    path: Path,
    input_shape: Sequence[int],
    outputs: dict[str, np.ndarray],
    gated: Sequence[str],
    gate: float,
) -> Path:
    nodes = [
        helper.make_node("ReduceMax", ["image"], ["peak"], keepdims=0),
        helper.make_node("Greater", ["peak", "threshold"], ["lit"]),
        helper.make_node("Cast", ["lit"], ["on"], to=TensorProto.FLOAT),
    ]
    initializers = [numpy_helper.from_array(np.array(gate, np.float32), "threshold")]
    for name, value in outputs.items():
        constant = f"{name}_constant" if name in gated else name
        tensor = numpy_helper.from_array(np.asarray(value, np.float32), constant)
        nodes.append(helper.make_node("Constant", [], [constant], value=tensor))
        if name in gated:
            nodes.append(helper.make_node("Mul", [constant, "on"], [name]))
    graph = helper.make_graph(
        nodes,
        "fake",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(input_shape))],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, list(np.shape(value)))
            for name, value in outputs.items()
        ],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_detector(
    path: Path,
    faces: Sequence[tuple[int, int, int, float, Sequence[int]]],
    gate: float = NO_GATE,
    input_shape: Sequence[int] = (1, 3, 272, 160),
    num_outputs: int = 6,
) -> Path:
    """A detector reporting ``faces`` (see detector_outputs) whenever its input peaks above gate."""
    scores, boxes = detector_outputs(faces)
    outputs = {f"score_{s}": v for s, v in zip(GRID, scores, strict=True)}
    outputs |= {f"boxes_{s}": v for s, v in zip(GRID, boxes, strict=True)}
    outputs = dict(list(outputs.items())[:num_outputs])
    return _write(path, input_shape, outputs, [n for n in outputs if n.startswith("score")], gate)


def write_landmark_net(
    path: Path,
    points: np.ndarray,
    euler: Sequence[float] = (0.0, 0.0, 0.0),
    prob: float = 1.0,
    gate: float = NO_GATE,
    input_shape: Sequence[int] = (1, 3, 128, 128),
) -> Path:
    """A landmark net reporting ``points`` (``[K, 2]`` in crop units: x/128, y/128) as all x then
    all y, the Euler angles (radians) and ``prob``, zeroed unless its input peaks above gate."""
    outputs = {
        "landmarks": np.concatenate([points[:, 0], points[:, 1]])[None],
        "euler": np.asarray(euler, np.float32)[None],
        "prob": np.array([[prob]], np.float32),
    }
    return _write(path, input_shape, outputs, ["prob"], gate)
