"""Compression: quantize, prune and evaluate a model for a hardware profile.

GGUF models go through llama.cpp's own quantizer; ONNX models through optimum and ONNX Runtime.
Every candidate's quality is measured against the source, its memory need is predicted for a
profile, and the auto-recipe picks the least-loss candidate that fits.

Not implemented yet: the GGUF and ONNX paths are the subject of later issues.
May import: :mod:`edgeward.hardware_profiles`, :mod:`edgeward.provenance`,
:mod:`edgeward.runtimes`, :mod:`edgeward.errors`.
"""

__all__: list[str] = []
