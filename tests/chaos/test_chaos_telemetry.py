"""Chaos (bounded): the broker is SIGKILLed, or restarted, while 8 telemetry clients report at
20 messages per second each and another plain ``edgeward/#`` subscriber stays connected (so the
broker's "no matching subscribers" never protects a message). What must hold: every message
each client made is stored, once. The clients keep each message until the fleet manager
acknowledges that it stored it, and send again what it did not confirm.

The scenario is ``benchmarks/chaos_telemetry.py``'s (the long run is ``make bench``'s)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from edgeward.fleet import find_mosquitto

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "chaos_telemetry.py"


@pytest.mark.parametrize("mode", ["kill", "term"])
def test_no_telemetry_is_lost_or_duplicated_across_a_broker_crash_or_restart(
        tmp_path: Path, mode: str) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); CI installs it")
    scenario = runpy.run_path(str(BENCH))["scenario"]
    r = scenario(tmp_path, mode=mode, clients=8, rate=20.0, before_s=3.0, down_s=3.0,
                 after_s=4.0, deliver_timeout_s=30.0)
    assert r["made"] >= 8 * 20 * 6, r  # the clients did produce across the outage
    assert (r["lost"], r["duplicated"], r["undelivered"]) == (0, 0, 0), r
    assert r["stored"] == r["made"], r
