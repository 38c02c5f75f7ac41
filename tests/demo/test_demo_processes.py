"""The demo's process supervisor and its world on disk (unit tests: seconds, no model)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgeward.demo._processes import Supervisor, running
from edgeward.demo._world import World, gateway_profile
from edgeward.errors import ConfigError, EdgewardError
from edgeward.hardware_profiles import get_profile

SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


def _gone(pid: int, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not running(pid):
            return True
        time.sleep(0.05)
    return not running(pid)


def test_close_stops_every_child_and_leaves_no_stray(tmp_path: Path) -> None:
    with Supervisor(tmp_path / "logs") as sup:
        a, b = sup.start("a", SLEEP), sup.start("b", SLEEP)
        assert a.alive() and b.alive() and running(a.pid)
    assert sup.strays() == []
    assert not running(a.pid) and not running(b.pid)
    assert sup.exit_codes == {"b": -signal.SIGTERM, "a": -signal.SIGTERM}


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    stubborn = [sys.executable, "-c", "import signal, time\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
                "time.sleep(120)"]
    sup = Supervisor(tmp_path / "logs", grace_s=0.5)
    child = sup.start("stubborn", stubborn)
    sup.wait_for(child, lambda: "ready" in child.log.read_text(), what="ready", timeout_s=20)
    sup.close()
    assert sup.exit_codes["stubborn"] == -signal.SIGKILL and sup.strays() == []


def test_waiting_on_a_child_that_died_quotes_its_log(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs")
    child = sup.start("broken", [sys.executable, "-c",
                                 "import sys; print('cannot open agent.toml'); sys.exit(3)"])
    with pytest.raises(EdgewardError, match=r"(?s)broken exited with code 3 before serving.*"
                                            r"cannot open agent\.toml"):
        sup.wait_for(child, lambda: False, what="serving", timeout_s=20)
    slow = sup.start("slow", SLEEP)
    with pytest.raises(EdgewardError, match="slow did not reach 'online' within 0 s"):
        sup.wait_for(slow, lambda: False, what="online", timeout_s=0.3)
    sup.close()
    assert sup.strays() == []


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only")
def test_children_die_with_a_demo_that_is_killed(tmp_path: Path) -> None:
    """kill -9 of the demo process cannot run its clean-up; the kernel stops the children."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from edgeward.demo._processes import Supervisor
        sup = Supervisor(Path({str(tmp_path / 'logs')!r}))
        child = sup.start("agent", {SLEEP!r})
        print(child.pid, flush=True)
        time.sleep(120)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    grandchild = int(parent.stdout.readline())
    assert running(grandchild)
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    try:
        assert _gone(grandchild), "the child outlived the killed demo"
    finally:
        if running(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_the_world_writes_configurations_the_real_loaders_accept(tmp_path: Path) -> None:
    from edgeward.device_agents import load_agent_config
    from edgeward.fleet import load_fleet_config
    from edgeward.provenance import Role, TrustStore

    world = World(tmp_path / "w")
    world.create("mqtt://127.0.0.1:1883", [
        ("gw", "small CPU box", gateway_profile(), "gateway.toml"),
        ("pi", "pi", get_profile("raspberry-pi-5-8gb"), "raspberry-pi-5-8gb"),
        ("here", "this machine", get_profile("core-avx2-16gb"), None),
    ])
    fleet = load_fleet_config(world.fleet_toml)
    assert fleet.broker.url == "mqtt://127.0.0.1:1883"
    assert fleet.trust_store == world.fleet_trust
    ports = set()
    for d in world.devices:
        cfg = load_agent_config(d.config)
        assert cfg.device_id == d.device_id and cfg.safety_policy == "default"
        assert cfg.telemetry is not None and cfg.telemetry.broker.url == fleet.broker.url
        assert cfg.trust_store == d.trust and cfg.state_dir == d.state
        ports.add(d.port)
        roles = {k.name: set(k.roles) for k in TrustStore.open(d.trust).list_keys()}
        assert roles == {"publisher": {Role.PUBLISHER}, "operator": {Role.OPERATOR}}
    assert len(ports) == 3
    gw = load_agent_config(world.devices[0].config)
    assert gw.profile is not None and gw.profile.endswith("gateway.toml")
    from edgeward.hardware_profiles import resolve_profile

    assert resolve_profile(gw.profile).memory_bytes == 320 * 2**20
    assert load_agent_config(world.devices[2].config).profile is None


def test_the_demo_says_what_is_missing_before_starting_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeward.fleet._broker as broker
    from edgeward.demo import DemoOptions, run_demo

    monkeypatch.setattr(broker, "find_mosquitto", lambda: None)
    with pytest.raises(ConfigError, match="apt-get install mosquitto"):
        run_demo(DemoOptions(workdir=tmp_path / "w"))
    assert not (tmp_path / "w").exists()
    monkeypatch.undo()
    if broker.find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); CI installs it")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="must be new or empty"):
        run_demo(DemoOptions(workdir=tmp_path / "used"))
    assert (tmp_path / "used" / "precious.txt").read_text() == "keep me"
