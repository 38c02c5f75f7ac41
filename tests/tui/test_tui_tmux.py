"""`edgeward tui` as a person runs it: in a real terminal (tmux), against a running fleet
manager and a simulated device on a real Mosquitto; keys are sent and the Fleet screen's text
is read back from the pane."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeward.fleet import BrokerSpec, MosquittoBroker
from edgeward.fleet._broker import find_mosquitto

pytestmark = pytest.mark.integration

EDGEWARD = [sys.executable, "-m", "edgeward.cli"]


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[list[str]]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux); CI installs it")
    base = ["tmux", "-S", str(tmp_path / "tmux.sock")]
    yield base
    subprocess.run([*base, "kill-server"], capture_output=True, check=False)


def _screen(tmux: list[str]) -> str:
    return subprocess.run([*tmux, "capture-pane", "-p", "-t", "tui"], capture_output=True,
                          text=True, check=False).stdout


def _wait_screen(tmux: list[str], *needles: str, timeout: float = 60.0) -> str:
    end = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < end:
        screen = _screen(tmux)
        if all(n in screen for n in needles):
            return screen
        time.sleep(0.3)
    raise AssertionError(f"{needles} not on the screen after {timeout} s:\n{screen}")


def test_the_fleet_screen_in_a_real_terminal(tmp_path: Path, tmux: list[str]) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); CI installs it")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TERM": "xterm-256color"}
    with MosquittoBroker(BrokerSpec(directory=tmp_path / "broker")) as broker:
        config = tmp_path / "fleet.toml"
        config.write_text(f'broker = "{broker.url}"\nstore = "fleet.db"\n')
        manager = subprocess.Popen([*EDGEWARD, "fleet", "run", "--config", str(config)],
                                   env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        # the device is enrolled while the manager runs, and comes online at once: its
        # retained "online" must not be lost to the manager's registry cache
        device = subprocess.Popen(
            [*EDGEWARD, "fleet", "simulate", "--devices", "1", "--rate", "2",
             "--duration", "90", "--broker", broker.url, "--enroll-into", str(config),
             "--processes", "0", "--prefix", "lab"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            cmd = " ".join([*EDGEWARD, "tui", "--fleet-config", str(config), "--models",
                            str(tmp_path), "--refresh", "0.5"])
            subprocess.run([*tmux, "new-session", "-d", "-s", "tui", "-x", "80", "-y", "24",
                            f"cd {tmp_path} && {cmd}"], check=True, env=env)
            _wait_screen(tmux, "Models", "Fleet", "1 Models")  # the app is up
            subprocess.run([*tmux, "send-keys", "-t", "tui", "5"], check=True)
            screen = _wait_screen(tmux, "lab-00000", "1 devices, 1 online", "tok/s")
            row = next(line for line in screen.splitlines() if "lab-00000" in line)
            assert "online" in row
            assert "Safety decisions:" in screen
            subprocess.run([*tmux, "send-keys", "-t", "tui", "q"], check=True)
            end = time.monotonic() + 10
            while time.monotonic() < end and subprocess.run(
                    [*tmux, "has-session", "-t", "tui"], capture_output=True,
                    check=False).returncode == 0:
                time.sleep(0.2)
            assert subprocess.run([*tmux, "has-session", "-t", "tui"], capture_output=True,
                                  check=False).returncode != 0, "q did not quit"
        finally:
            for p in (device, manager):
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
