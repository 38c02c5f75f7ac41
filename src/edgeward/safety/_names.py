"""Person names: lexicon priors, context, shape and a small learned token model.

A capitalised word is weak evidence of a name, and so is a word in a name list: "Will", "May",
"Grant" and "Young" are names and ordinary words. Each candidate token is scored by a logistic
model over features that combine

- the **lexicons**, as frequency buckets: US births with the first name (SSA, 1880-2023), the
  surname's Census rank, and how often the word occurs in ordinary prose, and how often in lower
  case there (books and Wikipedia text);
- **shape and position**: title case, all caps, an initial, the start of a sentence, and the
  case of the whole text (in lower-case or all-caps text shape says nothing, so the lexicon
  carries more weight);
- **context**: the words and shapes either side ("Dr.", "patient", "my name is", "son of", a
  comma-separated list of people), the punctuation around the token, and whether the same word
  occurs in lower case elsewhere in the text;
- the word's **last three letters** (name endings of many languages: -son, -ova, -ski, -ez).

Tokens scored above the model's threshold are names; adjacent name tokens, with particles
("van der", "de la", "bin") and initials between them, make one span. The model and the lexicon
table are fitted by ``python -m edgeward.safety.train_names`` on the PII rows' train split; the
record (``model/names/names.json``) names the data digests and every parameter. Nothing of the
data files themselves ships: the table holds frequency buckets per word.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from edgeward.errors import ConfigError
from edgeward.safety._scan import Scan

__all__ = ["Doc", "NameModel", "Token", "default_name_model", "find_names", "name_features",
           "tokens"]

MODEL_DIR = Path(__file__).parent / "model" / "names"
LEXICON_FILE = "lexicon.tsv.gz"
MODEL_FILE = "names.json"
PARTICLES = frozenset({
    "van", "von", "der", "den", "de", "del", "della", "di", "da", "dos", "das", "du", "la", "le",
    "bin", "bint", "ibn", "al", "el", "ter", "ten", "mac", "st", "y", "zu", "af", "av"})
# Words that end an organisation's name ("Davis, Reynolds and Williamson Orchestra") and
# places that are capitalised like names: features, not rules.
ORG_WORDS = frozenset([
    "inc", "llc", "ltd", "plc", "gmbh", "corp", "corporation", "company", "co", "group",
    "orchestra", "band", "choir", "university", "college", "school", "academy", "hospital",
    "clinic", "bank", "institute", "foundation", "association", "society", "council", "department",
    "ministry", "agency", "club", "team", "fc", "united", "records", "studios", "studio", "press",
    "news", "times", "airlines", "airways", "motors", "labs", "lab", "analytics", "research",
    "technologies", "technology", "systems", "solutions", "services", "partners", "holdings",
    "church", "cathedral", "museum", "center", "centre", "library", "party", "union", "committee",
    "trust", "capital", "media", "consulting", "industries", "enterprises", "brothers", "bros",
    "associates", "pharmacy", "pharmaceuticals", "health", "medical", "insurance", "software",
    "games", "entertainment", "network", "networks", "communications", "electric", "energy"])
PLACES = frozenset([
    "afghanistan", "albania", "algeria", "andorra", "angola", "argentina", "armenia", "australia",
    "austria", "azerbaijan", "bahamas", "bahrain", "bangladesh", "barbados", "belarus", "belgium",
    "belize", "benin", "bhutan", "bolivia", "bosnia", "botswana", "brazil", "brunei", "bulgaria",
    "burkina", "burundi", "cambodia", "cameroon", "canada", "chad", "chile", "china", "colombia",
    "comoros", "congo", "croatia", "cuba", "cyprus", "czechia", "denmark", "djibouti", "dominica",
    "ecuador", "egypt", "eritrea", "estonia", "eswatini", "ethiopia", "fiji", "finland", "france",
    "gabon", "gambia", "georgia", "germany", "ghana", "greece", "grenada", "guatemala", "guinea",
    "guyana", "haiti", "honduras", "hungary", "iceland", "india", "indonesia", "iran", "iraq",
    "ireland", "israel", "italy", "jamaica", "japan", "jordan", "kazakhstan", "kenya", "kiribati",
    "korea", "kosovo", "kuwait", "kyrgyzstan", "laos", "latvia", "lebanon", "lesotho", "liberia",
    "libya", "liechtenstein", "lithuania", "luxembourg", "madagascar", "malawi", "malaysia",
    "maldives", "mali", "malta", "mauritania", "mauritius", "mexico", "micronesia", "moldova",
    "monaco", "mongolia", "montenegro", "morocco", "mozambique", "myanmar", "namibia", "nauru",
    "nepal", "netherlands", "nicaragua", "niger", "nigeria", "norway", "oman", "pakistan", "palau",
    "palestine", "panama", "paraguay", "peru", "philippines", "poland", "portugal", "qatar",
    "romania", "russia", "rwanda", "samoa", "senegal", "serbia", "seychelles", "singapore",
    "slovakia", "slovenia", "somalia", "spain", "sudan", "suriname", "sweden", "switzerland",
    "syria", "taiwan", "tajikistan", "tanzania", "thailand", "togo", "tonga", "trinidad",
    "tunisia", "turkey", "turkmenistan", "tuvalu", "uganda", "ukraine", "uruguay", "uzbekistan",
    "vanuatu", "vatican", "venezuela", "vietnam", "yemen", "zambia", "zimbabwe", "england",
    "scotland", "wales", "britain", "europe", "asia", "africa", "america", "americas",
    "antarctica", "oceania", "arctic", "atlantic", "pacific", "alabama", "alaska", "arizona",
    "arkansas", "california", "colorado", "connecticut", "delaware", "florida", "hawaii", "idaho",
    "illinois", "indiana", "iowa", "kansas", "kentucky", "louisiana", "maine", "maryland",
    "massachusetts", "michigan", "minnesota", "mississippi", "missouri", "montana", "nebraska",
    "nevada", "ohio", "oklahoma", "oregon", "pennsylvania", "tennessee", "texas", "utah",
    "vermont", "virginia", "washington", "wisconsin", "wyoming", "london", "paris", "berlin",
    "madrid", "rome", "tokyo", "beijing", "moscow", "chicago", "boston", "seattle", "toronto",
    "sydney", "dublin", "vienna", "prague", "warsaw", "lisbon", "amsterdam", "brussels",
    "stockholm", "oslo", "helsinki", "copenhagen", "athens", "istanbul", "cairo", "lagos",
    "nairobi", "delhi", "mumbai", "shanghai", "seoul", "manila", "jakarta", "bangkok", "hanoi",
    "lima", "bogota", "santiago", "havana", "montreal", "vancouver"])
_JOIN = "'’-"  # O'Brien, Jean-Luc: parts joined by these, with no space, are one token
_SENTENCE_END = ".!?\n"
_MAX_WORD = 40


@dataclass(frozen=True, slots=True)
class Token:
    """A word of the text: ``text[start:end]``; ``parts`` split at apostrophes and hyphens."""

    start: int
    end: int
    word: str
    gap_before: str  # the characters between the previous token and this one (at most 8)
    gap_after: str

    @property
    def lower(self) -> str:
        return self.word.lower()


def tokens(scan: Scan) -> list[Token]:
    """The words of ``scan.text`` (letters and digits), joined across ``'``, ``’`` and ``-``."""
    text = scan.text
    spans: list[list[int]] = []
    for s, e in zip(scan.starts.tolist(), scan.ends.tolist(), strict=True):
        if spans and s - spans[-1][1] == 1 and text[s - 1] in _JOIN:
            spans[-1][1] = e
        else:
            spans.append([s, e])
    out: list[Token] = []
    n = len(spans)
    for i, (s, e) in enumerate(spans):
        prev_end = spans[i - 1][1] if i else 0
        next_start = spans[i + 1][0] if i + 1 < n else len(text)
        out.append(Token(s, e, text[s:e], text[max(prev_end, s - 8):s],
                         text[e:min(next_start, e + 8)]))
    return out


def _shape(word: str, gap_after: str) -> str:  # noqa: PLR0911
    if not word[0].isalpha():
        return "d"
    if len(word) == 1:
        if not word.isupper():
            return "x"
        return "I" if gap_after.startswith(".") else "X"
    if word.isupper():
        return "XX"
    if word.islower():
        return "x"
    if word[0].isupper() and word[1:].islower():
        return "Xx"
    if word[0].isupper():
        return "XxX"  # McDonald, DiCaprio
    return "xX"  # iDubbbz, de'Medici


@lru_cache(maxsize=4096)
def _gap(gap: str) -> str:
    if not gap:
        return "none"
    for ch, name in (("\n", "nl"), (",", "comma"), (":", "colon"), (";", "semi"), ("(", "paren"),
                     (")", "paren"), ('"', "quote"), ("“", "quote"), ("”", "quote"), ("@", "at"),
                     ("#", "hash"), (".", "dot"), ("!", "dot"), ("?", "dot"), ("&", "and"),
                     ("/", "slash")):
        if ch in gap:
            return name
    return "space" if gap.isspace() else "other"


class NameModel:
    """The lexicon buckets and the token weights; see the module docstring."""

    def __init__(self, lexicon: Mapping[str, tuple[int, int, int, int]],
                 weights: Mapping[str, float], bias: float, threshold: float) -> None:
        self.lexicon = lexicon
        self.weights = weights
        self.bias = bias
        self.threshold = threshold
        self.cache: dict[tuple[object, ...], float] = {}  # see Doc.scores

    @classmethod
    def load(cls, directory: Path = MODEL_DIR) -> NameModel:
        """Read ``names.json`` and ``lexicon.tsv.gz`` from ``directory``.

        Raises:
            ConfigError: a file is missing or malformed.
        """
        try:
            record = json.loads((directory / MODEL_FILE).read_text(encoding="utf-8"))
            lexicon: dict[str, tuple[int, int, int, int]] = {}
            with gzip.open(directory / LEXICON_FILE, "rt", encoding="utf-8") as f:
                for line in f:
                    word, fn, sn, cw, lr = line.rstrip("\n").split("\t")
                    lexicon[word] = (int(fn), int(sn), int(cw), int(lr))
            return cls(lexicon, {str(k): float(v) for k, v in record["weights"].items()},
                       float(record["bias"]), float(record["threshold"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{directory}: the name model cannot be read ({e}); reinstall "
                              "edgeward or retrain it with python -m edgeward.safety.train_names"
                              ) from e

    def buckets(self, lower: str) -> tuple[int, int, int, int]:
        """``(first-name, surname, prose frequency, lower-case share)`` buckets of a word;
        a joined word (``jean-luc``) takes each bucket's maximum over its parts."""
        hit = self.lexicon.get(lower)
        if hit is not None:
            return hit
        if "'" in lower or "’" in lower:  # o'brien: the lists spell it obrien
            hit = self.lexicon.get(lower.replace("'", "").replace("’", ""))
            if hit is not None and (hit[0] or hit[1]):
                return hit
        parts = [p for p in lower.replace("’", "-").replace("'", "-").split("-") if len(p) > 1]
        if len(parts) < 2:
            return (0, 0, 0, 0)
        got = [self.lexicon.get(p, (0, 0, 0, 0)) for p in parts]
        return (max(g[0] for g in got), max(g[1] for g in got), min(g[2] for g in got),
                min(g[3] for g in got))

    def score(self, features: list[str]) -> float:
        """P(name) of a token with these features."""
        z = self.bias + sum(self.weights.get(f, 0.0) for f in features)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


# English function words: a text with few of them is not English, and there capitalisation
# says less (German capitalises every noun).
_ENGLISH = frozenset([
    "the", "a", "an", "and", "or", "of", "to", "in", "on", "at", "for", "with", "from", "by", "is",
    "are", "was", "were", "be", "been", "am", "i", "you", "he", "she", "it", "we", "they", "my",
    "your", "his", "her", "our", "their", "this", "that", "these", "those", "what", "who", "how",
    "why", "when", "where", "which", "not", "do", "does", "did", "have", "has", "had", "can",
    "could", "will", "would", "should", "please", "me", "him", "them", "there", "here", "if",
    "but", "so", "as"])


def _language(toks: list[Token]) -> str:
    words = [t.lower for t in toks[:200] if t.word.isalpha()]
    if len(words) < 4:
        return "short"
    share = sum(w in _ENGLISH for w in words) / len(words)
    return "en" if share >= 0.15 else "other"


def _case(text: str) -> str:
    head = text[:2000]
    letters = sum(map(str.isalpha, head))
    if not letters:
        return "mix"
    upper = sum(map(str.isupper, head)) / letters
    return "lo" if upper == 0 else ("up" if upper > 0.8 else "mix")


class Doc:
    """One text's tokens with what the features need, computed once per token."""

    def __init__(self, scan: Scan, model: NameModel) -> None:
        self.toks = tokens(scan)
        self.model = model
        self.case = _case(scan.text)
        self.lang = _language(self.toks)
        self.low = [t.word.lower() for t in self.toks]
        self._shape: list[str | None] = [None] * len(self.toks)
        self._bk: list[tuple[int, int, int, int] | None] = [None] * len(self.toks)
        self.lowered = frozenset(t.word for t in self.toks if t.word.islower())
        # a sentence end in the gap before each token
        self.brk = [("." in g or "!" in g or "?" in g or "\n" in g)
                    for g in (t.gap_before for t in self.toks)]

    # computed on demand: most tokens are neither candidates nor a candidate's neighbours
    def shape(self, i: int) -> str:
        """Token ``i``'s shape (``Xx``, ``XX``, ``x``, ``I`` for an initial, ...)."""
        got = self._shape[i]
        if got is None:
            t = self.toks[i]
            got = self._shape[i] = _shape(t.word, t.gap_after)
        return got

    def bk(self, i: int) -> tuple[int, int, int, int]:
        """Token ``i``'s lexicon buckets (:meth:`NameModel.buckets`)."""
        got = self._bk[i]
        if got is None:
            got = self._bk[i] = self.model.buckets(self.low[i])
        return got

    def start(self, i: int) -> bool:
        """Whether token ``i`` starts a sentence."""
        return i == 0 or self.brk[i]

    def candidate(self, i: int) -> bool:
        """Whether token ``i`` is scored at all: capitalised; in a name list in lower-case
        text; in mixed text, a lower-case word that is a common name and rare in prose. Words
        with digits never are."""
        w = self.toks[i].word
        if len(w) > _MAX_WORD:  # no name is this long; keeps the score cache's keys small
            return False
        if not w.isalpha() and (not w[0].isalpha() or not w.replace("'", "").replace(
                "’", "").replace("-", "").isalpha()):
            return False
        if w[0].isupper():
            return True
        fn, sn, cw, _ = self.bk(i)
        if self.case == "lo":
            return fn > 0 or sn > 0
        # lower-case names in mixed text ("talked to sarah"): a clear name, rare in prose
        return (fn >= 3 or sn >= 3) and cw <= 2

    def own(self, i: int) -> list[str]:
        """The features of token ``i`` itself (no neighbours)."""
        t, low, sh, case, lang = self.toks[i], self.low[i], self.shape(i), self.case, self.lang
        fn, sn, cw, lr = self.bk(i)
        st = int(self.start(i))
        f = [f"sh={sh}", f"fn={fn}", f"sn={sn}", f"cw={cw}", f"lr={lr}", f"sh{sh}|fn{fn}",
             f"sh{sh}|sn{sn}", f"sh{sh}|cw{cw}", f"fn{fn}|sn{sn}", f"cw{cw}|lr{lr}",
             f"st{st}|{sh}", f"st{st}|cw{cw}", f"case={case}", f"{case}|fn{fn}",
             f"{case}|sn{sn}", f"{case}|cw{cw}", f"gp={_gap(t.gap_before)}",
             f"gn={_gap(t.gap_after)}", f"len={min(len(low), 9)}",
             f"lang={lang}|sh{sh}|lex{int(fn + sn > 0)}", f"lang={lang}|st{st}"]
        if len(low) >= 4:
            f.append(f"suf={low[-3:]}")
        if cw >= 3 or low in PARTICLES:
            f.append(f"w={low}")
        if sh != "x" and low in self.lowered:
            f.append("lower_elsewhere")
        if not low.isascii():
            f.append(f"nonascii|sh{sh}|lex{int(fn + sn > 0)}")
        if low in PLACES:
            f.append("place")
        if low in ORG_WORDS:
            f.append("org_word")
        return f

    def own_key(self, i: int) -> tuple[object, ...]:
        """Everything :meth:`own` depends on, to cache its weight sum."""
        t = self.toks[i]
        return ("own", self.low[i], self.shape(i), self.start(i), self.case, self.lang,
                _gap(t.gap_before), _gap(t.gap_after), self.toks[i].word in self.lowered)

    def context(self, i: int) -> list[str]:
        """The features of token ``i``'s neighbours."""
        f = ["org_ahead"] if self._org_ahead(i) else []
        for k, tag in ((-1, "p"), (1, "n"), (-2, "pp"), (2, "nn")):
            f += self._neighbour(i, k, tag)
        return f

    def _org_ahead(self, i: int) -> bool:
        toks = self.toks
        for j in range(i + 1, min(len(toks), i + 6)):
            if self.brk[j]:
                return False
            if self.low[j] in ORG_WORDS:
                return True
            # "Reynolds and Williamson Orchestra" yes; "Vidica Zakoč of Fernandez Inc." no
            if toks[j].word.islower() and self.low[j] not in ("and", "the", "y", "und", "et"):
                return False
        return False

    def _neighbour_key(self, i: int, k: int) -> tuple[object, ...]:
        j = i + k
        if not 0 <= j < len(self.toks):
            return (k, None)
        # a sentence end between the two cuts the context
        if (k == -1 and self.brk[i]) or (k == 1 and self.brk[j]):
            return (k, "<s>")
        word = self.low[j][:_MAX_WORD]  # bounded keys: a long neighbour is cut
        if abs(k) == 2:
            return (k, word)
        return (k, word, self.shape(j), self.bk(j), self.shape(i))

    def _neighbour(self, i: int, k: int, tag: str) -> list[str]:
        key = self._neighbour_key(i, k)
        if key[1] is None:
            return [f"{tag}=<edge>"]
        if key[1] == "<s>":
            return [f"{tag}=<s>"]
        ol = self.low[i + k][:_MAX_WORD]
        f = [f"{tag}={ol}" if not ol[0].isdigit() else f"{tag}=<num>"]
        if abs(k) == 1:
            osh, sh = self.shape(i + k), self.shape(i)
            ofn, osn, ocw, _ = self.bk(i + k)
            f += [f"{tag}sh={osh}", f"{tag}b=fn{min(ofn, 1)}sn{min(osn, 1)}cw{min(ocw, 2)}|{osh}",
                  f"{tag}sh{osh}|sh{sh}"]
        return f

    def scores(self) -> list[float]:
        """P(name) of every token (0 for those that are not candidates). The weight sums of a
        token's own features and of each neighbour's are cached on the model across texts."""
        model = self.model
        weights = model.weights
        cache = model.cache
        if len(cache) > 200_000:
            cache.clear()
        out = []
        for i in range(len(self.toks)):
            if not self.candidate(i):
                out.append(0.0)
                continue
            key = self.own_key(i)
            z = cache.get(key)
            if z is None:
                z = cache[key] = sum(weights.get(x, 0.0) for x in self.own(i))
            z += model.bias + (weights.get("org_ahead", 0.0) if self._org_ahead(i) else 0.0)
            for k, tag in ((-1, "p"), (1, "n"), (-2, "pp"), (2, "nn")):
                nkey = self._neighbour_key(i, k)
                w = cache.get(nkey)
                if w is None:
                    w = cache[nkey] = sum(weights.get(x, 0.0) for x in self._neighbour(i, k, tag))
                z += w
            out.append(1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z)))))
        return out


def name_features(doc: Doc, i: int) -> list[str]:
    """The features of token ``i`` of ``doc`` (see the module docstring)."""
    return doc.own(i) + doc.context(i)


def _spans(toks: list[Token], scores: list[float], threshold: float  # noqa: PLR0912
           ) -> Iterator[tuple[int, int]]:
    """Name spans: runs of tokens scored at least ``threshold``, grown by neighbours scored at
    least half of it (the surname after a clear first name), with particles and initials
    between name tokens taken in."""
    n = len(toks)
    strong = [s >= threshold for s in scores]
    weak = [s >= threshold / 2 for s in scores]
    is_name = strong[:]
    # a word that is clearly a name once is a name wherever else it is capitalised and
    # fairly likely one ("Mr. Okonkwo ... Okonkwo's daughter")
    named = {_base(toks[i].word) for i in range(n) if strong[i]}
    for i in range(n):
        if not is_name[i] and weak[i] and _base(toks[i].word) in named:
            is_name[i] = True
    for i in range(n):  # grow to the right, then to the left
        if is_name[i] and i + 1 < n and weak[i + 1] and _joined(toks, i + 1):
            is_name[i + 1] = True
    for i in range(n - 1, 0, -1):
        if is_name[i] and weak[i - 1] and _joined(toks, i):
            is_name[i - 1] = True
    # "Willem van der Merwe", "María de la Cruz": two capitalised words joined by lower-case
    # particles are a name when either is fairly likely one and neither is unlikely
    for i in range(n):
        if not toks[i].word[0].isupper() or scores[i] < 0.1:
            continue
        k = i + 1
        while k < n and k - i <= 3 and toks[k].lower in PARTICLES and toks[k].word.islower() \
                and _joined(toks, k):
            k += 1
        if k - i > 1 and k < n and _joined(toks, k) and toks[k].word[0].isupper() \
                and scores[k] >= 0.1 and max(scores[i], scores[k]) >= threshold / 2:
            is_name[i] = is_name[k] = True
    i = 0
    while i < n:
        if not is_name[i]:
            i += 1
            continue
        j = i
        while True:
            k = j + 1
            # particles and initials between two name tokens belong to the name
            while k < n and not is_name[k] and k - j <= 3 and _joined(toks, k) \
                    and (toks[k].lower in PARTICLES or len(toks[k].word) == 1):
                k += 1
            if k < n and is_name[k] and _joined(toks, k):
                j = k
                continue
            break
        end = toks[j].end
        if toks[j].gap_after.startswith(".") and len(toks[j].word) == 1:
            end += 1
        yield toks[i].start, end
        i = j + 1


def _base(word: str) -> str:
    """``word`` without a possessive ``'s``."""
    return word[:-2] if word.endswith(("'s", "’s")) else word


def _joined(toks: list[Token], k: int) -> bool:
    """Whether token ``k`` follows token ``k - 1`` with only a space or two, or after an
    initial's dot ("J. Smith")."""
    if k <= 0:
        return False
    gap = toks[k].gap_before
    if gap and gap.isspace() and "\n" not in gap and len(gap) <= 2:
        return True
    return gap in (". ", ".") and len(toks[k - 1].word) == 1


def find_names(scan: Scan, model: NameModel | None = None) -> list[tuple[int, int]]:
    """Character ranges of person names in ``scan.text``.

    Args:
        scan: the (normalised) text's scan.
        model: the name model; the shipped one by default.
    """
    model = model or default_name_model()
    doc = Doc(scan, model)
    if not doc.toks:
        return []
    return list(_spans(doc.toks, doc.scores(), model.threshold))


@cache
def default_name_model() -> NameModel:
    """The shipped name model (read once).

    Raises:
        ConfigError: its files are missing or unreadable.
    """
    return NameModel.load(MODEL_DIR)
