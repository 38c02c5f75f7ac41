"""DSSE: PAE, canonical JSON, envelopes, and the generic sign/verify pair for any payload."""

from __future__ import annotations

import json
import math

import pytest

from edgeward.errors import (
    BadSignatureError,
    ConfigError,
    MalformedEnvelopeError,
    UnknownKeyError,
    UnsignedArtifactError,
    WrongRoleError,
)
from edgeward.provenance import (
    Envelope,
    PrivateKey,
    Role,
    TrustStore,
    canonical_json,
    generate_key,
    sign_payload,
    verify_envelope,
)
from edgeward.provenance._dsse import pae

HEALTH = "application/vnd.edgeward.health+json"


def test_pae_matches_the_dsse_spec_test_vector() -> None:
    # From the DSSE v1 protocol document.
    assert pae("http://example.com/HelloWorld", b"hello world") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    # Lengths are byte counts, not character counts.
    assert pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": {"d": [1, 2], "c": "é"}}) == \
        '{"a":{"c":"é","d":[1,2]},"b":1}'.encode()
    with pytest.raises(ConfigError, match="canonical JSON"):
        canonical_json({"x": math.nan})
    with pytest.raises(ConfigError):
        canonical_json({"x": {1, 2}})


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa-p256"])
def test_any_payload_type_signs_and_verifies(key_type: str) -> None:
    device = generate_key(key_type)
    store = TrustStore()
    store.add(device.public_key, [Role.DEVICE])
    payload = canonical_json({"seq": 7, "tokens_per_s": 31.5})
    env = sign_payload(payload, HEALTH, device)
    got = verify_envelope(env.to_json(), store, role="device", payload_type=HEALTH)
    assert got.payload == payload and got.key_id == device.key_id
    assert got.json() == {"seq": 7, "tokens_per_s": 31.5}
    with pytest.raises(MalformedEnvelopeError, match="expected 'application/x-other'"):
        verify_envelope(env, store, role="device", payload_type="application/x-other")
    with pytest.raises(WrongRoleError):
        verify_envelope(env, store, role="operator")


def test_the_payload_type_is_signed_too(publisher_key: PrivateKey, store: TrustStore) -> None:
    env = sign_payload(b"{}", HEALTH, publisher_key)
    retyped = Envelope("application/vnd.edgeward.command+json", env.payload, env.signatures)
    with pytest.raises(BadSignatureError):
        verify_envelope(retyped, store, role="publisher")


def test_envelope_round_trip_and_json_shape(publisher_key: PrivateKey) -> None:
    env = sign_payload(b'{"a":1}', HEALTH, publisher_key)
    d = json.loads(env.to_json())
    assert set(d) == {"payloadType", "payload", "signatures"}
    assert set(d["signatures"][0]) == {"keyid", "sig"}
    assert Envelope.from_json(env.to_json()) == env
    # URL-safe base64 is accepted as DSSE allows.
    d["payload"] = d["payload"].replace("+", "-").replace("/", "_")
    assert Envelope.from_dict(d).payload == env.payload


@pytest.mark.parametrize(("doc", "match"), [
    ("", "not valid JSON"),
    ("[]", "expected a JSON object"),
    ('{"payloadType": "x", "payload": ""}', "missing field"),
    ('{"payloadType": "", "payload": "", "signatures": []}', "payloadType"),
    ('{"payloadType": "x", "payload": "!!", "signatures": []}', "base64"),
    ('{"payloadType": "x", "payload": "", "signatures": {}}', "must be a list"),
    ('{"payloadType": "x", "payload": "", "signatures": [{"keyid": "k"}]}', "'sig'"),
])
def test_malformed_envelopes_are_refused(doc: str, match: str) -> None:
    with pytest.raises(MalformedEnvelopeError, match=match):
        Envelope.from_json(doc)


def test_unsigned_and_unknown(publisher_key: PrivateKey, other_key: PrivateKey,
                              store: TrustStore) -> None:
    with pytest.raises(UnsignedArtifactError):
        verify_envelope(Envelope(HEALTH, b"{}", ()), store, role="publisher")
    with pytest.raises(UnknownKeyError) as info:
        verify_envelope(sign_payload(b"{}", HEALTH, other_key), store, role="publisher")
    assert info.value.key_id == other_key.key_id
