"""The agent's configuration: defaults, relative paths, and errors that name file, key, value."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgeward.device_agents import AgentConfig, load_agent_config
from edgeward.device_agents._config import MAX_TOKENS_CAP, parse_listen
from edgeward.device_agents._remote import apply_remote, save_remote, with_settings
from edgeward.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    cfg = load_agent_config(_write(tmp_path, 'artifact = "m.gguf"\ntrust_store = "trust"\n'))
    assert cfg.artifact == tmp_path / "m.gguf"  # relative to the config file
    assert cfg.trust_store == tmp_path / "trust"
    assert (cfg.host, cfg.port) == ("127.0.0.1", 8088)
    assert cfg.api_key is None and cfg.allow_unsigned is False
    assert (cfg.max_queue, cfg.max_body_bytes, cfg.max_tokens_cap) == (8, 1024 * 1024, 1024)
    assert cfg.shutdown_deadline_s == 10.0 and cfg.safety_policy is None
    assert cfg.model_id == "m"


def test_every_key_round_trips(tmp_path: Path) -> None:
    text = """
artifact = "/models/x.gguf"
trust_store = "/etc/edgeward/trust"
signature = "/models/x.sig.json"
allow_unsigned = false
profile = "raspberry-pi-5-8gb"
context_length = 2048
model_name = "kiosk-assistant"
listen = "[::1]:9000"
api_key = "0123456789abcdef"
max_queue = 4
max_body_bytes = 65536
max_tokens_cap = 512
default_max_tokens = 128
state_dir = "/var/lib/edgeward/agent"
shutdown_deadline_s = 2.5
safety_policy = "passthrough"
log_format = "json"
"""
    cfg = load_agent_config(_write(tmp_path, text))
    assert (cfg.host, cfg.port) == ("::1", 9000)
    assert cfg.model_id == "kiosk-assistant"
    assert cfg.safety_policy is None  # "passthrough" is the explicit pass-through filter
    assert cfg.signature == Path("/models/x.sig.json")
    assert cfg.to_dict()["api_key_set"] is True and "api_key" not in cfg.to_dict()
    assert "0123456789abcdef" not in repr(cfg)


@pytest.mark.parametrize(("line", "key", "shown"), [
    ("max_queue = -1", "max_queue", "-1"),
    ('max_queue = "8"', "max_queue", "'8'"),
    ("max_body_bytes = 10", "max_body_bytes", "10"),
    ("max_tokens_cap = 0", "max_tokens_cap", "0"),
    ("max_tokens_cap = 1000000000", "max_tokens_cap", "1000000000"),
    ('model_name = "' + "m" * 300 + '"', "model_name", "mmmm"),
    ('model_name = "a\\u0007b"', "model_name", "'a\\x07b'"),
    ("default_max_tokens = 5000", "default_max_tokens", "5000"),
    ('listen = "localhost"', "listen", "'localhost'"),
    ('listen = "127.0.0.1:99999"', "listen", "'127.0.0.1:99999'"),
    ("shutdown_deadline_s = -3", "shutdown_deadline_s", "-3"),
    ("context_length = 4", "context_length", "4"),
    ('log_format = "xml"', "log_format", "'xml'"),
    ("allow_unsigned = 1", "allow_unsigned", "1"),
    ('api_key = "short"', "api_key", "(hidden)"),
], ids=lambda v: v if isinstance(v, str) and " = " in v else "")
def test_bad_value_is_named_with_file_key_and_value(tmp_path: Path, line: str, key: str,
                                                    shown: str) -> None:
    path = _write(tmp_path, f'artifact = "m.gguf"\ntrust_store = "t"\n{line}\n')
    with pytest.raises(ConfigError) as e:
        load_agent_config(path)
    msg = str(e.value)
    assert str(path) in msg and repr(key) in msg and shown in msg
    assert "short" not in msg  # a bad api key is never echoed


def test_unknown_key_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, 'artifact = "m.gguf"\ntrust_store = "t"\nmax_qeue = 3\n')
    with pytest.raises(ConfigError, match=r"unknown key 'max_qeue'; known keys are .*max_queue"):
        load_agent_config(path)


def test_missing_artifact_and_missing_trust_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing required key 'artifact'"):
        load_agent_config(_write(tmp_path, 'trust_store = "t"\n'))
    with pytest.raises(ConfigError, match=r"'trust_store' .*allow_unsigned"):
        load_agent_config(_write(tmp_path, 'artifact = "m.gguf"\n'))
    cfg = load_agent_config(_write(tmp_path, 'artifact = "m.gguf"\nallow_unsigned = true\n'))
    assert cfg.trust_store is None and cfg.allow_unsigned


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_agent_config(_write(tmp_path, "artifact = \n"))
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_agent_config(tmp_path / "absent.toml")


def test_api_key_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, 'artifact = "m"\ntrust_store = "t"\napi_key_env = "AGENT_KEY"\n')
    with pytest.raises(ConfigError, match=r"'AGENT_KEY'.*not set"):
        load_agent_config(path)
    monkeypatch.setenv("AGENT_KEY", "from-the-environment")
    assert load_agent_config(path).api_key == "from-the-environment"


def test_dataclass_is_frozen_and_validates_directly() -> None:
    cfg = AgentConfig(artifact=Path("m.gguf"), trust_store=Path("t"))
    with pytest.raises(AttributeError):
        cfg.max_queue = 3  # type: ignore[misc]
    with pytest.raises(ConfigError, match="'max_queue' has bad value -2"):
        AgentConfig(artifact=Path("m.gguf"), trust_store=Path("t"), max_queue=-2)


@pytest.mark.parametrize(("listen", "expected"), [
    ("127.0.0.1:8088", ("127.0.0.1", 8088)), ("0.0.0.0:0", ("0.0.0.0", 0)),
    ("[::1]:80", ("::1", 80)), ("device.local:443", ("device.local", 443)),
])
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


# "1" * 5000 as a port raised int()'s ValueError (found by benchmarks/fuzz.py); "٣" is a digit
@pytest.mark.parametrize("listen", ["127.0.0.1:" + "1" * 5000, "h:٣٣", "h:65536", "h:", ":80"])
def test_parse_listen_refuses_bad_ports(listen: str) -> None:
    with pytest.raises(ConfigError, match="is not host:port"):
        parse_listen(listen)


# -- settings a signed set-config may change: the same bounds as the file ----------------


@pytest.mark.parametrize(("changes", "key"), [
    ({"max_tokens_cap": 10**9}, "max_tokens_cap"),
    ({"max_queue": 10**9}, "max_queue"),
    ({"max_body_bytes": 2**40}, "max_body_bytes"),
    ({"shutdown_deadline_s": 10**9}, "shutdown_deadline_s"),
    ({"default_max_tokens": 10**6}, "default_max_tokens"),
    ({"model_name": 123}, "model_name"),
    ({"model_name": "x" * 10_000}, "model_name"),
    ({"max_queue": "3"}, "max_queue"),
    ({"max_queue": True}, "max_queue"),
    ({"allow_unsigned": True}, "allow_unsigned"),
], ids=lambda v: str(v)[:30])
def test_remote_settings_get_the_bounds_of_the_config_file(tmp_path: Path,
                                                           changes: dict[str, object],
                                                           key: str) -> None:
    cfg = load_agent_config(_write(tmp_path, 'artifact = "m.gguf"\ntrust_store = "t"\n'))
    with pytest.raises(ConfigError) as e:
        with_settings(cfg, changes)
    msg = str(e.value)
    assert msg.startswith("set-config: ") and repr(key) in msg
    # the path the command handler takes (dataclasses.replace) applies the same checks
    if key != "allow_unsigned" and not isinstance(changes[key], str | bool):
        with pytest.raises(ConfigError, match=repr(key)):
            dataclasses.replace(cfg, **changes)  # type: ignore[arg-type]


def test_a_stored_out_of_range_setting_is_refused_at_start(tmp_path: Path) -> None:
    cfg = load_agent_config(_write(tmp_path, f'artifact = "m.gguf"\ntrust_store = "t"\n'
                                             f'state_dir = "{tmp_path / "state"}"\n'))
    (tmp_path / "state").mkdir()
    save_remote(cfg.state_dir, {"config": {"max_tokens_cap": 512}, "safety_policy": None})
    assert apply_remote(cfg).max_tokens_cap == 512
    save_remote(cfg.state_dir, {"config": {"max_tokens_cap": 10**9}, "safety_policy": None})
    with pytest.raises(ConfigError,
                       match=rf"remote.json: key 'max_tokens_cap' .*1\.\.{MAX_TOKENS_CAP}"):
        apply_remote(cfg)


def test_cpu_fallback_is_off_unless_asked(tmp_path: Path) -> None:
    base = 'artifact = "m.gguf"\ntrust_store = "trust"\nprofile = "rtx-4090-24gb"\n'
    assert load_agent_config(_write(tmp_path, base)).allow_cpu_fallback is False
    cfg = load_agent_config(_write(tmp_path, base + "allow_cpu_fallback = true\n"))
    assert cfg.allow_cpu_fallback is True
    with pytest.raises(ConfigError, match="allow_cpu_fallback"):
        load_agent_config(_write(tmp_path, base + 'allow_cpu_fallback = "yes"\n'))
