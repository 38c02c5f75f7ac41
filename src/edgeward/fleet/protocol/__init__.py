"""The MQTT wire protocol of edgeward (``edgeward/v1/...``), shared by the agent and the fleet.

The topic tree, one frozen dataclass per message with canonical bytes, DSSE signing with the
device key, strict parsing with a counted :class:`Rejection` reason for everything refused, and
the paho-mqtt connection both sides use (TLS, credentials, MQTT 5 with a 3.1.1 fallback).
The device agent may import this package, never the rest of :mod:`edgeward.fleet`; so this
package imports only :mod:`edgeward.provenance` and :mod:`edgeward.errors`.

Example::

    from edgeward.fleet.protocol import HealthReport, HealthSample, decode, encode

    wire = encode(HealthReport(device_id="pi-01", seq=7, time=time.time(),
                               metrics=HealthSample(uptime_s=60.0)), device_key)
    client.publish(wire.topic, wire.payload, qos=wire.qos, retain=wire.retain)
    ...
    msg = decode(topic, payload, device_trust_store, key_id=registered_key_id)

The formats, limits and rejection reasons are described in docs/fleet.md.
"""

from edgeward.fleet.protocol._codec import (
    MAX_PAYLOAD_BYTES,
    MAX_SIGNATURES,
    PAYLOAD_TYPES,
    Opened,
    Rejection,
    WireMessage,
    decode,
    encode,
    open_message,
    verify_opened,
)
from edgeward.fleet.protocol._commands import (
    COMMAND_ACTIONS,
    MAX_COMMAND_LIFETIME_S,
    Command,
    decode_command,
    encode_command,
    new_command,
)
from edgeward.fleet.protocol._config import BROKER_KEYS, broker_options_from
from edgeward.fleet.protocol._fleet_ack import ACK_TYPE, FleetAck, ack_topic
from edgeward.fleet.protocol._messages import (
    MAX_SEQ,
    Attestation,
    DeviceState,
    EventMessage,
    HealthReport,
    HealthSample,
    Message,
    ProvenanceReport,
    StateMessage,
    message_from_dict,
    type_uri,
)
from edgeward.fleet.protocol._mqtt import (
    BrokerOptions,
    Connection,
    MqttVersion,
    client_id_for,
    connect,
    tls_context,
)
from edgeward.fleet.protocol._topics import (
    PROTOCOL_VERSION,
    TOPIC_ROOT,
    DeviceTopic,
    Kind,
    check_device_id,
    fleet_filters,
)
from edgeward.fleet.protocol._values import MAX_CATEGORIES

__all__ = [
    "ACK_TYPE",
    "BROKER_KEYS",
    "COMMAND_ACTIONS",
    "MAX_CATEGORIES",
    "MAX_COMMAND_LIFETIME_S",
    "MAX_PAYLOAD_BYTES",
    "MAX_SEQ",
    "MAX_SIGNATURES",
    "PAYLOAD_TYPES",
    "PROTOCOL_VERSION",
    "TOPIC_ROOT",
    "Attestation",
    "BrokerOptions",
    "Command",
    "Connection",
    "DeviceState",
    "DeviceTopic",
    "EventMessage",
    "FleetAck",
    "HealthReport",
    "HealthSample",
    "Kind",
    "Message",
    "MqttVersion",
    "Opened",
    "ProvenanceReport",
    "Rejection",
    "StateMessage",
    "WireMessage",
    "ack_topic",
    "broker_options_from",
    "check_device_id",
    "client_id_for",
    "connect",
    "decode",
    "decode_command",
    "encode",
    "encode_command",
    "fleet_filters",
    "message_from_dict",
    "new_command",
    "open_message",
    "tls_context",
    "type_uri",
    "verify_opened",
]
