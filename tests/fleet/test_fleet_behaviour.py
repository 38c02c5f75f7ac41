"""The fleet compares behaviour across devices: drift alerts, 'same bytes, different
behaviour' outliers, the stored check and `edgeward fleet behaviour`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _fleet_helpers import DIGEST, T0, health

from edgeward.cli import main
from edgeward.errors import ConfigError
from edgeward.fleet import behaviour_overview, open_store
from edgeward.fleet._alerts import AlertEngine, AlertRules, behaviour_outliers
from edgeward.fleet._memstore import MemoryStore
from edgeward.fleet._store import Accepted, Store
from edgeward.fleet.protocol import EventMessage, HealthSample, encode
from edgeward.provenance import PrivateKey, generate_key

OTHER = "cd" * 32


def _b(status: str, distance: float, threshold: float = 2e-4) -> dict[str, Any]:
    return {"status": status, "distance": distance, "threshold": threshold,
            "top1_agreement": 1.0 if status == "ok" else 0.97, "checks": 3,
            "checked_at": "2026-12-03T12:00:00Z", "probe_set": "edgeward-probes/1",
            "detail": None}


def _acc(msg: Any) -> Accepted:
    return Accepted(msg, b"", T0)


def test_only_the_device_that_drifts_among_peers_is_an_outlier() -> None:
    engine = AlertEngine(AlertRules())
    kinds: list[tuple[str, str]] = []
    for seq, (device, b) in enumerate([("pi-01", _b("ok", 0.0)), ("pi-02", _b("ok", 1e-7)),
                                       ("pi-03", _b("drift", 0.06))], start=1):
        for a in engine.observe([_acc(health(device, seq, behaviour=b))]):
            kinds.append((a.device_id, a.kind))
    assert kinds == [("pi-03", "behaviour"), ("pi-03", "behaviour_outlier")]
    # the same condition again raises nothing new; clearing it and drifting again does
    assert engine.observe([_acc(health("pi-03", 9, behaviour=_b("drift", 0.07)))]) == []
    assert engine.observe([_acc(health("pi-03", 10, behaviour=_b("ok", 0.0)))]) == []
    again = engine.observe([_acc(health("pi-03", 11, behaviour=_b("drift", 0.05)))])
    assert {a.kind for a in again} == {"behaviour", "behaviour_outlier"}
    assert "same bytes, different behaviour" in next(a for a in again
                                                 if a.kind == "behaviour_outlier").detail


def test_a_fleet_wide_change_is_drift_everywhere_but_no_outlier() -> None:
    rows = [(f"pi-0{i}", DIGEST, 0.05, 2e-4) for i in range(1, 4)]
    assert behaviour_outliers(rows) == set()
    rows.append(("pi-04", OTHER, 0.05, 2e-4))  # alone on its digest: no peers to compare
    assert behaviour_outliers(rows) == set()
    rows += [("pi-05", OTHER, 0.0, 2e-4), ("pi-06", OTHER, 0.0, 2e-4)]
    assert behaviour_outliers(rows) == {"pi-04"}


def test_drift_events_are_alerts() -> None:
    engine = AlertEngine(AlertRules())
    ev = EventMessage(device_id="pi-01", seq=5, time=T0, event="behaviour.drift",
                      severity="error", data={"reasons": ["distance 0.06 > threshold 0.0002"],
                                              "distance": 0.06})
    sd = EventMessage(device_id="pi-02", seq=6, time=T0, event="safety.drift",
                      severity="error", data={"family": "harmful", "rate": 0.1,
                                              "expected": 0.8, "direction": "drop"})
    alerts = engine.observe([_acc(ev), _acc(sd)])
    assert [(a.device_id, a.kind) for a in alerts] == [("pi-01", "behaviour.drift"),
                                                        ("pi-02", "safety.drift")]
    assert "0.06" in alerts[0].detail and "harmful" in alerts[1].detail


@pytest.mark.parametrize("bad", [
    {"status": "fine"}, {"status": "ok", "distance": -1}, {"status": "ok", "colour": 1},
    {"status": "ok", "detail": "x" * 301}, "ok"])
def test_bad_behaviour_health_is_refused(bad: Any) -> None:
    with pytest.raises(ConfigError, match="behaviour"):
        HealthSample(behaviour=bad)


def test_health_without_behaviour_still_parses() -> None:
    d = HealthSample().to_dict()
    assert "behaviour" not in d and HealthSample.from_dict(d).behaviour is None
    with_b = HealthSample(behaviour=_b("ok", 0.0)).to_dict()
    assert HealthSample.from_dict(with_b).behaviour == _b("ok", 0.0)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store,
                                                                               dict[str, Any]]]:
    if request.param == "memory":
        s: Store = MemoryStore()
    elif request.param == "sqlite":
        s = open_store("fleet.db", base_dir=tmp_path)
    else:
        s = open_store(request.getfixturevalue("postgres_url"))
    keys = {f"pi-0{i}": generate_key() for i in range(1, 4)}
    for device, key in keys.items():
        s.enroll(device, key.public_key, now=T0)
    yield s, keys
    s.close()


def _write(s: Store, key: PrivateKey, device: str, seq: int, b: dict[str, Any]) -> None:
    msg = health(device, seq, behaviour=b)
    s.write([Accepted(msg, encode(msg, key).payload, T0 + 5)], manager="m", now=T0)


def test_the_store_keeps_the_check_and_the_overview_flags_the_outlier(
        store: tuple[Store, dict[str, Any]]) -> None:
    s, keys = store
    _write(s, keys["pi-01"], "pi-01", 1, _b("ok", 0.0))
    _write(s, keys["pi-02"], "pi-02", 1, _b("ok", 0.0))
    _write(s, keys["pi-03"], "pi-03", 1, _b("drift", 0.06))
    assert s.health("pi-03", limit=1)[0]["behaviour"] == _b("drift", 0.06)
    rows = behaviour_overview(s)
    assert [(r["device_id"], r["status"], r["outlier"]) for r in rows] == [
        ("pi-01", "ok", False), ("pi-02", "ok", False), ("pi-03", "drift", True)]
    assert behaviour_overview(s, digest="ff") == []


def test_fleet_behaviour_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "fleet.toml").write_text('broker = "mqtt://127.0.0.1:1"\nstore = "fleet.db"\n')
    s = open_store("fleet.db", base_dir=tmp_path)
    keys = {}
    for i in range(1, 4):
        keys[f"device-with-a-long-name-0{i}"] = generate_key()
        s.enroll(f"device-with-a-long-name-0{i}", keys[f"device-with-a-long-name-0{i}"]
                 .public_key, now=T0)
    for i, b in enumerate((_b("ok", 0.0), _b("ok", 0.0), _b("drift", 0.0612)), start=1):
        _write(s, keys[f"device-with-a-long-name-0{i}"], f"device-with-a-long-name-0{i}", 1, b)
    s.close()
    cfg = str(tmp_path / "fleet.toml")
    assert main(["fleet", "behaviour", "--config", cfg, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["outlier"] for r in rows] == [False, False, True]
    assert main(["fleet", "behaviour", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "device-with-a-long-name-03" in out and "drift OUTLIER" in out and "0.0612" in out
    assert all(len(line) <= 80 for line in out.splitlines()), out
