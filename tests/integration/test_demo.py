"""`edgeward demo --keep` end to end, as a person runs it: the whole mission on the real
SmolLM2, a real Mosquitto and real agent processes; the fleet stays up for `edgeward tui`
until Ctrl-C, and then every process is gone.

One run (about two to three minutes on two cores) checks each claim of the mission.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeward.demo._processes import running
from edgeward.fleet._broker import find_mosquitto

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(find_mosquitto() is None,
                       reason="mosquitto is not installed (apt-get install mosquitto); "
                              "CI installs it"),
]


def _edgeward(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeward", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_whole_mission_then_a_clean_shutdown(tmp_path: Path, smollm2_gguf: Path) -> None:
    work = tmp_path / "demo"
    demo = subprocess.Popen([sys.executable, "-m", "edgeward", "demo", "--keep", "--json",
                             "--workdir", str(work), "--max-tokens", "32"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    summary = work / "summary.json"
    try:
        end = time.monotonic() + 600
        while not summary.exists() and demo.poll() is None and time.monotonic() < end:
            time.sleep(1)
        assert summary.exists(), (demo.poll(), demo.stderr.read() if demo.poll() else "")
        doc = json.loads(summary.read_text())

        # three devices, three profiles, each online and running what was rolled out to it
        devices = {d["device_id"]: d for d in doc["devices"]}
        assert set(devices) == {"gateway-01", "pi5-01", "local-01"}
        assert len({d["profile"] for d in devices.values()}) == 3
        for d in devices.values():
            assert d["state"] == "online"
            assert d["provenance_verified"] and d["auditor_check"], d
            assert d["predicted_memory_bytes"] > 0 and d["kld_mean"] is not None
        # the auto-recipe follows the memory budget: the gateway gets a smaller model
        assert devices["gateway-01"]["size_bytes"] < devices["pi5-01"]["size_bytes"]
        served = {a["sha256"] for a in doc["artifacts"]}
        assert {d["artifact_digest"] for d in devices.values()} == served
        assert len(served) == 2
        # staged: the shared artifact went out in two waves; every rollout finished
        assert sorted(r["waves"] for r in doc["rollouts"]) == [1, 2]
        for r in doc["rollouts"]:
            assert r["state"] == "done" and set(r["devices"].values()) == {"succeeded"}

        api = doc["api"]
        assert api["benign"]["finish_reason"] in ("stop", "length")
        assert len(api["benign"]["content"].split()) >= 3 and api["benign"]["action"] == "allow"
        assert api["harmful"]["finish_reason"] == "content_filter"
        assert api["harmful"]["categories"] and api["harmful"]["content"] == ""
        assert api["harmful"]["refusal"].startswith("I can't help with that request.")
        # PII the model itself wrote is redacted from the reply it sends
        assert api["pii"]["action"] == "redact" and api["pii"]["categories"], api["pii"]
        assert any(f"[{c}]" in api["pii"]["content"] for c in api["pii"]["categories"])
        assert not re.search(r"\b\d{1,3}(\.\d{1,3}){3}\b", api["pii"]["content"])
        # fleet health: each device reports the slot it runs from (the update switched it)
        assert {d["health"]["slot"] for d in devices.values()} == {"b"}
        assert all(d["health"]["uptime_s"] > 0 for d in devices.values())
        # the safety decisions reached the fleet as health counts
        local = devices["local-01"]["safety"]
        assert sum(local.values()) >= 1, local

        tamper = doc["tamper"]
        assert tamper["event"] in ("command.failed", "command.refused"), tamper
        assert tamper["old_artifact_kept"] and tamper["still_answers"]
        assert tamper["tampered_digest"] not in served

        # kept running: the fleet answers the CLI (and so `edgeward tui`) from another process
        listed = _edgeward("fleet", "devices", "--config", str(work / "fleet" / "fleet.toml"),
                           "--json")
        assert listed.returncode == 0, listed.stderr
        assert {r["state"] for r in json.loads(listed.stdout)} == {"online"}
        pids = doc["processes"]["pids"]
        assert set(pids) == {"fleet-manager", "artifact-server", "gateway-01", "pi5-01",
                             "local-01"}
        assert all(running(p) for p in pids.values())
        assert doc["timings"]["mission_s"] < 600
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=120)
    assert demo.returncode == 0, err[-3000:]
    final = json.loads(out)
    assert final["kept"] is True and final["processes"]["strays"] == []
    everything = final["processes"]["pids"]
    assert "mosquitto" in everything and len(everything) == 6
    assert not any(running(p) for p in everything.values())
    assert set(final["processes"]["exit_codes"].values()) <= {0}
    assert (work / "logs" / "local-01.log").stat().st_size > 0


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line mentions ``text`` (the demo's children name their
    configuration files, which live in its working directory)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and running(int(proc.name)):
            pids.append(int(proc.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the processes")
def test_ctrl_c_in_the_middle_stops_everything(tmp_path: Path, smollm2_gguf: Path) -> None:
    work = tmp_path / "demo"
    demo = subprocess.Popen([sys.executable, "-m", "edgeward", "demo", "--workdir", str(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # wait until the fleet is up and compression has started: children are running
        end = time.monotonic() + 180
        while not any((work / "models").glob("*/.edgeward-work-*")) and \
                time.monotonic() < end and demo.poll() is None:
            time.sleep(0.2)
        children = _processes_mentioning(str(work))
        assert len(children) >= 6, children  # mosquitto, manager, artifact server, 3 agents
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            out, err = demo.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            demo.kill()
            out, err = demo.communicate()
            pytest.fail(f"the demo did not stop within 150 s of Ctrl-C:\n{out[-3000:]}\n"
                        f"{err[-3000:]}")
    assert demo.returncode == 130, err[-2000:]
    assert "shutting down" in out and "interrupted" in err
    assert _processes_mentioning(str(work)) == []
