"""The fleet compares devices with their peers: signed health from three devices on the same
digest where one drifts, the robust "far from the median" rule, safety-canary rates unlike
the fleet's, alerts that clear, the stored canaries, `fleet behaviour` at 80 columns, and the
deploy that carries the signed fingerprint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _fleet_helpers import DIGEST, T0, health

from edgeward.cli import main
from edgeward.errors import ConfigError, DigestMismatchError
from edgeward.fleet import Operator, behaviour_overview, load_fleet_config, open_store
from edgeward.fleet._alerts import (
    CANARY_TOLERANCE,
    AlertEngine,
    AlertRules,
    canary_outliers,
    distance_outlier,
)
from edgeward.fleet._ingest import Ingestor, Registry
from edgeward.fleet._memstore import MemoryStore
from edgeward.fleet._store import Accepted, Alert, Store
from edgeward.fleet.protocol import EventMessage, HealthSample, encode
from edgeward.provenance import PrivateKey, generate_key, sign_artifact

OTHER = "cd" * 32
POLICY = "ef" * 32
EXPECTED = {"benign": 0.0, "harmful": 0.83, "injection": 0.75, "jailbreak": 0.67}


def _b(status: str, distance: float, threshold: float = 2e-4) -> dict[str, Any]:
    return {"status": status, "distance": distance, "threshold": threshold,
            "top1_agreement": 1.0 if status == "ok" else 0.97, "checks": 3,
            "checked_at": "2026-12-03T12:00:00Z", "probe_set": "edgeward-probes/1",
            "detail": None}


def _c(status: str = "ok", **rates: float) -> dict[str, Any]:
    return {"status": status, "checked_at": "2026-12-03T12:00:00Z",
            "rates": EXPECTED | rates, "expected": dict(EXPECTED)}


class _Fleet:
    """Three enrolled devices whose signed health goes through the real ingest checks."""

    def __init__(self, n: int = 3) -> None:
        self.store = MemoryStore()
        self.keys = {f"pi-0{i}": generate_key() for i in range(1, n + 1)}
        for device, key in self.keys.items():
            self.store.enroll(device, key.public_key, now=T0)
        clock = lambda: 1000.0  # noqa: E731
        self.ingest = Ingestor(Registry(self.store, clock=clock), clock=clock)
        self.engine = AlertEngine(AlertRules())
        self.seq = dict.fromkeys(self.keys, 0)

    def send(self, device: str, **metrics: Any) -> list[Alert]:
        self.seq[device] += 1
        wire = encode(health(device, self.seq[device], **metrics), self.keys[device])
        accepted = self.ingest.check(wire.topic, wire.payload)
        assert accepted is not None, self.ingest.snapshot()
        outcome = self.store.write([accepted], manager="test", now=T0)
        self.ingest.settle(outcome)
        return self.engine.observe([*outcome.new, *outcome.transitions])

    def event(self, device: str, event: str, data: dict[str, Any]) -> list[Alert]:
        self.seq[device] += 1
        msg = EventMessage(device_id=device, seq=self.seq[device], time=T0, event=event,
                           severity="info" if event == "behaviour.ok" else "error", data=data)
        return self.engine.observe([Accepted(msg, b"", T0)])


def test_signed_health_of_three_devices_flags_only_the_one_that_drifts() -> None:
    fleet = _Fleet()
    alerts = (fleet.send("pi-01", behaviour=_b("ok", 0.0))
              + fleet.send("pi-02", behaviour=_b("ok", 0.0))
              + fleet.send("pi-03", behaviour=_b("drift", 0.06)))
    assert [(a.device_id, a.kind) for a in alerts] == [("pi-03", "behaviour"),
                                                        ("pi-03", "behaviour_outlier")]
    outlier = alerts[1].detail
    assert "same bytes, different behaviour" in outlier and "0.06" in outlier
    assert DIGEST[:12] in outlier and "median is 0" in outlier
    rows = {r["device_id"]: r for r in behaviour_overview(fleet.store)}
    assert [d for d, r in rows.items() if r["outlier"]] == ["pi-03"]
    assert rows["pi-03"]["peers_median"] == 0.0
    assert rows["pi-01"]["peers_median"] == pytest.approx(0.03)  # pi-02 and pi-03's median
    # the healthy peers reporting again stay quiet: the outlier is pi-03, not its peers
    assert fleet.send("pi-01", behaviour=_b("ok", 0.0)) == []


def test_far_from_the_median_is_robust() -> None:
    # a fleet-wide change: everyone drifted alike, so nobody stands out ...
    assert distance_outlier(0.052, 2e-4, [0.05, 0.051, 0.049]) == (False, 0.05)
    # ... but one further above than max(threshold, 5 x MAD) does
    assert distance_outlier(0.4, 2e-4, [0.05, 0.051, 0.049])[0]
    # one noisy peer does not move the reference much (median, not mean)
    assert distance_outlier(0.0, 2e-4, [0.0, 0.0, 5.0])[0] is False
    assert distance_outlier(0.06, 2e-4, [0.0, 0.0, 5.0]) == (True, 0.0)
    # closer to the signed fingerprint than the peers is never an outlier
    assert distance_outlier(0.0, 2e-4, [0.05, 0.05])[0] is False
    # within threshold of a median of 0: noise, not an outlier
    assert distance_outlier(1e-4, 2e-4, [0.0, 0.0])[0] is False
    # fewer than two peers: no comparison
    assert distance_outlier(0.9, 2e-4, [0.0]) == (False, None)


def test_a_device_whose_canary_rates_leave_the_fleets_is_alerted_and_cleared() -> None:
    fleet = _Fleet(4)
    assert fleet.send("pi-01", canaries=_c()) == []
    assert fleet.send("pi-02", canaries=_c()) == []
    # the filter stopped firing on pi-03 (its own check may not even have noticed yet)
    alerts = fleet.send("pi-03", canaries=_c(harmful=0.08))
    assert [(a.device_id, a.kind) for a in alerts] == [("pi-03", "canary_outlier")]
    assert "harmful 0.08 vs the fleet's median 0.83" in alerts[0].detail
    # a device on another policy (other expected rates) is not compared with them
    assert fleet.send("pi-04", canaries={**_c(harmful=0.1), "expected": {"harmful": 0.1}}) == []
    rows = {r["device_id"]: r for r in behaviour_overview(fleet.store)}
    assert [d for d, r in rows.items() if r["canary_outlier"]] == ["pi-03"]
    assert rows["pi-03"]["canary_families"] == [
        {"family": "harmful", "rate": 0.08, "fleet_median": 0.83,
         "tolerance": CANARY_TOLERANCE}]
    # still off: no second alert; back in line: cleared; off again: a new alert
    assert fleet.send("pi-03", canaries=_c(harmful=0.0)) == []
    assert fleet.send("pi-03", canaries=_c()) == []
    assert [a.kind for a in fleet.send("pi-03", canaries=_c(benign=0.5))] == ["canary_outlier"]


def test_canary_groups_and_tolerance() -> None:
    a, b = {**_c(), "policy_digest": POLICY}, {**_c(), "policy_digest": POLICY}
    within = {**_c(harmful=0.78), "policy_digest": POLICY, "tolerance": {"harmful": 0.1}}
    strict = {**_c(harmful=0.78), "policy_digest": POLICY, "tolerance": 0.01}
    assert canary_outliers([("a", a), ("b", b), ("c", within)]) == {}
    assert list(canary_outliers([("a", a), ("b", b), ("c", strict)])) == ["c"]
    # other policy digest, or canaries not run yet: not compared
    other = {**_c(harmful=0.0), "policy_digest": "01" * 32}
    unchecked = {**_c(harmful=0.0), "status": "unchecked"}
    assert canary_outliers([("a", a), ("b", b), ("c", other), ("d", unchecked)]) == {}


def test_drift_events_alert_once_and_clear() -> None:
    fleet = _Fleet()
    drift = {"artifact_digest": DIGEST, "distance": 0.06, "threshold": 2e-4,
             "top1_agreement": 0.97, "reasons": ["distance 0.06 > 0.0002"], "action": "stop"}
    alerts = fleet.event("pi-01", "behaviour.drift", drift)
    assert [(a.kind, a.device_id) for a in alerts] == [("behaviour.drift", "pi-01")]
    detail = alerts[0].detail
    assert "distance 0.06 vs threshold 0.0002" in detail and "0.97" in detail
    assert "device action: stop" in detail and DIGEST[:12] in detail
    assert fleet.event("pi-01", "behaviour.drift", drift) == []  # still the same drift
    assert fleet.event("pi-01", "behaviour.ok", {"artifact_digest": DIGEST}) == []
    assert len(fleet.event("pi-01", "behaviour.drift", drift)) == 1  # cleared, so again
    # a health report whose own check is ok clears it as well
    assert fleet.send("pi-01", behaviour=_b("ok", 0.0)) == []
    assert len(fleet.event("pi-01", "behaviour.drift", drift)) == 1

    safety = {"artifact_digest": DIGEST, "policy_digest": POLICY, "family": "harmful",
              "rate": 0.08, "expected": 0.83, "direction": "drop"}
    alerts = fleet.event("pi-02", "safety.drift", safety)
    assert [a.kind for a in alerts] == ["safety.drift"]
    assert "harmful block rate 0.08, expected 0.83 (a drop" in alerts[0].detail
    assert fleet.event("pi-02", "safety.drift", safety) == []
    jump = safety | {"family": "benign", "rate": 0.5, "expected": 0.0, "direction": "jump"}
    assert len(fleet.event("pi-02", "safety.drift", jump)) == 1  # another family: another alert
    assert fleet.send("pi-02", canaries=_c()) == []  # canaries ok again: both cleared
    assert len(fleet.event("pi-02", "safety.drift", safety)) == 1
    assert len(fleet.event("pi-02", "safety.drift", jump)) == 1


@pytest.mark.parametrize("bad", [
    {"status": "fine"}, {"status": "ok", "rates": {"harmful": 1.5}},
    {"status": "ok", "rates": {"bad name!": 0.5}}, {"status": "ok", "colour": 1},
    {"status": "ok", "rates": [0.5]}, {"status": "ok", "policy_digest": "xyz"},
    {"status": "ok", "tolerance": {"harmful": -1}}, {"status": "ok", "detail": "x" * 301},
    {"status": "ok", "rates": {f"f{i}": 0.1 for i in range(65)}}, "ok"])
def test_bad_canaries_health_is_refused(bad: Any) -> None:
    with pytest.raises(ConfigError, match="canaries"):
        HealthSample(canaries=bad)


def test_canaries_health_round_trips() -> None:
    assert "canaries" not in HealthSample().to_dict()
    c = {**_c(), "policy_digest": POLICY, "tolerance": {"harmful": 0.1}, "checks": 2}
    d = HealthSample(canaries=c).to_dict()
    assert HealthSample.from_dict(d).canaries == HealthSample(canaries=c).canaries
    assert HealthSample.from_dict(d).canaries["rates"] == EXPECTED  # type: ignore[index]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store,
                                                                               PrivateKey]]:
    if request.param == "memory":
        s: Store = MemoryStore()
    elif request.param == "sqlite":
        s = open_store("fleet.db", base_dir=tmp_path)
    else:
        s = open_store(request.getfixturevalue("postgres_url"))
    key = generate_key()
    s.enroll("pi-01", key.public_key, now=T0)
    yield s, key
    s.close()


def test_the_store_keeps_behaviour_and_canaries_per_report(
        store: tuple[Store, PrivateKey]) -> None:
    s, key = store
    reports = [health("pi-01", 1), health("pi-01", 2, behaviour=_b("ok", 0.0), canaries=_c()),
               health("pi-01", 3, behaviour=_b("drift", 0.06),
                      canaries={**_c("drift", harmful=0.08), "policy_digest": POLICY})]
    s.write([Accepted(m, encode(m, key).payload, T0 + 5) for m in reports], manager="m",
            now=T0)
    rows = s.health("pi-01", limit=10)  # newest first: the history is kept
    assert [r["seq"] for r in rows] == [3, 2, 1]
    assert rows[0]["canaries"] == {**_c("drift", harmful=0.08), "policy_digest": POLICY}
    assert rows[0]["behaviour"] == _b("drift", 0.06)
    assert rows[1]["canaries"] == _c() and rows[2]["canaries"] is None
    assert rows[2]["behaviour"] is None


def _cli_fleet(tmp_path: Path) -> str:
    (tmp_path / "fleet.toml").write_text('broker = "mqtt://127.0.0.1:1"\nstore = "fleet.db"\n')
    s = open_store("fleet.db", base_dir=tmp_path)
    names = [f"gateway-{site}-line-0{i}" for site in ("north", "south") for i in (1, 2, 3)]
    digests = [DIGEST] * 3 + [OTHER] * 3
    checks = [_b("ok", 0.0), _b("ok", 0.0), _b("drift", 0.0612), _b("ok", 0.0),
              _b("ok", 0.0), _b("ok", 0.0)]
    canaries = [_c(), _c(), _c(), _c(), _c(harmful=0.08), _c()]
    for i, name in enumerate(names):
        key = generate_key()
        s.enroll(name, key.public_key, now=T0)
        msg = health(name, 1, behaviour=checks[i], canaries=canaries[i],
                     artifact_digest=digests[i])
        s.write([Accepted(msg, encode(msg, key).payload, T0)], manager="m", now=T0)
    s.close()
    return str(tmp_path / "fleet.toml")


def test_fleet_behaviour_json_gives_everything(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _cli_fleet(tmp_path)
    assert main(["fleet", "behaviour", "--config", cfg, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["device_id"], r["outlier"], r["canary_outlier"]) for r in rows] == [
        ("gateway-north-line-01", False, False), ("gateway-north-line-02", False, False),
        ("gateway-north-line-03", True, False), ("gateway-south-line-01", False, False),
        ("gateway-south-line-02", False, True), ("gateway-south-line-03", False, False)]
    third = rows[2]
    assert third["artifact_digest"] == DIGEST and third["distance"] == 0.0612
    assert third["threshold"] == 2e-4 and third["top1_agreement"] == 0.97
    assert third["peers_median"] == 0.0 and third["canaries"] == _c()
    assert rows[4]["canary_families"][0]["family"] == "harmful"
    assert main(["fleet", "behaviour", "--config", cfg, "--digest", OTHER[:6], "--json"]) == 0
    only = json.loads(capsys.readouterr().out)
    assert {r["artifact_digest"] for r in only} == {OTHER}
    assert [r["canary_outlier"] for r in only] == [False, True, False]  # peers fleet-wide


def test_fleet_behaviour_table_reads_at_80_columns(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _cli_fleet(tmp_path)
    assert main(["fleet", "behaviour", "--config", cfg]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), out
    assert f"Artifact {DIGEST[:12]} (3 devices, 1 drifted)" in out
    assert f"Artifact {OTHER[:12]} (3 devices, 0 drifted)" in out
    assert DIGEST[:13] not in out  # digests are 12 hex; the full one is in --json
    for name in ("gateway-north-line-03", "gateway-south-line-02"):  # ids whole, not cut
        assert any(name in line for line in lines), out
    row = next(line for line in lines if "gateway-north-line-03" in line)
    assert "drift OUTLIER" in row and "0.0612" in row and "0.97" in row
    row = next(line for line in lines if line.lstrip().startswith("gateway-south-line-02"))
    assert "ok OUTLIER" in row
    assert "gateway-north-line-03: same bytes, different behaviour" in out
    assert "harmful 0.08 vs 0.83" in out.replace("\n", " ")
    assert main(["fleet", "behaviour", "--config", cfg, "--digest", "ff"]) == 0
    assert "no device reports an artifact digest starting ff" in capsys.readouterr().out


def _signed_artifact(tmp_path: Path, *, fingerprint: bool = True) -> Path:
    art = tmp_path / "model.gguf"
    art.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    fp = tmp_path / "model.gguf.behaviour.json"
    fp.write_text('{"format": "edgeward-fingerprint/1"}')
    record = {"kind": "logprobs", "probe_set": {"id": "edgeward-probes/1", "sha256": "00" * 32},
              "metric": "mean_abs_logprob", "threshold": 2e-4, "top1_min": 0.99,
              "continuation_min": 1.0}
    sign_artifact(art, generate_key(), overwrite=True, fingerprint=fp if fingerprint else None,
                  behaviour=record if fingerprint else None)
    return art


class _Recording(Operator):
    def send(self, cmd: Any) -> None:
        self.sent = cmd


def test_deploy_carries_the_signed_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "fleet.toml").write_text('broker = "mqtt://127.0.0.1:1"\nstore = "fleet.db"\n')
    cfg = load_fleet_config(tmp_path / "fleet.toml")
    store = MemoryStore()
    store.enroll("pi-01", generate_key().public_key, now=T0)
    art = _signed_artifact(tmp_path)
    op = _Recording(cfg, generate_key())
    result = op.deploy(store, art, "pi-01", artifacts_dir=tmp_path / "served")
    fp_digest = result["fingerprint_digest"]
    assert op.sent.params["fingerprint_digest"] == fp_digest
    # the artifact server holds it by digest, exactly as signed, like the statement
    served = tmp_path / "served" / fp_digest
    assert served.read_bytes() == art.with_name("model.gguf.behaviour.json").read_bytes()
    assert (tmp_path / "served" / result["statement_digest"]).is_file()

    # a changed fingerprint beside the artifact is refused; a missing one is a clear error
    art.with_name("model.gguf.behaviour.json").write_text('{"format": "changed"}')
    with pytest.raises(DigestMismatchError, match="fingerprint"):
        op.deploy(store, art, "pi-01", artifacts_dir=tmp_path / "served")
    art.with_name("model.gguf.behaviour.json").unlink()
    with pytest.raises(ConfigError, match="no such fingerprint file"):
        op.deploy(store, art, "pi-01", artifacts_dir=tmp_path / "served")


def test_deploy_without_a_signed_fingerprint_carries_none(tmp_path: Path) -> None:
    (tmp_path / "fleet.toml").write_text('broker = "mqtt://127.0.0.1:1"\nstore = "fleet.db"\n')
    cfg = load_fleet_config(tmp_path / "fleet.toml")
    store = MemoryStore()
    store.enroll("pi-01", generate_key().public_key, now=T0)
    art = _signed_artifact(tmp_path, fingerprint=False)
    art.with_name("model.gguf.behaviour.json").write_text("{}")  # beside it, but not signed
    op = _Recording(cfg, generate_key())
    result = op.deploy(store, art, "pi-01", artifacts_dir=tmp_path / "served")
    assert result["fingerprint_digest"] is None
    assert "fingerprint_digest" not in op.sent.params
