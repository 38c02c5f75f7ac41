"""Calibration and evaluation texts.

Users pass their own (``--eval-text FILE``, ``--calibration-text FILE``). With none given,
edgeward uses text every Python install carries: the documentation topics of CPython's
``pydoc_data.topics`` (about 465 KB of English about the language), split by topic into two
disjoint parts, so calibration never sees the evaluation text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from edgeward.errors import ConfigError

__all__ = ["Text", "calibration_text", "evaluation_text"]

_MIN_CHARS = 2000  # below this there are too few tokens to say anything about quality


@dataclass(frozen=True)
class Text:
    """A text with the name it is reported under and its digest.

    Attributes:
        name: where it came from (a path, or ``pydoc_data.topics[...]``).
        content: the text.
    """

    name: str
    content: str

    @property
    def sha256(self) -> str:
        """Digest of the UTF-8 text, recorded in reports so a run can be reproduced."""
        return hashlib.sha256(self.content.encode("utf-8")).hexdigest()


def _builtin_split() -> tuple[list[str], list[str]]:
    from pydoc_data import topics

    keys = sorted(topics.topics)
    # Every third topic (by name) is calibration; the rest is evaluation. Interleaving keeps
    # both parts about the whole language, not one half of the alphabet.
    calibration = [k for i, k in enumerate(keys) if i % 3 == 0]
    evaluation = [k for i, k in enumerate(keys) if i % 3 != 0]
    return calibration, evaluation


def _builtin(part: int, label: str) -> Text:
    from pydoc_data import topics

    cal_keys, eval_keys = _builtin_split()
    eval_content = "\n\n".join(topics.topics[k] for k in eval_keys)
    keys = eval_keys
    content = eval_content
    if part == 0:
        # Topics quote each other (``compound`` contains ``with``, ``try``...): drop every
        # calibration paragraph that also occurs in the evaluation part, so the two share
        # no text, not just no topic.
        keys = cal_keys
        paragraphs = [p for k in cal_keys for p in topics.topics[k].split("\n\n")]
        content = "\n\n".join(p for p in paragraphs if p.strip() and p not in eval_content)
    return Text(f"pydoc_data.topics ({label}: {len(keys)} of {len(topics.topics)} topics)",
                content)


def _from_file(path: Path, what: str) -> Text:
    try:
        content = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what} text file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: the {what} text is not UTF-8 ({e})") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} text ({e.strerror})") from e
    if len(content) < _MIN_CHARS:
        raise ConfigError(
            f"{path}: the {what} text has {len(content)} characters; give at least "
            f"{_MIN_CHARS} (a few pages) so the figures mean something"
        )
    return Text(str(path), content)


def evaluation_text(path: Path | None = None) -> Text:
    """The evaluation text: ``path``, or the evaluation part of the built-in text.

    Raises:
        ConfigError: the file is missing, unreadable, not UTF-8 or too short.
    """
    return _from_file(path, "evaluation") if path else _builtin(1, "evaluation part")


def calibration_text(path: Path | None = None) -> Text:
    """The calibration text: ``path``, or the calibration part of the built-in text.

    Raises:
        ConfigError: the file is missing, unreadable, not UTF-8 or too short.
    """
    return _from_file(path, "calibration") if path else _builtin(0, "calibration part")
