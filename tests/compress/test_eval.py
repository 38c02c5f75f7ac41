"""Quality evaluation (PPL, KLD, top-1) on the tiny model: definitions, bounds, determinism,
the reference cache, and the texts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeward.compress import (
    EvalConfig,
    QuantRecipe,
    Text,
    calibration_text,
    compute_reference,
    evaluate,
    evaluation_text,
    quantize,
)
from edgeward.errors import ArtifactError, ConfigError


@pytest.fixture(scope="module")
def quantized(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("q")
    return {t: quantize(tiny_gguf, d / f"{t}.gguf", QuantRecipe(type=t)).artifact
            for t in ("Q8_0", "Q2_K")}


def test_reference_against_itself_is_perfect(tiny_gguf: Path, eval_text: Text,
                                             tiny_eval_cfg: EvalConfig) -> None:
    ref = compute_reference(tiny_gguf, eval_text, tiny_eval_cfg)
    q = evaluate(tiny_gguf, ref, eval_text, tiny_eval_cfg)
    assert q.kld_mean == pytest.approx(0.0, abs=1e-6)
    assert q.top1_agreement == 1.0
    assert q.ppl == pytest.approx(q.ppl_ref, rel=1e-6)
    assert q.chunks == 2
    assert q.eval_tokens == 2 * (128 // 2 - 1)  # the second half of each chunk, minus one
    assert q.text_sha256 == eval_text.sha256


def test_lower_precision_loses_more(tiny_gguf: Path, quantized: dict[str, Path],
                                    eval_text: Text, tiny_eval_cfg: EvalConfig) -> None:
    ref = compute_reference(tiny_gguf, eval_text, tiny_eval_cfg)
    q8 = evaluate(quantized["Q8_0"], ref, eval_text, tiny_eval_cfg)
    q2 = evaluate(quantized["Q2_K"], ref, eval_text, tiny_eval_cfg)
    assert 0 < q8.kld_mean < q2.kld_mean
    assert q8.kld_p99 >= q8.kld_median
    assert q8.top1_agreement >= q2.top1_agreement
    assert abs(np.log(q8.ppl / q8.ppl_ref)) < abs(np.log(q2.ppl / q2.ppl_ref)) + 1e-9


def test_evaluation_is_deterministic(tiny_gguf: Path, quantized: dict[str, Path],
                                     eval_text: Text, tiny_eval_cfg: EvalConfig) -> None:
    ref = compute_reference(tiny_gguf, eval_text, tiny_eval_cfg)
    a = evaluate(quantized["Q2_K"], ref, eval_text, tiny_eval_cfg).to_dict()
    b = evaluate(quantized["Q2_K"], ref, eval_text, tiny_eval_cfg).to_dict()
    assert a == b


def test_top_k_kld_is_a_lower_bound_of_the_exact_one(tiny_gguf: Path, quantized: dict[str, Path],
                                                     eval_text: Text) -> None:
    results = {}
    for k in (8, 64, 100_000):  # 100_000 > the vocabulary: exact
        cfg = EvalConfig(n_ctx=128, eval_tokens=256, top_k=k)
        results[k] = evaluate(quantized["Q2_K"], compute_reference(tiny_gguf, eval_text, cfg),
                              eval_text, cfg)
    assert results[100_000].method == "full-vocabulary KLD"
    # Keeping more of the reference's distribution can only tighten the bound.
    assert 0 < results[8].kld_mean <= results[64].kld_mean <= results[100_000].kld_mean + 1e-12
    assert results[8].ppl == pytest.approx(results[100_000].ppl)  # PPL does not use the top-k


def test_reference_cache_is_reused_and_keyed(tiny_gguf: Path, tmp_path: Path, eval_text: Text,
                                             tiny_eval_cfg: EvalConfig) -> None:
    first = compute_reference(tiny_gguf, eval_text, tiny_eval_cfg, cache_dir=tmp_path)
    files = list(tmp_path.glob("reference-*.npz"))
    assert len(files) == 1
    again = compute_reference(tiny_gguf, eval_text, tiny_eval_cfg, cache_dir=tmp_path)
    assert np.array_equal(first.topk_logp, again.topk_logp)
    other = EvalConfig(n_ctx=128, eval_tokens=384, top_k=64)
    compute_reference(tiny_gguf, eval_text, other, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("reference-*.npz"))) == 2
    files[0].write_bytes(b"garbage")  # a damaged entry is recomputed, not trusted
    rebuilt = compute_reference(tiny_gguf, eval_text, tiny_eval_cfg, cache_dir=tmp_path)
    assert np.array_equal(first.nll, rebuilt.nll)


def test_candidate_of_another_model_is_refused(tiny_gguf: Path, tmp_path: Path,
                                               eval_text: Text,
                                               tiny_eval_cfg: EvalConfig) -> None:
    from _models import write_tiny_gguf

    ref = compute_reference(tiny_gguf, eval_text, tiny_eval_cfg)
    ref.n_vocab += 1  # pretend the reference had another vocabulary
    with pytest.raises(ArtifactError, match="vocabulary"):
        evaluate(write_tiny_gguf(tmp_path / "other.gguf"), ref, eval_text, tiny_eval_cfg)


def test_text_shorter_than_a_chunk(tiny_gguf: Path) -> None:
    short = Text("short", "hello world " * 5)
    with pytest.raises(ConfigError, match="less than one chunk"):
        compute_reference(tiny_gguf, short, EvalConfig(n_ctx=128, eval_tokens=256))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_ctx": 15}, "even number >= 16"),
    ({"n_ctx": 129}, "even number"),
    ({"n_ctx": 512, "eval_tokens": 100}, "less than one chunk"),
    ({"top_k": 0}, "top_k"),
])
def test_bad_eval_config(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        EvalConfig(**kwargs)


def test_builtin_texts_are_disjoint_and_named() -> None:
    cal, ev = calibration_text(), evaluation_text()
    assert "pydoc_data.topics" in cal.name and "pydoc_data.topics" in ev.name
    assert len(ev.content) > 200_000 and len(cal.content) > 80_000  # ~20k tokens either way
    # No paragraph of the calibration part appears in the evaluation part.
    cal_paras = {p for p in cal.content.split("\n\n") if len(p) > 200}
    assert cal_paras
    assert not any(p in ev.content for p in cal_paras)


def test_text_files(tmp_path: Path) -> None:
    good = tmp_path / "eval.txt"
    good.write_text("lorem ipsum " * 400, encoding="utf-8")
    assert evaluation_text(good).name == str(good)
    with pytest.raises(ConfigError, match="no such evaluation text"):
        evaluation_text(tmp_path / "absent.txt")
    short = tmp_path / "short.txt"
    short.write_text("too short")
    with pytest.raises(ConfigError, match="at least 2000"):
        calibration_text(short)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00" * 1000)
    with pytest.raises(ConfigError, match="not UTF-8"):
        evaluation_text(binary)
