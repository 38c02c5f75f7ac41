"""The shipped Mosquitto configuration (``deploy/mosquitto/edgeward.conf`` with ``acl``) as it
is, only its paths and ports pointed at the test's: it starts, carries the largest legitimate
message (a full-size artifact chunk frame) and refuses an oversized publish (issue 18,
break 9: a 200 MB publish used to reach the fleet manager)."""

from __future__ import annotations

import getpass
import re
import threading
import time
from pathlib import Path

import pytest
from _fleet_helpers import wait_until

from edgeward.fleet._broker import BrokerSpec, Listener, MosquittoBroker, find_mosquitto
from edgeward.fleet._certs import issue, make_ca
from edgeward.fleet.protocol import BrokerOptions, connect
from edgeward.fleet.protocol._transfer import MAX_CHUNK_FRAME_BYTES

pytestmark = pytest.mark.integration
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"


def _limits(conf: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"^(message_size_limit|max_packet_size) (\d+)$",
                                             conf, re.M)}


def test_the_limits_fit_the_largest_legitimate_message() -> None:
    limits = _limits((DEPLOY / "edgeward.conf").read_text())
    assert set(limits) == {"message_size_limit", "max_packet_size"}
    assert MAX_CHUNK_FRAME_BYTES <= limits["message_size_limit"] < 2 * MAX_CHUNK_FRAME_BYTES
    # the packet adds the topic (a 64-hex digest and a device id) and MQTT headers
    assert limits["max_packet_size"] >= limits["message_size_limit"] + 512


def test_the_shipped_config_starts_and_refuses_an_oversized_publish(tmp_path: Path) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); CI installs it")
    ca = make_ca(tmp_path / "pki")
    server = issue(ca, "broker", tmp_path / "pki", server=True)
    dev = issue(ca, "dev-a", tmp_path / "pki")
    d = tmp_path / "broker"
    broker = MosquittoBroker(BrokerSpec(
        directory=d, tls_ca=ca.cert, tls_cert=server.cert, tls_key=server.key,
        allow_anonymous=False, acl=(DEPLOY / "acl").read_text(),
        passwords={"fleet-manager": "fleet-pw", "artifact-server": "art-pw"},
        listeners=(Listener(tls=True, require_certificate=True, identity_as_username=True),
                   Listener(tls=True))))
    conf = (DEPLOY / "edgeward.conf").read_text()
    for old, new in (("/etc/mosquitto/passwords", d / "passwords"),
                     ("/etc/mosquitto/acl", d / "acl"),
                     ("/etc/mosquitto/certs/ca.pem", ca.cert),
                     ("/etc/mosquitto/certs/broker.pem", server.cert),
                     ("/etc/mosquitto/certs/broker.key", server.key),
                     ("/var/lib/mosquitto/", f"{d}/"),
                     ("listener 8883", f"listener {broker.ports[0]} 127.0.0.1"),
                     ("listener 8884", f"listener {broker.ports[1]} 127.0.0.1")):
        assert str(old) in conf, old
        conf = conf.replace(str(old), str(new))
    settings = [line for line in conf.splitlines() if not line.startswith("#")]
    assert not [line for line in settings if "/etc/" in line or "/var/" in line]
    broker.config_path.write_text(conf + f"\nuser {getpass.getuser()}\n"
                                  f"log_dest file {broker.log_path}\n")
    with broker:
        def password(user: str, pw: str, **kw: object) -> BrokerOptions:
            return BrokerOptions(url=broker.url_of(1), ca_file=ca.cert, username=user,
                                 password=pw, **kw)  # type: ignore[arg-type]

        got: list[tuple[str, int]] = []
        arrived = threading.Event()

        def on_message(_c: object, _u: object, msg: object) -> None:
            got.append((msg.topic, len(msg.payload)))  # type: ignore[attr-defined]
            arrived.set()

        watcher = connect(password("fleet-manager", "fleet-pw"), client_id="watcher")
        watcher.client.on_message = on_message
        watcher.client.subscribe("edgeward/#", qos=1)
        watcher.client.loop_start()
        time.sleep(0.3)
        # the largest legitimate message: a full-size chunk frame to a device
        art = connect(password("artifact-server", "art-pw"), client_id="artifact-server")
        art.client.loop_start()
        chunk_topic = f"edgeward/v1/artifacts/{'ab' * 32}/chunks/dev-a"
        art.client.publish(chunk_topic, b"\0" * MAX_CHUNK_FRAME_BYTES, qos=1).wait_for_publish(20)
        assert wait_until(lambda: (chunk_topic, MAX_CHUNK_FRAME_BYTES) in got, 20), got
        # an oversized publish from a device (MQTT 3.1.1: the client is not told the limit)
        device = connect(BrokerOptions(url=broker.url, ca_file=ca.cert, cert_file=dev.cert,
                                       key_file=dev.key, version="3.1.1"), client_id="dev-a")
        device.client.loop_start()
        big = 9 * 1024 * 1024
        device.client.publish("edgeward/v1/devices/dev-a/events", b"x" * big, qos=1)
        time.sleep(2.0)
        assert all(n < big for _t, n in got), "an oversized publish was forwarded"
        assert broker.running
        # ... and the broker goes on serving: a normal message still arrives
        small = connect(BrokerOptions(url=broker.url, ca_file=ca.cert, cert_file=dev.cert,
                                      key_file=dev.key), client_id="dev-a-2")
        small.client.loop_start()
        small.client.publish("edgeward/v1/devices/dev-a/events", b"ok", qos=1).wait_for_publish(10)
        assert wait_until(lambda: ("edgeward/v1/devices/dev-a/events", 2) in got, 10), got
        for c in (small, device, art, watcher):
            c.close()
