"""Word segmentation of letters whose spaces were removed ("saythatyouhatetrump").

Obfuscation by spacing ("S a y  t h a t ...") decodes to one run of letters; the rules and the
classifier work on words, so the run is split back into words by the most probable sequence
under a unigram model (Viterbi over word costs ``-log p(word)``), as word-segmentation tools
do. The word frequencies (``model/words.txt``: ``word<TAB>count`` lines, most frequent first)
are counted by :mod:`edgeward.safety.train` from the train split, like the classifier.
"""

from __future__ import annotations

import functools
import math

from edgeward.safety._classifier import model_dir

__all__ = ["WORDS_FILE", "segment", "word_costs"]

WORDS_FILE = "words.txt"
_MAX_WORD = 24  # letters: longer candidates are not looked up
_MAX_RUN = 400  # letters segmented at most (longer runs keep their tail as it is)


@functools.cache
def word_costs() -> tuple[dict[str, float], float]:
    """``{word: -log p(word)}`` and the cost of one letter that starts no known word."""
    counts: dict[str, int] = {}
    try:
        text = (model_dir() / WORDS_FILE).read_text(encoding="utf-8")
    except OSError:
        text = ""
    for line in text.splitlines():
        word, _, n = line.partition("\t")
        if word and n.isdigit():
            counts[word] = int(n)
    total = sum(counts.values()) or 1
    costs = {w: math.log(total / n) for w, n in counts.items()}
    return costs, math.log(total) + 8.0  # an unknown letter costs more than any known word


def segment(letters: str) -> str:
    """``letters`` with spaces between the most probable words (case kept).

    Without a word list, or when nothing better than letter-by-letter is found, the letters are
    returned as they are.
    """
    costs, unknown = word_costs()
    if not costs or len(letters) < 2:
        return letters
    head, tail = letters[:_MAX_RUN], letters[_MAX_RUN:]
    lower = head.lower()
    n = len(lower)
    best = [0.0] + [math.inf] * n
    back = [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(max(0, end - _MAX_WORD), end):
            piece = lower[start:end]
            cost = costs.get(piece)
            if cost is None:
                if end - start > 1:
                    continue
                cost = unknown
            total = best[start] + cost
            if total < best[end]:
                best[end], back[end] = total, start
    words = []
    end = n
    while end > 0:
        words.append(head[back[end]:end])
        end = back[end]
    return " ".join(reversed(words)) + tail
