"""The tiny ONNX fixture runs in ONNX Runtime and computes what it says it computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def test_tiny_onnx_runs_and_matches_numpy(tiny_onnx: Path) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(tiny_onnx))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    ids = np.array([[1, 5, 7, 0]], dtype=np.int64)
    mask = np.array([[1, 1, 1, 0]], dtype=np.int64)
    (out,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    expected = np.tanh(weights["embedding"][ids] @ weights["proj"]) * mask[..., None]
    assert out.shape == (1, 4, 32)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert np.all(out[0, 3] == 0)  # the masked position
