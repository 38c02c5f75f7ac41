"""The exception tree: one root, split by whose fault it is, with distinct exit codes."""

from __future__ import annotations

import inspect

import pytest

from edgeward import errors
from edgeward.errors import (
    ArtifactError,
    BehaviourDrift,
    ChannelError,
    ConfigError,
    EdgewardError,
    ProfileError,
    ResourceError,
    RuntimeBackendError,
    SafetyBlocked,
    SignatureError,
)

TOP_LEVEL = [ConfigError, ArtifactError, SignatureError, RuntimeBackendError, SafetyBlocked,
             ChannelError, ResourceError, BehaviourDrift]


def test_every_public_error_derives_from_the_root_and_has_a_docstring() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, EdgewardError), name
        assert inspect.getdoc(cls), f"{name} has no docstring"


def test_top_level_kinds_have_distinct_exit_codes_outside_click_and_shell_ranges() -> None:
    codes = [cls.exit_code for cls in TOP_LEVEL]
    assert len(set(codes)) == len(codes)
    # 0 is success, 1 an internal error, 2 click's usage error; >= 126 is the shell's.
    assert all(3 <= c < 126 for c in codes)


def test_profile_error_is_a_config_error() -> None:
    assert issubclass(ProfileError, ConfigError)
    assert ProfileError.exit_code == ConfigError.exit_code


def test_signature_error_is_not_a_value_error() -> None:
    # A failed signature check must never be caught by a generic `except ValueError`.
    assert not issubclass(SignatureError, ValueError)


@pytest.mark.parametrize(("cls", "kind"), [
    (ConfigError, "config_error"),
    (RuntimeBackendError, "runtime_backend_error"),
    (SafetyBlocked, "safety_blocked"),
])
def test_kind_is_a_stable_snake_case_name(cls: type[EdgewardError], kind: str) -> None:
    assert cls("x").kind == kind


def test_safety_blocked_carries_categories() -> None:
    e = SafetyBlocked("blocked", categories=["S1", "S9"])
    assert e.categories == ["S1", "S9"]
