"""`edgeward compress` on the tiny model: the JSON interface, the plan, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeward._cli.compress import parse_size
from edgeward.cli import main
from edgeward.errors import ConfigError

FAST = ["--eval-tokens", "256", "--eval-ctx", "128", "--no-cache"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_type_json(tiny_gguf: Path, out_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = out_dir / "t.gguf"
    code, stdout, err = run(capsys, "compress", str(tiny_gguf), "--type", "q4_k_m", "--out",
                            str(out), *FAST, "--json")
    assert code == 0, err
    d = json.loads(stdout)
    assert d["type"] == "Q4_K_M" and d["artifact"] == str(out)
    assert d["quality"]["eval_tokens"] == 2 * 63
    assert d["timings"]["total_s"] > 0
    assert (out_dir / "t.gguf.report.json").is_file()
    assert json.loads((out_dir / "t.gguf.report.json").read_text())["artifact_sha256"] == \
        d["artifact_sha256"]
    # the behavioural fingerprint of these bytes is beside it, for `edgeward sign`
    assert d["fingerprint"] == str(out) + ".behaviour.json"
    fp = json.loads(Path(d["fingerprint"]).read_text())
    assert fp["artifact_sha256"] == d["artifact_sha256"] and fp["tolerance"]["runs"]


def test_no_fingerprint(tiny_gguf: Path, out_dir: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    out = out_dir / "nf.gguf"
    code, stdout, err = run(capsys, "compress", str(tiny_gguf), "--type", "Q8_0", "--out",
                            str(out), "--no-eval", "--no-fingerprint", "--json")
    assert code == 0, err
    assert "fingerprint" not in json.loads(stdout)
    assert not out.with_name(out.name + ".behaviour.json").exists()


def test_no_eval(tiny_gguf: Path, out_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(capsys, "compress", str(tiny_gguf), "--type", "Q8_0", "--out",
                          str(out_dir / "n.gguf"), "--no-eval", "--json")
    assert code == 0
    assert json.loads(stdout)["quality"] is None


def test_plan_json_writes_nothing(tiny_gguf: Path, tmp_path: Path, out_dir: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    profile = tmp_path / "box.toml"
    profile.write_text('name = "box"\ndisplay_name = "Box"\nmemory_bytes = 1073741824\n'
                       'bandwidth_gbps = 5.0\ndefault_context = 256\ncpu_features = ["avx2"]\n')
    code, stdout, err = run(capsys, "compress", str(tiny_gguf), "--profile", str(profile),
                            "--plan", "--candidates", "Q8_0,Q2_K", *FAST, "--json")
    assert code == 0, err
    d = json.loads(stdout)
    assert d["profile"] == "box" and d["context"] == 256
    assert [c["type"] for c in d["candidates"]] == ["Q8_0", "Q2_K"]
    assert d["choice"] == "Q8_0"
    assert list(out_dir.iterdir()) == []


def test_refinements_with_a_profile_reach_the_artifact(tiny_gguf: Path, tmp_path: Path,
                                                       out_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # --override and --pure with --profile were once accepted and then dropped
    from edgeward.runtimes import read_gguf_header

    profile = tmp_path / "box.toml"
    profile.write_text('name = "box"\ndisplay_name = "Box"\nmemory_bytes = 1073741824\n'
                       'bandwidth_gbps = 5.0\ndefault_context = 256\ncpu_features = ["avx2"]\n')
    out = out_dir / "auto.gguf"
    code, stdout, err = run(capsys, "compress", str(tiny_gguf), "--profile", str(profile),
                            "--candidates", "Q8_0", "--override", "ffn_down=Q4_0",
                            "--out", str(out), "--no-fingerprint", *FAST, "--json")
    assert code == 0, err
    d = json.loads(stdout)
    assert d["recipe"]["overrides"] == [["ffn_down", "Q4_0"]]
    assert read_gguf_header(out).tensor("blk.0.ffn_down.weight").type_name == "Q4_0"  # type: ignore[union-attr]
    assert read_gguf_header(out).tensor("blk.0.ffn_up.weight").type_name == "Q8_0"  # type: ignore[union-attr]


def test_contradictory_options_are_refused(tiny_gguf: Path, tmp_path: Path, out_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "compress", str(tiny_gguf), "--profile", "raspberry-pi-5-8gb",
                       "--plan", "--out", str(out_dir / "x.gguf"))
    assert code == 3 and "--plan writes nothing" in err
    code, _, err = run(capsys, "compress", str(tiny_gguf), "--type", "Q8_0", "--lm-head",
                       "--out", str(out_dir / "x.gguf"))
    assert code == 3 and "add --format onnx" in err
    assert list(out_dir.iterdir()) == []


def test_human_output(tiny_gguf: Path, out_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(capsys, "compress", str(tiny_gguf), "--type", "Q8_0", "--out",
                          str(out_dir / "h.gguf"), *FAST)
    assert code == 0
    assert "perplexity" in stdout and "KLD" in stdout and "top-1" in stdout


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--type", "Q4_K_M"], 3, "--out PATH is required"),
    (["--out", "X"], 3, "--type TYPE, or --profile"),
    (["--plan", "--type", "Q8_0"], 3, "--plan needs --profile"),
    (["--type", "Q9_Z", "--out", "OUT"], 3, "unknown quantization type 'Q9_Z'"),
    (["--type", "IQ2_XXS", "--out", "OUT"], 3, "needs an importance matrix"),
    (["--type", "Q8_0", "--out", "OUT", "--override", "nonsense"], 3, "REGEX=TYPE"),
    (["--profile", "nope-profile", "--out", "OUT"], 3, "unknown hardware profile"),
])
def test_bad_input(tiny_gguf: Path, out_dir: Path, capsys: pytest.CaptureFixture[str],
                   args: list[str], code: int, message: str) -> None:
    args = [a.replace("OUT", str(out_dir / "x.gguf")) for a in args]
    got, _, err = run(capsys, "compress", str(tiny_gguf), *args, *FAST)
    assert got == code
    assert message in err
    assert list(out_dir.iterdir()) == []


def test_not_a_gguf_exits_4(tmp_path: Path, out_dir: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(b"\x00" * 4096)
    code, _, err = run(capsys, "compress", str(src), "--type", "Q8_0", "--out",
                       str(out_dir / "x.gguf"))
    assert code == 4
    assert "not a GGUF file" in err


def test_existing_output(tiny_gguf: Path, out_dir: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    out = out_dir / "e.gguf"
    out.write_text("keep me")
    code, _, err = run(capsys, "compress", str(tiny_gguf), "--type", "Q8_0", "--out", str(out))
    assert code == 3 and "--force" in err
    assert out.read_text() == "keep me"


@pytest.mark.parametrize(("text", "size"), [
    ("80MB", 80_000_000), ("100MiB", 100 * 2**20), ("1.5G", 1_500_000_000), ("4096", 4096),
])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_rejects_garbage() -> None:
    with pytest.raises(ConfigError, match="not a size"):
        parse_size("big")
