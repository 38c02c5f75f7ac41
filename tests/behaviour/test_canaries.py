"""Safety canaries: the packaged set, judging drops and jumps, signed sets, the shipped filter
disabled or with its threshold moved, and `edgeward behaviour canaries`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeward.behaviour import (
    ATTACK_FAMILIES,
    CANARY_FAMILIES,
    CANARY_PAYLOAD_TYPE,
    DEFAULT_CANARY_SET,
    Canary,
    CanarySet,
    judge,
    load_canary_set,
    record_expected,
    run_canaries,
    sign_canary_set,
    tolerance_for,
)
from edgeward.cli import main
from edgeward.errors import (
    BadSignatureError,
    ConfigError,
    MalformedEnvelopeError,
    UnknownKeyError,
    UnsignedArtifactError,
    WrongRoleError,
)
from edgeward.provenance import (
    Envelope,
    PrivateKey,
    Role,
    TrustStore,
    canonical_json,
    generate_key,
    load_public_key,
    sign_payload,
    write_key_pair,
)
from edgeward.safety import BundledFilter, PassThroughFilter, default_policy, load_filter

Decide = Callable[[str], bool]


@pytest.fixture(scope="module")
def packaged() -> CanarySet:
    return load_canary_set()


@pytest.fixture(scope="module")
def shipped() -> BundledFilter:
    return load_filter("default")


def blocks(flt: BundledFilter | PassThroughFilter) -> Decide:
    return lambda text: flt.check(text).action == "block"


def with_threshold(shipped: BundledFilter, threshold: float) -> BundledFilter:
    """The shipped filter (same model and encoder) with the policy's threshold moved."""
    policy = dataclasses.replace(shipped.policy, threshold=threshold)
    return BundledFilter(policy, model=shipped.model, encoder=shipped.encoder)


def decisions(cs: CanarySet, flips: dict[str, int]) -> dict[str, bool]:
    """The decisions that give exactly the expected rates, then ``flips[family]`` canaries of a
    family flipped (positive: more blocked, negative: fewer)."""
    out: dict[str, bool] = {}
    for fam in CANARY_FAMILIES:
        members = [c for c in cs.prompts if c.family == fam]
        k = round(cs.expected[fam] * len(members)) + flips.get(fam, 0)
        assert 0 <= k <= len(members), (fam, k)
        out.update({c.id: i < k for i, c in enumerate(members)})
    return out


# -- the packaged set --------------------------------------------------------------------------

def test_packaged_set_has_twelve_of_each_family_recorded_with_the_default_policy(
        packaged: CanarySet) -> None:
    assert packaged.id == DEFAULT_CANARY_SET
    assert packaged.counts == dict.fromkeys(CANARY_FAMILIES, 12)
    assert len({c.text for c in packaged.prompts}) == len(packaged.prompts)
    assert packaged.tolerance == dict.fromkeys(CANARY_FAMILIES, tolerance_for(12))
    assert packaged.policy_digest == default_policy().digest
    assert packaged.sha256 == hashlib.sha256(canonical_json(packaged.to_dict())).hexdigest()
    assert CanarySet.from_dict(packaged.to_dict()) == packaged


def test_canaries_are_not_copied_from_the_safety_training_data(packaged: CanarySet,
                                                               shared_data: Path) -> None:
    corpus = (shared_data / "safety" / "prompts.jsonl")
    if not corpus.is_file():
        pytest.skip("no ../shared/data/safety/prompts.jsonl")
    text = corpus.read_text(encoding="utf-8", errors="ignore").lower()
    for c in packaged.prompts:
        t = c.text.lower()
        assert not any(t[i:i + 40] in text for i in range(0, max(1, len(t) - 40), 10)), c.id


# -- judging -----------------------------------------------------------------------------------

def test_tolerance_is_one_prompts_worth_plus_a_margin() -> None:
    assert tolerance_for(12) == pytest.approx(1 / 12 + 0.01, abs=1e-6)
    assert tolerance_for(1) == pytest.approx(1.01)
    with pytest.raises(ConfigError):
        tolerance_for(0)


def test_the_expected_decisions_are_ok(packaged: CanarySet) -> None:
    result = judge(packaged, decisions(packaged, {}))
    assert result.status == "ok" and result.drifts == () and result.rates == packaged.expected


@pytest.mark.parametrize("family", ATTACK_FAMILIES)
def test_one_canary_less_is_noise_two_are_a_drop(packaged: CanarySet, family: str) -> None:
    assert judge(packaged, decisions(packaged, {family: -1})).status == "ok"
    result = judge(packaged, decisions(packaged, {family: -2}))
    assert result.status == "drift"
    assert [(d.family, d.direction) for d in result.drifts] == [(family, "drop")]
    assert result.drifts[0].rate == pytest.approx(packaged.expected[family] - 2 / 12, abs=1e-5)


def test_benign_blocked_more_is_a_jump_and_less_is_not_drift(packaged: CanarySet) -> None:
    assert judge(packaged, decisions(packaged, {"benign": 1})).status == "ok"
    jump = judge(packaged, decisions(packaged, {"benign": 2}))
    assert [(d.family, d.direction) for d in jump.drifts] == [("benign", "jump")]
    assert "over-blocking" in jump.reasons[0]
    assert judge(packaged, decisions(packaged, {"benign": -3})).status == "ok"


def test_an_attack_family_blocked_more_than_recorded_is_a_jump(packaged: CanarySet) -> None:
    result = judge(packaged, decisions(packaged, {"harmful": 2}))
    assert [(d.family, d.direction) for d in result.drifts] == [("harmful", "jump")]


def test_decisions_must_cover_exactly_the_set(packaged: CanarySet) -> None:
    full = decisions(packaged, {})
    with pytest.raises(ConfigError, match="missing"):
        judge(packaged, {k: v for k, v in full.items() if k != "benign-01"})
    with pytest.raises(ConfigError, match="unknown"):
        judge(packaged, {**full, "nope": True})


def test_health_event_and_refusal_shapes(packaged: CanarySet) -> None:
    refused = {c.id: True for c in packaged.prompts if c.family == "harmful"}
    result = judge(packaged, decisions(packaged, {"injection": -3}), refused=refused)
    health = result.to_health()
    assert set(health) == {"status", "checked_at", "rates", "expected"}
    assert health["status"] == "drift" and health["checked_at"].endswith("Z")
    assert set(health["rates"]) == set(health["expected"]) == set(CANARY_FAMILIES)
    assert result.refusal_rate == {"harmful": 1.0, "jailbreak": 0.0, "injection": 0.0,
                                   "benign": 0.0}
    event = result.drifts[0].event_payload(artifact_digest="a" * 64, policy_digest="sha256:p")
    assert event == {"artifact_digest": "a" * 64, "policy_digest": "sha256:p",
                     "family": "injection", "rate": result.rates["injection"],
                     "expected": 1.0, "direction": "drop"}
    assert judge(packaged, decisions(packaged, {})).refusal_rate is None


def test_run_canaries_asks_the_model_only_about_what_passed(packaged: CanarySet) -> None:
    asked: list[str] = []
    calls = []
    result = run_canaries(packaged, lambda t: "bomb" in t,
                          refuse=lambda t: asked.append(t) or True,
                          between=lambda: calls.append(1))
    assert len(calls) == len(packaged.prompts)
    assert not any("bomb" in t for t in asked) and len(asked) == len(packaged.prompts) - sum(
        "bomb" in c.text for c in packaged.prompts)
    assert result.refusal_rate is not None and result.refusal_rate["benign"] == 1.0


def test_between_can_abandon_a_run(packaged: CanarySet) -> None:
    def stop() -> None:
        raise TimeoutError("request waiting")

    with pytest.raises(TimeoutError):
        run_canaries(packaged, lambda t: True, between=stop)


def test_record_expected_measures_rates_and_tolerance() -> None:
    prompts = [Canary(f"{f}-{i}", f, f"{f} prompt {i}") for f in CANARY_FAMILIES for i in range(4)]
    cs = record_expected(prompts, lambda t: t.endswith(("0", "1")) and "benign" not in t,
                         policy_digest="sha256:x")
    assert cs.id == "custom/1" and cs.policy_digest == "sha256:x"
    assert cs.expected == {"harmful": 0.5, "jailbreak": 0.5, "injection": 0.5, "benign": 0.0}
    assert cs.tolerance == dict.fromkeys(CANARY_FAMILIES, pytest.approx(0.26))


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["prompts"].pop(), "benign"),
    (lambda d: d["prompts"].append(dict(d["prompts"][0])), "unique"),
    (lambda d: d["prompts"][0].update(family="spam"), "family"),
    (lambda d: d["prompts"][0].update(text=" "), "non-empty"),
    (lambda d: d["expected"].update(harmful=1.5), r"\[0, 1\]"),
    (lambda d: d["expected"].update(harmful="high"), r"\[0, 1\]"),
    (lambda d: d["tolerance"].pop("benign"), "tolerance"),
    (lambda d: d.pop("prompts"), "not a canary set"),
    (lambda d: d.update(policy_digest=7), "policy_digest"),
], ids=["family-missing", "duplicate-id", "bad-family", "empty-text", "rate-range",
        "rate-type", "tolerance-missing", "no-prompts", "policy-type"])
def test_malformed_sets_are_refused(change: Callable[[dict], object], message: str) -> None:
    prompts = [{"id": f"{f}-1", "family": f, "text": f"a {f} prompt"} for f in CANARY_FAMILIES]
    doc = {"id": "t/1", "prompts": prompts, "expected": dict.fromkeys(CANARY_FAMILIES, 0.5),
           "tolerance": dict.fromkeys(CANARY_FAMILIES, 0.1), "policy_digest": None}
    change(doc)
    with pytest.raises(ConfigError, match=message):
        CanarySet.from_dict(doc)


# -- signed sets -------------------------------------------------------------------------------

@pytest.fixture
def signer(tmp_path: Path) -> tuple[PrivateKey, TrustStore]:
    key = generate_key()
    store = TrustStore.open(tmp_path / "trust", create=True)
    store.add(key.public_key, [Role.OPERATOR], name="ops")
    return key, store


def test_a_signed_set_round_trips(packaged: CanarySet, signer: tuple[PrivateKey, TrustStore],
                                  tmp_path: Path) -> None:
    key, store = signer
    path = tmp_path / "canaries.json"
    path.write_bytes(sign_canary_set(packaged, key))
    assert Envelope.from_json(path.read_bytes()).payload_type == CANARY_PAYLOAD_TYPE
    loaded = load_canary_set(path, trust_store=store)
    assert loaded == packaged
    assert load_canary_set(path, trust_store=tmp_path / "trust") == packaged


def test_a_publisher_may_sign_a_set_a_device_may_not(packaged: CanarySet,
                                                     tmp_path: Path) -> None:
    pub, dev = generate_key(), generate_key()
    store = TrustStore.open(tmp_path / "trust", create=True)
    store.add(pub.public_key, [Role.PUBLISHER])
    store.add(dev.public_key, [Role.DEVICE])
    (tmp_path / "p.json").write_bytes(sign_canary_set(packaged, pub))
    (tmp_path / "d.json").write_bytes(sign_canary_set(packaged, dev))
    assert load_canary_set(tmp_path / "p.json", trust_store=store).sha256 == packaged.sha256
    with pytest.raises(WrongRoleError, match="publisher or operator"):
        load_canary_set(tmp_path / "d.json", trust_store=store)


def test_tampered_unsigned_and_unknown_sets_are_refused(
        packaged: CanarySet, signer: tuple[PrivateKey, TrustStore], tmp_path: Path) -> None:
    key, store = signer
    env = json.loads(sign_canary_set(packaged, key))
    doc = packaged.to_dict()
    doc["expected"]["harmful"] = 0.0  # a set that would never report a drop
    forged = dict(env, payload=Envelope(CANARY_PAYLOAD_TYPE, canonical_json(doc), ()
                                        ).to_dict()["payload"])
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    with pytest.raises(BadSignatureError):
        load_canary_set(tmp_path / "forged.json", trust_store=store)
    (tmp_path / "plain.json").write_text(json.dumps(packaged.to_dict()))
    with pytest.raises(MalformedEnvelopeError):
        load_canary_set(tmp_path / "plain.json", trust_store=store)
    (tmp_path / "nosig.json").write_text(json.dumps(dict(env, signatures=[])))
    with pytest.raises(UnsignedArtifactError):
        load_canary_set(tmp_path / "nosig.json", trust_store=store)
    (tmp_path / "other.json").write_bytes(sign_canary_set(packaged, generate_key()))
    with pytest.raises(UnknownKeyError):
        load_canary_set(tmp_path / "other.json", trust_store=store)
    wrong_type = sign_payload(canonical_json(packaged.to_dict()), "application/json", key)
    (tmp_path / "type.json").write_bytes(wrong_type.to_json())
    with pytest.raises(MalformedEnvelopeError, match="payloadType"):
        load_canary_set(tmp_path / "type.json", trust_store=store)
    with pytest.raises(ConfigError, match="trust store"):
        load_canary_set(tmp_path / "forged.json")


# -- the shipped filter ------------------------------------------------------------------------

def test_the_shipped_filter_matches_the_packaged_rates(packaged: CanarySet,
                                                       shipped: BundledFilter) -> None:
    result = run_canaries(packaged, blocks(shipped))
    assert result.status == "ok" and result.drifts == ()
    assert result.rates == packaged.expected  # the filter is deterministic
    assert packaged.policy_digest == shipped.policy.digest


def test_a_disabled_filter_is_a_drop_in_every_attack_family(packaged: CanarySet) -> None:
    result = run_canaries(packaged, blocks(PassThroughFilter()))
    assert result.status == "drift"
    assert {(d.family, d.direction) for d in result.drifts} == {
        (f, "drop") for f in ATTACK_FAMILIES}


@pytest.mark.parametrize("threshold", [0.95, 0.99])
def test_a_raised_threshold_is_a_drop(packaged: CanarySet, shipped: BundledFilter,
                                      threshold: float) -> None:
    result = run_canaries(packaged, blocks(with_threshold(shipped, threshold)))
    assert result.status == "drift"
    assert {d.direction for d in result.drifts} == {"drop"}
    assert "benign" not in {d.family for d in result.drifts}


@pytest.mark.parametrize("threshold", [0.05, 0.2])
def test_a_lowered_threshold_is_a_benign_jump(packaged: CanarySet, shipped: BundledFilter,
                                              threshold: float) -> None:
    result = run_canaries(packaged, blocks(with_threshold(shipped, threshold)))
    assert ("benign", "jump") in [(d.family, d.direction) for d in result.drifts]
    assert {d.direction for d in result.drifts} == {"jump"}  # more harmful blocked, too


# -- the CLI -----------------------------------------------------------------------------------

def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_ok_with_the_shipped_filter(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "behaviour", "canaries", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["status"] == "ok" and d["rates"] == d["expected"]
    assert d["recorded_for_this_policy"] is True and d["canary_set"] == DEFAULT_CANARY_SET
    code, out, _ = run(capsys, "behaviour", "canaries")
    assert code == 0 and "ok: every family within tolerance" in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_cli_drift_exits_10(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "lax.toml"
    policy.write_text("[classifier]\nthreshold = 0.97\n")
    code, out, _ = run(capsys, "behaviour", "canaries", "--policy", str(policy), "--json")
    assert code == 10
    d = json.loads(out)
    assert d["status"] == "drift" and d["recorded_for_this_policy"] is False
    assert {x["direction"] for x in d["drifts"]} == {"drop"}
    code, out, _ = run(capsys, "behaviour", "canaries", "--policy", str(policy))
    assert code == 10 and "DRIFT" in out and "stopped firing" in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_cli_records_and_signs_a_set_for_a_policy(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    files = write_key_pair(generate_key(), tmp_path / "k", name="ops")
    store = TrustStore.open(tmp_path / "trust", create=True)
    store.add(load_public_key(files.public_key_path), [Role.OPERATOR])
    policy = tmp_path / "strict.toml"
    policy.write_text("[classifier]\nthreshold = 0.2\n")
    signed = tmp_path / "strict.canaries.json"
    code, out, _ = run(capsys, "behaviour", "canaries", "--policy", str(policy), "--key",
                       str(files.private_key_path), "--out", str(signed), "--json")
    assert code == 0
    made = json.loads(out)
    assert made["out"] == str(signed) and made["expected"]["benign"] > 0.25
    loaded = load_canary_set(signed, trust_store=store)
    assert loaded.expected == made["expected"] and loaded.sha256 == made["sha256"]
    assert loaded.policy_digest == made["policy_digest"]
    code, out, _ = run(capsys, "behaviour", "canaries", "--policy", str(policy), "--canaries",
                       str(signed), "--trust", str(tmp_path / "trust"), "--json")
    assert code == 0
    d = json.loads(out)
    assert d["status"] == "ok" and d["recorded_for_this_policy"] is True
    # the default policy judged by the strict policy's set: fewer harmful prompts blocked is a
    # drop; fewer benign look-alikes blocked is not drift (benign may only jump)
    code, out, _ = run(capsys, "behaviour", "canaries", "--canaries", str(signed), "--trust",
                       str(tmp_path / "trust"), "--json")
    d = json.loads(out)
    assert code == 10 and d["recorded_for_this_policy"] is False
    assert ("harmful", "drop") in {(x["family"], x["direction"]) for x in d["drifts"]}
    assert "benign" not in {x["family"] for x in d["drifts"]}
    # never overwritten
    code, _, err = run(capsys, "behaviour", "canaries", "--key", str(files.private_key_path),
                       "--out", str(signed))
    assert code == 3 and "already exists" in err


def test_cli_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "behaviour", "canaries", "--out", str(tmp_path / "x.json"))
    assert code == 3 and "--key and --out go together" in err
    (tmp_path / "x.json").write_text("{}")
    code, _, err = run(capsys, "behaviour", "canaries", "--canaries", str(tmp_path / "x.json"))
    assert code == 3 and "--trust" in err
