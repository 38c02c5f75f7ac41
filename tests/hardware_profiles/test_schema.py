"""HardwareProfile validates itself and quotes the bad value; files name file, field, value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgeward.errors import ProfileError
from edgeward.hardware_profiles import HardwareProfile, load_profile_file

GOOD: dict[str, Any] = {
    "name": "test-box",
    "display_name": "Test box",
    "memory_bytes": 8 * 2**30,
    "bandwidth_gbps": 17.0,
    "backend": "cpu",
    "cpu_features": ["neon", "dotprod"],
    "cores": 4,
}


def test_good_profile_round_trips_through_dict_and_toml(tmp_path: Path) -> None:
    p = HardwareProfile.from_dict(GOOD)
    assert p.cpu_features == ("neon", "dotprod")
    assert HardwareProfile.from_dict(p.to_dict()) == p
    path = tmp_path / "p.toml"
    path.write_text(p.to_toml())
    assert load_profile_file(path) == p


def test_effective_threads_and_gpu_layers_defaults() -> None:
    cpu = HardwareProfile.from_dict(GOOD)
    assert cpu.effective_gpu_layers == 0
    assert cpu.effective_threads == 4
    gpu = HardwareProfile.from_dict(GOOD | {"backend": "cuda", "gpu_compute_capability": "8.9"})
    assert gpu.effective_gpu_layers == -1
    assert HardwareProfile.from_dict(GOOD | {"threads": 2}).effective_threads == 2


@pytest.mark.parametrize(("field", "value"), [
    ("name", "Bad Name"),
    ("name", ""),
    ("display_name", ""),
    ("memory_bytes", 0),
    ("memory_bytes", -5),
    ("memory_bytes", 1.5),
    ("memory_bytes", True),
    ("bandwidth_gbps", 0),
    ("bandwidth_gbps", float("nan")),
    ("bandwidth_gbps", "fast"),
    ("backend", "tpu"),
    ("cpu_features", ["avx9000"]),
    ("cores", 0),
    ("threads", -1),
    ("gpu_layers", -2),
    ("gpu_compute_capability", "eight"),
    ("preferred_runtime", "tensorflow"),
    ("preferred_format", "safetensors"),
    ("default_context", 16),
])
def test_bad_value_is_rejected_naming_field_and_value(field: str, value: Any) -> None:
    with pytest.raises(ProfileError) as info:
        HardwareProfile.from_dict(GOOD | {field: value}, source="box.toml")
    message = str(info.value)
    assert "box.toml" in message
    assert repr(field) in message
    assert repr(value if field != "cpu_features" else tuple(value)) in message


def test_cuda_profile_needs_a_compute_capability() -> None:
    with pytest.raises(ProfileError, match="gpu_compute_capability"):
        HardwareProfile.from_dict(GOOD | {"backend": "cuda"})


def test_unknown_field_is_rejected_with_the_known_ones() -> None:
    with pytest.raises(ProfileError, match=r"unknown field 'memory_gb'.*memory_bytes"):
        HardwareProfile.from_dict(GOOD | {"memory_gb": 8})


def test_missing_required_field_is_named() -> None:
    data = dict(GOOD)
    del data["bandwidth_gbps"]
    with pytest.raises(ProfileError, match="missing required field 'bandwidth_gbps'"):
        HardwareProfile.from_dict(data)


def test_cpu_features_must_be_a_list() -> None:
    with pytest.raises(ProfileError, match="cpu_features"):
        HardwareProfile.from_dict(GOOD | {"cpu_features": "neon"})


def test_malformed_file_names_the_file_the_field_and_the_value(tmp_path: Path) -> None:
    path = tmp_path / "pi.toml"
    path.write_text(HardwareProfile.from_dict(GOOD).to_toml().replace(
        "bandwidth_gbps = 17.0", 'bandwidth_gbps = "seventeen"'))
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    assert str(path) in str(info.value)
    assert "'bandwidth_gbps'" in str(info.value)
    assert "'seventeen'" in str(info.value)


def test_invalid_toml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ProfileError, match=r"bad\.toml: not valid TOML"):
        load_profile_file(bad)
    with pytest.raises(ProfileError, match=r"nope\.toml: no such profile file"):
        load_profile_file(tmp_path / "nope.toml")


def test_profiles_are_immutable() -> None:
    p = HardwareProfile.from_dict(GOOD)
    with pytest.raises(AttributeError):
        p.memory_bytes = 1  # type: ignore[misc]
