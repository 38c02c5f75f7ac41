"""The edgeward command: --json on every command, one-line errors, documented exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeward import __version__
from edgeward.cli import cli, main
from edgeward.hardware_profiles import load_profile_file


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert f"edgeward {__version__}" in out
    assert "llama-cpp-python" in out


def test_profile_list_json_is_the_stable_interface(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "profile", "list", "--json")
    assert code == 0
    profiles = json.loads(out)
    assert len(profiles) >= 11
    for p in profiles:
        assert {"name", "memory_bytes", "bandwidth_gbps", "backend", "cpu_features"} <= set(p)
        assert isinstance(p["cpu_features"], list)


def test_profile_list_human_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "profile", "list")
    assert code == 0
    assert "raspberry-pi-5-8gb" in out and "17.07" in out


def test_profile_show(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "profile", "show", "rtx-4090-24gb", "--json")
    assert code == 0
    assert json.loads(out)["gpu_compute_capability"] == "8.9"


def test_profile_show_says_whether_this_build_runs_it(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeward.runtimes import llama_backends

    code, out, _ = run(capsys, "profile", "show", "raspberry-pi-5-8gb")
    assert code == 0 and "llama.cpp here" in out and "yes" in out
    code, out, _ = run(capsys, "profile", "show", "rtx-4090-24gb")
    assert code == 0
    flat = " ".join(out.split())
    if "cuda" in llama_backends():
        assert "yes (llama.cpp has cuda)" in flat
    else:
        assert "lacks the cuda backend" in flat


def test_profile_detect_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "profile", "detect", "--no-bandwidth", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["cores"] >= 1
    assert "cores" in d["measured"] and "memory_bytes" in d["measured"]
    assert d["memory_bytes"] > 2**28


def test_profile_detect_writes_a_profile_that_loads_back(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "here.toml"
    code, _, _ = run(capsys, "profile", "detect", "--no-bandwidth", "--name", "my-box",
                     "--out", str(out_file), "--json")
    assert code == 0
    assert load_profile_file(out_file).name == "my-box"
    # A second run refuses to overwrite and leaves the file as it was.
    before = out_file.read_text()
    code, _, err = run(capsys, "profile", "detect", "--no-bandwidth", "--out", str(out_file))
    assert code == 3
    assert "already exists" in err
    assert out_file.read_text() == before


def test_unknown_profile_is_one_clear_line_and_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "profile", "show", "rtx-4090")
    assert code == 3
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "unknown hardware profile 'rtx-4090'" in lines[0]
    assert "Traceback" not in err


def test_error_with_json_prints_an_error_object(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ndisplay_name = "X"\nmemory_bytes = -1\nbandwidth_gbps = 1\n')
    code, out, err = run(capsys, "profile", "show", str(bad), "--json")
    assert code == 3
    payload = json.loads(out)
    assert payload["error"] == "profile_error"
    assert "memory_bytes" in payload["detail"] and "-1" in payload["detail"]
    assert str(bad) in err


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--debug", "profile", "show", "no-such-profile")
    assert code == 3
    assert "Traceback" in err and "ProfileError" in err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "profile", "frobnicate")
    assert code == 2
    assert "No such command" in err


def test_internal_error_is_one_line_without_debug(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import edgeward.hardware_profiles as hp

    def boom() -> None:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(hp, "catalog", boom)
    code, _, err = run(capsys, "profile", "list")
    assert code == 1
    assert "internal error: ZeroDivisionError: oops" in err
    assert "--debug" in err and "Traceback" not in err


def _all_commands(group=cli, prefix=()):  # type: ignore[no-untyped-def]
    import click

    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _all_commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


# full-screen and interactive: nothing to print as JSON (its screens call the same library
# functions as the commands that do take --json)
INTERACTIVE = {("tui",)}


def test_every_command_takes_json() -> None:
    commands = list(_all_commands())
    assert commands and {path for path, _ in commands} >= INTERACTIVE
    for path, cmd in commands:
        if path not in INTERACTIVE:
            assert any("--json" in p.opts for p in cmd.params), " ".join(path)


def test_installed_entry_point() -> None:
    exe = shutil.which("edgeward") or str(Path(sys.executable).parent / "edgeward")
    proc = subprocess.run([exe, "profile", "show", "nope"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 3
    assert proc.stderr.startswith("edgeward: error: unknown hardware profile 'nope'")
    help_text = subprocess.run([exe, "--help"], capture_output=True, text=True,
                               check=True).stdout
    assert "Exit codes" in help_text


def test_the_cli_reference_is_generated_from_the_parser_and_up_to_date() -> None:
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / "scripts" / "cli_reference.py"),
                           "--check"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr + " (run scripts/cli_reference.py)"
    text = (root / "docs" / "cli-reference.md").read_text()
    for path, _ in _all_commands():
        assert f"## `edgeward {' '.join(path)}`" in text


_INTERRUPTED_WITH_A_THREAD = """
import signal, threading, time, edgeward.cli as c
def main():
    # a thread the interpreter would join at shutdown, which then sends another Ctrl-C
    def late():
        time.sleep(0.5)
        signal.raise_signal(signal.SIGINT)
        time.sleep(30)
    threading.Thread(target=late).start()
    raise KeyboardInterrupt
c.main = main
c.program()
"""


@pytest.mark.parametrize("body", [
    "import edgeward.cli as c\nc.main = lambda: 130\nc.program()",
    "import edgeward.cli as c\n"
    "def main():\n    raise KeyboardInterrupt\nc.main = main\nc.program()",
    _INTERRUPTED_WITH_A_THREAD,
])
def test_an_interrupted_program_exits_130_whatever_happens_at_shutdown(body: str) -> None:
    done = subprocess.run([sys.executable, "-c", body], capture_output=True, text=True,
                          timeout=20, check=False)
    assert done.returncode == 130, done.stderr


def test_the_program_exits_with_mains_status() -> None:
    done = subprocess.run([sys.executable, "-c",
                           "import edgeward.cli as c\nc.main = lambda: 3\nc.program()"],
                          capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 3
