"""``edgeward fleet run|serve-artifacts|deploy|set-config|set-policy|rollout|rollouts|group|
enroll|devices|device|health|events|provenance|alerts|stats|simulate|broker``."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich import box
from rich.table import Table

from edgeward._cli._output import emit, err, json_option, out, state

if TYPE_CHECKING:
    from edgeward.fleet import FleetConfig, Store

__all__ = ["fleet"]

_CONFIG = click.option("--config", "config_path", required=True,
                       type=click.Path(dir_okay=False, exists=True, path_type=Path),
                       help="The fleet's TOML configuration (broker, store, trust_store).")
_LIMIT = click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000),
                      help="Newest rows to show.")


def _config(path: Path, *, secrets: bool = False) -> FleetConfig:
    from edgeward.fleet import load_fleet_config

    return load_fleet_config(path, resolve_secrets=secrets)


def _store(path: Path) -> Store:
    from edgeward.fleet import open_store

    cfg = _config(path)
    return open_store(cfg.store, base_dir=cfg.base_dir, sqlite_synchronous=cfg.sqlite_synchronous)


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for col in columns:
        table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(*["" if r.get(c) is None else str(r.get(c)) for c in columns])
    out.print(table)


@click.group()
def fleet() -> None:
    """The fleet manager: ingest signed device telemetry over MQTT, and query it."""


@fleet.command("run")
@_CONFIG
@click.option("--duration", type=click.FloatRange(0, min_open=True),
              help="Stop after this many seconds (default: until SIGINT/SIGTERM).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="What to log on stderr.")
@json_option
def fleet_run(*, config_path: Path, duration: float | None, log_level: str,
              as_json: bool) -> None:
    """Subscribe to the devices' telemetry, verify it, store it; alert on lost or unhealthy
    devices. Several processes on one broker split the load (MQTT 5 shared subscription)."""
    from edgeward.fleet import FleetManager

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    manager = FleetManager(_config(config_path, secrets=True))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        report = manager.run(stop=stop, duration_s=duration)
    finally:
        manager.store.close()
    result = report.to_dict()
    emit(as_json, result, lambda: _table(f"Fleet manager {report.manager}", [
        {"counter": k, "value": v} for k, v in report.counters.items()], ["counter", "value"]))


@fleet.command("serve-artifacts")
@_CONFIG
@click.option("--dir", "directory", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The artifact store (artifacts by sha256).")
@click.option("--add", "add", multiple=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Add this signed artifact file to the store first (repeatable).")
@click.option("--duration", type=click.FloatRange(0, min_open=True),
              help="Stop after this many seconds (default: until SIGINT/SIGTERM).")
@json_option
def fleet_serve_artifacts(*, config_path: Path, directory: Path, add: tuple[Path, ...],
                          duration: float | None, as_json: bool) -> None:
    """Answer devices' chunk requests for the artifacts in --dir (chunked, resumable transfer
    over MQTT; see docs/updates.md). Several servers split the requests (MQTT 5)."""
    from edgeward.fleet import ArtifactServer

    cfg = _config(config_path, secrets=True)
    server = ArtifactServer(directory, cfg.broker)
    added = [server.add(p) for p in add]
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    timer = threading.Timer(duration, stop.set) if duration is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    if not as_json:
        for d in added:
            err.print(f"serving {d}")
    server.run(stop=stop)
    if timer is not None:
        timer.cancel()
    result = {"added": added, "counters": dict(server.counters)}
    emit(as_json, result, lambda: out.print(
        f"served {server.counters.get('chunks_sent', 0)} chunks "
        f"({server.counters.get('bytes_sent', 0)} bytes)"))


@fleet.command("deploy")
@click.argument("artifact", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--device", "device_id", required=True, help="The device to deploy to.")
@_CONFIG
@click.option("--key", "key_path", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The operator's private key (its public key has the operator role in the "
                   "devices' trust stores).")
@click.option("--artifacts-dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The artifact server's store (`fleet serve-artifacts --dir`): the artifact "
                   "and its signature are added there for the device to fetch.")
@click.option("--lifetime", default=3600.0, show_default=True,
              type=click.FloatRange(1, 7 * 86400), help="Seconds until the command expires.")
@click.option("--delta/--no-delta", default=True, show_default=True,
              help="Send a content-defined chunk map so the device downloads only what it "
                   "does not already hold.")
@json_option
def fleet_deploy(*, artifact: Path, device_id: str, config_path: Path, key_path: Path,
                 artifacts_dir: Path, lifetime: float, delta: bool, as_json: bool) -> None:
    """Send DEVICE a signed command to fetch ARTIFACT over MQTT and install it through its
    A/B slots (the device verifies it, health-checks it, and commits or rolls back)."""
    from edgeward.fleet import Operator
    from edgeward.provenance import load_private_key

    cfg = _config(config_path, secrets=True)
    with Operator(cfg, load_private_key(key_path)) as op, _store(config_path) as store:
        result = op.deploy(store, artifact, device_id, artifacts_dir=artifacts_dir,
                           delta=delta, lifetime_s=lifetime)
    emit(as_json, result, lambda: out.print(
        f"deploy {result['command_id']} (version {result['version']}) sent to {device_id}; "
        "follow it with "
        f"`edgeward fleet events {device_id} --config {config_path}`"))


def _send_command(config_path: Path, cfg: FleetConfig, key: Any, device_id: str, action: str,
                  params: dict[str, Any], lifetime: float) -> Any:
    """Record the device's next command in the store, sign it, publish it (QoS 1)."""
    from edgeward.fleet import Operator

    with Operator(cfg, key, client_id=f"edgeward-{action}-{os.getpid()}") as op, \
            _store(config_path) as store:
        return op.command(store, device_id, action, params, lifetime_s=lifetime)


_KEY = click.option("--key", "key_path", required=True,
                    type=click.Path(dir_okay=False, exists=True, path_type=Path),
                    help="The operator's private key.")


@fleet.command("set-config")
@click.argument("settings", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--device", "device_id", required=True, help="The device.")
@_CONFIG
@_KEY
@json_option
def fleet_set_config(*, settings: tuple[str, ...], device_id: str, config_path: Path,
                     key_path: Path, as_json: bool) -> None:
    """Change a device's limits by signed command (max_queue=4 max_tokens_cap=512 ...)."""
    import json as _json

    from edgeward.errors import ConfigError
    from edgeward.provenance import load_private_key

    changes: dict[str, Any] = {}
    for item in settings:
        k, sep, v = item.partition("=")
        if not sep:
            raise ConfigError(f"{item!r} is not KEY=VALUE")
        try:
            changes[k] = _json.loads(v)
        except ValueError:
            changes[k] = v
    cfg = _config(config_path, secrets=True)
    cmd = _send_command(config_path, cfg, load_private_key(key_path), device_id, "set-config",
                        {"changes": changes}, 3600.0)
    emit(as_json, {"command_id": cmd.command_id, "version": cmd.version},
         lambda: out.print(f"set-config {cmd.command_id} sent to {device_id}"))


@fleet.command("set-policy")
@click.argument("policy", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--device", "device_id", required=True, help="The device.")
@_CONFIG
@_KEY
@click.option("--artifacts-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The artifact server's store (the device fetches the policy from it).")
@json_option
def fleet_set_policy(*, policy: Path, device_id: str, config_path: Path, key_path: Path,
                     artifacts_dir: Path, as_json: bool) -> None:
    """Send a device a signed safety policy (POLICY.toml with POLICY.toml.edgeward.json)."""
    from edgeward.fleet import ArtifactServer
    from edgeward.provenance import load_private_key

    cfg = _config(config_path, secrets=True)
    digest, statement = ArtifactServer(artifacts_dir, cfg.broker).add_signed(policy)
    cmd = _send_command(config_path, cfg, load_private_key(key_path), device_id, "set-policy",
                        {"name": policy.name, "policy_digest": digest,
                         "statement_digest": statement}, 3600.0)
    emit(as_json, {"command_id": cmd.command_id, "version": cmd.version,
                   "policy_digest": digest},
         lambda: out.print(f"set-policy {cmd.command_id} sent to {device_id}"))


@fleet.group("group")
def fleet_group() -> None:
    """Device groups (the targets of rollouts)."""


@fleet_group.command("set")
@click.argument("name")
@click.argument("devices", nargs=-1, required=True)
@_CONFIG
@json_option
def fleet_group_set(*, name: str, devices: tuple[str, ...], config_path: Path,
                    as_json: bool) -> None:
    """Make group NAME exactly DEVICES (each must be enrolled)."""
    from edgeward.errors import ConfigError

    with _store(config_path) as store:
        missing = [d for d in devices if store.device(d) is None]
        if missing:
            raise ConfigError(f"not enrolled: {', '.join(missing[:5])}; enroll them first")
        doc = {"name": name, "devices": sorted(set(devices))}
        store.put_doc("device_groups", name, doc, now=time.time())
    emit(as_json, doc, lambda: out.print(f"group {name}: {len(doc['devices'])} devices"))


@fleet_group.command("list")
@_CONFIG
@json_option
def fleet_group_list(*, config_path: Path, as_json: bool) -> None:
    """Every group with its devices."""
    with _store(config_path) as store:
        rows = [store.get_doc("device_groups", n) or {} for n in store.doc_names("device_groups")]
    emit(as_json, rows, lambda: _table("Groups", [
        {"name": r["name"], "devices": len(r["devices"])} for r in rows], ["name", "devices"]))


@fleet.command("rollout")
@click.argument("artifact", required=False,
                type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--to", "group", help="The device group to roll out to.")
@click.option("--stages", default="5%,25%,100%", show_default=True,
              help="Cumulative share of the group per wave.")
@click.option("--max-failure", default="2%", show_default=True,
              help="Halt and roll the wave back when more of it fails.")
@click.option("--name", help="The rollout's name (default: derived from the artifact).")
@click.option("--resume", "resume", metavar="NAME",
              help="Continue a rollout (e.g. after a manager restart) instead of starting one.")
@_CONFIG
@click.option("--key", "key_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              required=True, help="The operator's private key.")
@click.option("--artifacts-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The artifact server's store (where the artifact is added).")
@click.option("--wave-timeout", default=600.0, show_default=True,
              type=click.FloatRange(1, None), help="Seconds a wave may take; devices that "
              "have not answered by then count as failed.")
@click.option("--poll", default=1.0, show_default=True, type=click.FloatRange(0.05, 60),
              help="Seconds between steps.")
@json_option
def fleet_rollout(*, artifact: Path | None, group: str | None, stages: str, max_failure: str,
                  name: str | None, resume: str | None, config_path: Path, key_path: Path,
                  artifacts_dir: Path | None, wave_timeout: float, poll: float,
                  as_json: bool) -> None:
    """Deploy ARTIFACT to a group in waves; halt and roll the wave back when too many fail.

    Needs `fleet run` (to store the devices' answers) and `fleet serve-artifacts` running.
    Its state is in the store: stop it any time and continue with --resume NAME.
    """
    from edgeward.errors import ConfigError
    from edgeward.fleet import Operator, parse_fraction, parse_stages, summarize
    from edgeward.provenance import load_private_key

    cfg = _config(config_path, secrets=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Operator(cfg, load_private_key(key_path),
                  client_id=f"edgeward-rollout-{os.getpid()}") as op, \
            _store(config_path) as store:
        if resume:
            rollout = resume
        else:
            if artifact is None or group is None or artifacts_dir is None:
                raise ConfigError("give ARTIFACT, --to GROUP and --artifacts-dir (or "
                                  "--resume NAME)")
            rollout = op.create_rollout(
                store, artifact, group, artifacts_dir=artifacts_dir,
                stages=parse_stages(stages),
                max_failure=parse_fraction(max_failure, "--max-failure"), name=name,
                wave_timeout_s=wave_timeout)
        doc = op.run_rollout(store, rollout, poll_s=poll, should_stop=stop.is_set)
    emit(as_json, summarize(doc), lambda: out.print(
        f"rollout {doc['name']}: {doc['state']}"
        + (f" ({doc['halt_reason']})" if doc.get("halt_reason") else "")))
    if doc["state"] == "halted":
        from edgeward.errors import RuntimeBackendError

        state.result_printed = True
        raise RuntimeBackendError(f"rollout {doc['name']} halted: {doc['halt_reason']}")


@fleet.command("rollouts")
@_CONFIG
@json_option
def fleet_rollouts(*, config_path: Path, as_json: bool) -> None:
    """Every rollout: state, wave, devices by status."""
    from edgeward.fleet import summarize

    with _store(config_path) as store:
        rows = [summarize(store.get_doc("rollouts", n) or {})
                for n in store.doc_names("rollouts")]
    emit(as_json, rows, lambda: _table("Rollouts", rows, [
        "name", "state", "group", "wave", "devices", "halt_reason"]))


@fleet.command("enroll")
@click.argument("device_id")
@click.argument("pubkey", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_CONFIG
@click.option("--replace", is_flag=True,
              help="Give an enrolled device this new key (a re-imaged device; seq restarts).")
@json_option
def fleet_enroll(*, device_id: str, pubkey: Path, config_path: Path, replace: bool,
                 as_json: bool) -> None:
    """Enroll DEVICE_ID with its device public key PUBKEY (the .pub the device made)."""
    from edgeward.fleet import enroll_devices
    from edgeward.provenance import load_public_key

    (rec,) = enroll_devices(_config(config_path), [(device_id, load_public_key(pubkey))],
                            replace=replace)
    result = {"device_id": rec.device_id, "key_id": rec.key_id, "enrolled": True}
    emit(as_json, result, lambda: out.print(f"enrolled {rec.device_id} (key {rec.key_id[:16]})"))


@fleet.command("devices")
@_CONFIG
@json_option
def fleet_devices(*, config_path: Path, as_json: bool) -> None:
    """Every enrolled device: state, last seen, running artifact, last seq."""
    with _store(config_path) as store:
        rows = [d.to_dict() for d in store.devices()]
    emit(as_json, rows, lambda: _table("Devices", rows, [
        "device_id", "state", "last_seen", "artifact_digest", "last_seq"]))


def _device_rows(kind: str, device: str, config_path: Path, limit: int,
                 **query: Any) -> list[dict[str, Any]]:
    from edgeward.errors import ConfigError

    with _store(config_path) as store:
        if store.device(device) is None:
            raise ConfigError(f"device {device!r} is not enrolled in this fleet")
        rows: list[dict[str, Any]] = getattr(store, kind)(device, limit=limit, **query)
        return rows


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    """``90s``, ``15m``, ``1h``, ``7d`` (or plain seconds) -> seconds."""
    if value is None:
        return None
    text = value.strip().lower()
    number, unit = (text[:-1], text[-1]) if text and text[-1] in _UNITS else (text, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a duration; use e.g. 90s, 15m, 1h, 7d"
                                 ) from None
    if not 0 < seconds < 1e10:
        raise click.BadParameter(f"{value!r}: the duration must be positive")
    return seconds


@fleet.command("device")
@click.argument("device")
@_CONFIG
@json_option
def fleet_device(*, device: str, config_path: Path, as_json: bool) -> None:
    """One device: its record, latest health, running artifact's provenance, recent state
    transitions, events and alerts."""
    from edgeward.errors import ConfigError

    with _store(config_path) as store:
        record = store.device(device)
        if record is None:
            raise ConfigError(f"device {device!r} is not enrolled in this fleet")
        health = store.health(device, limit=1)
        prov = store.provenance(device, limit=1)
        result = {**record.to_dict(), "key_id": record.key_id,
                  "health": health[0] if health else None,
                  "provenance": prov[0] if prov else None,
                  "transitions": store.transitions(device, limit=10),
                  "events": store.events(device, limit=10),
                  "alerts": [a.to_dict() for a in store.alerts(limit=1000)
                             if a.device_id == device][:10]}

    def human() -> None:
        out.print(f"[bold]{device}[/bold]  state={result['state']}  "
                  f"last_seen={result['last_seen']}  last_seq={result['last_seq']}")
        out.print(f"artifact {result['artifact_digest'] or '-'}")
        if health:
            h = health[0]
            out.print(f"health seq {h['seq']} at {h['device_time']}: cpu {h['cpu_percent']}%, "
                      f"memory {h['memory_used_bytes']} B, {h['decode_tokens_per_s']} tok/s, "
                      f"queue {h['queue_depth']}, safety {h['safety']}")
        if prov:
            out.print(f"provenance: statement verified={prov[0]['statement_verified']}, "
                      f"publisher {prov[0]['publisher_key_id']}")
        _table("Transitions", result["transitions"], ["device_time", "state", "session"])
        _table("Alerts", result["alerts"], ["time", "kind", "detail"])

    emit(as_json, result, human)


@fleet.command("health")
@click.argument("device")
@_CONFIG
@_LIMIT
@click.option("--since", callback=_duration, metavar="DURATION",
              help="Only reports made in the last DURATION (90s, 15m, 1h, 7d).")
@json_option
def fleet_health(*, device: str, config_path: Path, limit: int, since: float | None,
                 as_json: bool) -> None:
    """DEVICE's health reports, newest first."""
    query = {} if since is None else {"since": time.time() - since}
    rows = _device_rows("health", device, config_path, limit, **query)
    emit(as_json, rows, lambda: _table(f"Health of {device}", rows, [
        "seq", "device_time", "cpu_percent", "memory_used_bytes", "temperature_c",
        "decode_tokens_per_s", "queue_depth", "slot"]))


@fleet.command("events")
@click.argument("device")
@_CONFIG
@_LIMIT
@json_option
def fleet_events(*, device: str, config_path: Path, limit: int, as_json: bool) -> None:
    """DEVICE's events, newest first."""
    rows = _device_rows("events", device, config_path, limit)
    emit(as_json, rows, lambda: _table(f"Events of {device}", rows, [
        "seq", "device_time", "event", "severity", "data"]))


@fleet.command("provenance")
@click.argument("device")
@_CONFIG
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 10_000),
              help="Newest reports to show.")
@json_option
def fleet_provenance(*, device: str, config_path: Path, limit: int, as_json: bool) -> None:
    """What DEVICE runs: its signed provenance reports (statement and attestation)."""
    rows = _device_rows("provenance", device, config_path, limit)
    emit(as_json, rows, lambda: _table(f"Provenance of {device}", rows, [
        "seq", "device_time", "artifact_digest", "slot", "publisher_key_id",
        "statement_verified"]))


@fleet.command("behaviour")
@_CONFIG
@click.option("--digest", metavar="HEX", help="Only devices on this artifact digest (a prefix).")
@json_option
def fleet_behaviour(*, config_path: Path, digest: str | None, as_json: bool) -> None:
    """Per artifact digest, the devices running it: their last check against the signed
    behavioural fingerprint (status, distance, threshold, top-1 agreement) and their safety
    canaries. OUTLIER under check: the device's distance is unlike its peers' on the same bytes
    ("same bytes, different behaviour"); under canaries: its block rates are unlike the
    fleet's on the same policy. --json gives every field."""
    from edgeward.fleet import behaviour_overview

    with _store(config_path) as store:
        rows = behaviour_overview(store, digest=digest)

    def human() -> None:
        if not rows:
            out.print("no device has reported health yet" if digest is None
                      else f"no device reports an artifact digest starting {digest}")
            return
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault(str(r["artifact_digest"] or "-"), []).append(r)
        for dg, members in groups.items():
            _behaviour_table(dg, members)
        for r in rows:
            if r["outlier"]:
                out.print(f"{r['device_id']}: same bytes, different behaviour: distance "
                          f"{_g(r['distance'])} vs its peers' median {_g(r['peers_median'])} "
                          f"(threshold {_g(r['threshold'])}) on {r['artifact_digest'][:12]}")
            if r["canary_outlier"]:
                fams = ", ".join(f"{f['family']} {f['rate']:.2f} vs {f['fleet_median']:.2f} "
                                 f"(±{f['tolerance']:.2f})" for f in r["canary_families"])
                out.print(f"{r['device_id']}: canary block rates unlike the fleet's on the "
                          f"same policy: {fams}")

    emit(as_json, rows, human)


def _g(x: object) -> str:
    return "-" if not isinstance(x, int | float) else f"{x:.3g}"


def _behaviour_table(digest: str, rows: list[dict[str, Any]]) -> None:
    """One artifact's devices at 80 columns: ids fold rather than being cut, digests are
    12 hex (the full one is in --json)."""
    drifted = sum(r["status"] == "drift" for r in rows)
    table = Table(title=f"Artifact {digest[:12]} ({len(rows)} device"
                        f"{'s' if len(rows) != 1 else ''}, {drifted} drifted)",
                  title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("device", overflow="fold", min_width=12)
    for col in ("check", "distance", "limit", "top-1", "canaries"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        top1 = r["top1_agreement"]
        check = r["status"].replace("not reported", "-")
        table.add_row(r["device_id"], check + (" OUTLIER" if r["outlier"] else ""),
                      _g(r["distance"]), _g(r["threshold"]),
                      "-" if top1 is None else f"{top1:.2f}",
                      r["canary_status"].replace("not reported", "-")
                      + (" OUTLIER" if r["canary_outlier"] else ""))
    out.print(table)


@fleet.command("alerts")
@_CONFIG
@_LIMIT
@json_option
def fleet_alerts(*, config_path: Path, limit: int, as_json: bool) -> None:
    """The newest alerts: devices lost, health regressions, unverifiable provenance."""
    with _store(config_path) as store:
        rows = [a.to_dict() for a in store.alerts(limit=limit)]
    emit(as_json, rows, lambda: _table("Alerts", rows, ["time", "device_id", "kind", "detail"]))


@fleet.command("stats")
@_CONFIG
@json_option
def fleet_stats(*, config_path: Path, as_json: bool) -> None:
    """Each manager's counters: received, stored, rejected by reason."""
    with _store(config_path) as store:
        rows = store.stats()
    emit(as_json, rows, lambda: _table("Managers", [
        {"manager": r["manager"], "updated_at": r["updated_at"],
         **{k: v for k, v in r["counters"].items() if v}} for r in rows],
        ["manager", "updated_at", "received", "stored"]))


@fleet.command("simulate")
@click.option("--devices", "n_devices", required=True, type=click.IntRange(1, 100_000),
              help="Simulated devices (one MQTT connection each).")
@click.option("--rate", required=True, type=click.FloatRange(0, min_open=True),
              help="Health reports per second, all devices together.")
@click.option("--duration", required=True, type=click.FloatRange(0, min_open=True),
              help="Seconds of publishing.")
@click.option("--broker", "url", required=True, help="mqtt://HOST:PORT or mqtts://HOST:PORT.")
@click.option("--enroll-into", "enroll_into",
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Enroll the simulated devices' keys in this fleet config's registry first.")
@click.option("--ca-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="CA that verifies an mqtts:// broker.")
@click.option("--processes", default=2, show_default=True, type=click.IntRange(0, 64),
              help="Worker processes (0: this one).")
@click.option("--seed", default=0, show_default=True, help="Derives the simulated keys.")
@click.option("--prefix", default="sim", show_default=True, help="Device id prefix.")
@click.option("--presign", is_flag=True, help="Sign every message before the clock starts.")
@json_option
def fleet_simulate(*, n_devices: int, rate: float, duration: float, url: str,
                   enroll_into: Path | None, ca_file: Path | None, processes: int, seed: int,
                   prefix: str, presign: bool, as_json: bool) -> None:
    """Load test: N simulated agents publishing signed health at an aggregate rate."""
    from edgeward.fleet import SimulationConfig, device_ids, enroll_devices, simulate, simulated_key
    from edgeward.fleet.protocol import BrokerOptions

    if enroll_into is not None:
        pairs = [(d, simulated_key(seed, d).public_key) for d in device_ids(n_devices, prefix)]
        enroll_devices(_config(enroll_into), pairs)
    config = SimulationConfig(broker=BrokerOptions(url=url, ca_file=ca_file),
                              devices=n_devices, rate=rate, duration_s=duration,
                              processes=processes, seed=seed, prefix=prefix, presign=presign)
    report = simulate(config)
    result = report.to_dict()
    emit(as_json, result, lambda: _table("Simulation", [
        {"field": k, "value": v} for k, v in result.items()], ["field", "value"]))


@fleet.command("broker")
@click.option("--port", default=0, type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 (default: a free one).")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path(".edgeward-broker"), show_default=True,
              help="Where the generated config, log and persistence go.")
@json_option
def fleet_broker(*, port: int, directory: Path, as_json: bool) -> None:
    """Run a local Mosquitto (generated config, loopback only) until interrupted: the embedded
    broker of the demo. Needs the `mosquitto` package."""
    from edgeward.fleet import BrokerSpec, Listener, MosquittoBroker

    broker = MosquittoBroker(BrokerSpec(directory=directory, listeners=(Listener(port=port),)))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with broker:
        emit(as_json, {"url": broker.url, "config": str(broker.config_path)},
             lambda: out.print(f"mosquitto listening on {broker.url} (Ctrl-C stops it)"))
        sys.stdout.flush()
        while not stop.is_set() and broker.running:
            time.sleep(0.2)
