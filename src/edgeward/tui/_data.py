"""What the terminal UI shows, gathered without Textual: the models on disk with their
signatures and reports, profile comparisons, and snapshots of the fleet store.

Every function here reads real state (files, the trust store, the fleet store) and returns
plain values; the screens only lay them out. Kept apart so it is tested without a terminal and
so a slow read can run in a worker thread.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgeward.errors import EdgewardError
from edgeward.fleet import behaviour_overview, summarize
from edgeward.hardware_profiles import HardwareProfile
from edgeward.safeio import MAX_MANIFEST_BYTES, parse_json, read_capped

__all__ = [
    "DeviceRow",
    "FleetSnapshot",
    "ModelEntry",
    "age",
    "compare_profiles",
    "device_detail",
    "fleet_snapshot",
    "human_bytes",
    "scan_models",
    "sparkline",
]

_SPARKS = "▁▂▃▄▅▆▇█"
_ENVELOPE_SUFFIX = ".edgeward.json"
_REPORT_SUFFIXES = (".report.json",)


def human_bytes(n: int | float | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; None -> ``"-"``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns


def sparkline(values: Sequence[float | None], width: int = 12) -> str:
    """The last ``width`` values as block characters (readable without colour); gaps for
    missing values."""
    vals = list(values)[-width:]
    present = [v for v in vals if v is not None]
    if not present:
        return ""
    lo, hi = min(present), max(present)
    span = hi - lo
    out = []
    for v in vals:
        if v is None:
            out.append(" ")
        else:
            i = 0 if span == 0 else round((v - lo) / span * (len(_SPARKS) - 1))
            out.append(_SPARKS[i])
    return "".join(out)


def age(t: float | None, now: float) -> str:
    """Seconds since ``t`` as ``"5s"``, ``"3m"``, ``"2h"``, ``"4d"``; None -> ``"never"``."""
    if t is None:
        return "never"
    s = max(0.0, now - t)
    for limit, div, unit in ((60, 1, "s"), (3600, 60, "m"), (86400, 3600, "h")):
        if s < limit:
            return f"{int(s // div)}{unit}"
    return f"{int(s // 86400)}d"


# --- models -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelEntry:
    """A model on disk: a source model or a compressed artifact.

    Attributes:
        signature: ``verified``, ``unsigned``, ``signed (no trust store to check)`` or
            ``INVALID: why``.
        quality: the report's quality figures (mean KLD, PPL, top-1; or cosine for ONNX
            encoders), None without a report.
    """

    name: str
    path: Path
    format: Literal["gguf", "onnx", "hf"]
    size_bytes: int
    quantization: str | None
    signature: str
    publisher: str | None = None
    quality: dict[str, Any] | None = None
    role: Literal["source", "artifact"] = "artifact"

    @property
    def quality_text(self) -> str:
        """A one-line summary of the quality figures."""
        q = self.quality or {}
        if q.get("kld_mean") is not None:
            parts = [f"KLD {q['kld_mean']:.4f}"]
            if q.get("ppl") is not None:
                parts.append(f"PPL {q['ppl']:.2f}")
            if q.get("top1_agreement") is not None:
                parts.append(f"top-1 {q['top1_agreement']:.1%}")
            return ", ".join(parts)
        if q.get("cosine_mean") is not None:
            return f"cosine {q['cosine_mean']:.4f}"
        return "-"


def _gguf_quantization(path: Path) -> str | None:
    try:
        from gguf import LlamaFileType

        from edgeward.runtimes import read_gguf_header

        ft = read_gguf_header(path).metadata.get("general.file_type")
        if ft is None:
            return None
        return LlamaFileType(int(ft)).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except (EdgewardError, ValueError, OSError, ImportError):
        return None


def _report_of(path: Path) -> dict[str, Any] | None:
    candidates = ([path / "compression-report.json"] if path.is_dir()
                  else [path.with_name(path.name + s) for s in _REPORT_SUFFIXES])
    for c in candidates:
        try:
            doc = parse_json(read_capped(c, MAX_MANIFEST_BYTES, what="report"))
        except EdgewardError:
            continue
        if isinstance(doc, dict):
            return doc
    return None


def _signature(path: Path, trust_store: Path | None) -> tuple[str, str | None]:
    envelope = path.with_name(path.name + _ENVELOPE_SUFFIX)
    if not envelope.is_file():
        return "unsigned", None
    if trust_store is None:
        return "signed (no trust store to check)", None
    from edgeward.provenance import TrustStore, verify_artifact

    try:
        verified = verify_artifact(path, envelope, TrustStore.open(trust_store))
    except EdgewardError as e:
        return f"INVALID: {e}", None
    except OSError as e:
        return f"INVALID: cannot read ({e.strerror})", None
    return "verified", verified.signer.name or verified.key_id[:16]


def _entry(path: Path, trust_store: Path | None, role: Literal["source", "artifact"]
           ) -> ModelEntry | None:
    report = _report_of(path)
    quality = (report or {}).get("quality")
    if path.is_file() and path.suffix == ".gguf":
        fmt: Literal["gguf", "onnx", "hf"] = "gguf"
        size = path.stat().st_size
        quant = (report or {}).get("type") or _gguf_quantization(path)
    elif path.is_dir() and (path / "model.onnx").is_file():
        fmt = "onnx"
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        quant = (report or {}).get("type") or "fp32"
    elif role == "source" and path.is_dir() and (path / "config.json").is_file():
        fmt = "hf"  # a Hugging Face directory: compressed through the ONNX path
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        quant = "fp32"
    else:
        return None
    signature, publisher = _signature(path, trust_store)
    # a packaged Hugging Face directory is often just "model": name it by its package
    name = f"{path.parent.name}/{path.name}" if path.name == "model" else path.name
    return ModelEntry(name=name, path=path, format=fmt, size_bytes=size,
                      quantization=quant, signature=signature, publisher=publisher,
                      quality=quality if isinstance(quality, dict) else None, role=role)


def scan_models(dirs: Sequence[Path], *, trust_store: Path | None = None,
                sources: Sequence[Path] = ()) -> list[ModelEntry]:
    """The GGUF files and ONNX model directories in ``dirs`` (not recursive), plus
    ``sources`` (e.g. the packaged models) marked as source models; sorted by name."""
    found: list[ModelEntry] = []
    seen: set[Path] = set()
    for p in sources:
        e = _entry(Path(p), trust_store, "source")
        if e is not None and e.path.resolve() not in seen:
            seen.add(e.path.resolve())
            found.append(e)
    for d in dirs:
        if not Path(d).is_dir():
            continue
        for p in sorted(Path(d).iterdir()):
            if p.name.startswith(".") or p.resolve() in seen:
                continue
            e = _entry(p, trust_store, "artifact")
            if e is not None:
                seen.add(p.resolve())
                found.append(e)
    return sorted(found, key=lambda e: (e.role != "source", e.name))


# --- profiles -----------------------------------------------------------------------------

_COMPARED = ("display_name", "backend", "memory_bytes", "bandwidth_gbps", "cpu_features",
             "cores", "gpu_name", "preferred_runtime", "preferred_format", "default_context")


def compare_profiles(a: HardwareProfile, b: HardwareProfile) -> list[tuple[str, str, str, bool]]:
    """Rows ``(field, a's value, b's value, differ)`` for the fields that matter to a
    deployment."""
    da, db = a.to_dict(), b.to_dict()

    def show(key: str, v: Any) -> str:
        if v is None:
            return "-"
        if key == "memory_bytes":
            return human_bytes(v)
        if isinstance(v, list | tuple):
            return " ".join(str(x) for x in v) or "-"
        return str(v)

    return [(k, show(k, da.get(k)), show(k, db.get(k)), da.get(k) != db.get(k))
            for k in _COMPARED]


# --- fleet ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceRow:
    """One device as the fleet screen shows it."""

    device_id: str
    state: str
    artifact_digest: str | None
    last_seen: float | None
    cpu: tuple[float | None, ...] = ()
    tokens_per_s: tuple[float | None, ...] = ()
    memory_used: tuple[float | None, ...] = ()
    alerts: int = 0
    behaviour: str = "-"  # see behaviour_indicator


@dataclass(frozen=True)
class FleetSnapshot:
    """The fleet at one moment: devices, recent alerts, safety decisions, rollouts."""

    taken_at: float
    devices: tuple[DeviceRow, ...]
    alerts: tuple[dict[str, Any], ...]
    safety: dict[str, int] = field(default_factory=dict)
    rollouts: tuple[dict[str, Any], ...] = ()


def behaviour_indicator(row: dict[str, Any] | None) -> str:
    """A device's behaviour in one word for the Fleet screen, worst first: ``OUTLIER`` (its
    distance is unlike its peers' on the same bytes), ``drift`` (its own check), ``canary``
    (its safety canaries drifted or are unlike the fleet's), else the check's status
    (``ok``, ``pending``, ``missing``, ``error``), ``-`` when it reports none; ``row``: one
    row of :func:`edgeward.fleet.behaviour_overview`."""
    if row is None:
        return "-"
    if row["outlier"]:
        return "OUTLIER"
    if row["status"] == "drift":
        return "drift"
    if row["canary_outlier"] or row["canary_status"] == "drift":
        return "canary"
    return "-" if row["status"] in ("not reported", "unchecked") else str(row["status"])


def _safety_counts(latest: dict[str, Any] | None) -> dict[str, int]:
    if not latest or not latest.get("safety"):
        return {}
    raw = latest["safety"]
    counts = json.loads(raw) if isinstance(raw, str) else raw
    return {str(k): int(v) for k, v in dict(counts).items()}


def fleet_snapshot(store: Any, *, history: int = 12,
                   clock: Callable[[], float] = time.time) -> FleetSnapshot:
    """Read the fleet store: every device with its last ``history`` health samples and its
    behaviour indicator, the newest alerts, safety decisions summed over the devices' latest
    reports (they are cumulative per device), and every rollout in brief."""
    alerts = [a.to_dict() for a in store.alerts(limit=50)]
    per_device: dict[str, int] = {}
    for a in alerts:
        per_device[a["device_id"]] = per_device.get(a["device_id"], 0) + 1
    rows: list[DeviceRow] = []
    safety: dict[str, int] = {}
    checks = {r["device_id"]: r for r in behaviour_overview(store)}
    for d in store.devices():
        health = list(reversed(store.health(d.device_id, limit=history)))
        rows.append(DeviceRow(
            device_id=d.device_id, state=d.state, artifact_digest=d.artifact_digest,
            last_seen=d.last_seen, alerts=per_device.get(d.device_id, 0),
            behaviour=behaviour_indicator(checks.get(d.device_id)),
            cpu=tuple(h.get("cpu_percent") for h in health),
            tokens_per_s=tuple(h.get("decode_tokens_per_s") for h in health),
            memory_used=tuple(h.get("memory_used_bytes") for h in health)))
        for k, v in _safety_counts(health[-1] if health else None).items():
            safety[k] = safety.get(k, 0) + v
    rollouts = tuple(summarize(store.get_doc("rollouts", n) or {})
                     for n in store.doc_names("rollouts"))
    return FleetSnapshot(taken_at=clock(), devices=tuple(rows), alerts=tuple(alerts),
                         safety=dict(sorted(safety.items())), rollouts=rollouts)


def device_detail(store: Any, device_id: str) -> dict[str, Any] | None:
    """One device: record, latest health, its running artifact's provenance (with whether
    the statement verified at ingest), recent transitions, events and alerts; None when the
    device is not enrolled."""
    record = store.device(device_id)
    if record is None:
        return None
    health = store.health(device_id, limit=30)
    prov = store.provenance(device_id, limit=1)
    return {**record.to_dict(), "key_id": record.key_id, "slot": record.slot,
            "health": list(reversed(health)), "provenance": prov[0] if prov else None,
            "transitions": store.transitions(device_id, limit=10),
            "events": store.events(device_id, limit=10),
            "alerts": [a.to_dict() for a in store.alerts(limit=1000)
                       if a.device_id == device_id][:10]}
