"""``edgeward behaviour``: make and check behavioural fingerprints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgeward._cli._output import emit, err, json_option, out, state
from edgeward.errors import BehaviourDrift

__all__ = ["behaviour"]


@click.group()
def behaviour() -> None:
    """Behavioural fingerprints: what a model computes on a fixed probe set, and whether a
    loaded model still computes it (see docs/behaviour.md)."""


def _progress(as_json: bool) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        if not as_json:
            err.print(f"calibrating: replay {done}/{total}", highlight=False)
    return show


def fingerprint_built(artifact: Path, as_json: bool) -> dict[str, str | None]:
    """After a build (``compress``): write the artifact's calibrated fingerprint beside it so
    that ``edgeward sign`` signs it. A model that cannot be fingerprinted gets a warning."""
    from edgeward.behaviour import fingerprint_artifact
    from edgeward.errors import EdgewardError

    try:
        made = fingerprint_artifact(artifact, progress=_progress(as_json))
    except EdgewardError as e:  # the artifact is written; only its fingerprint is missing
        err.print(f"warning: no behavioural fingerprint for {artifact}: {e}")
        return {"fingerprint": None, "fingerprint_note": str(e)}
    if not as_json:
        err.print(f"fingerprint: {made.path} (edgeward sign signs it with the artifact)")
    return {"fingerprint": str(made.path), "fingerprint_note": "made now"}


@behaviour.command("fingerprint")
@click.argument("artifact", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write it (default ARTIFACT.behaviour.json).")
@click.option("--no-calibrate", is_flag=True,
              help="Skip the noise-floor calibration (about six replays); the threshold is "
                   "then the absolute floor.")
@click.option("--probe-set", default="edgeward-probes/1", show_default=True,
              help="A packaged probe-set id or a probe-set JSON file.")
@click.option("--margin", type=click.FloatRange(min=1.0), default=4.0, show_default=True,
              help="Threshold = calibrated noise floor x margin (never below the floor).")
@json_option
def fingerprint(*, artifact: Path, out_path: Path | None, no_calibrate: bool, probe_set: str,
                margin: float, as_json: bool) -> None:
    """Make ARTIFACT's behavioural fingerprint (GGUF: next-token log-probabilities and
    continuations; ONNX encoders: embeddings). `edgeward sign` signs it with the artifact."""
    from edgeward.behaviour import fingerprint_artifact

    probes: str | Path = Path(probe_set) if Path(probe_set).is_file() else probe_set
    made = fingerprint_artifact(artifact, out=out_path, probe_set=probes,
                                calibrated=not no_calibrate, margin=margin,
                                progress=_progress(as_json))

    def human() -> None:
        d = made.to_dict()
        out.print(f"fingerprint: {d['fingerprint']}")
        out.print(f"  {d['probes']} probes ({d['positions']} scored positions), probe set "
                  f"{d['probe_set']}, {d['kind']}")
        out.print(f"  threshold {d['threshold']:.3g}, noise floor {d['noise_floor']:.3g} "
                  f"({d['calibration_runs']} calibration runs, {d['seconds']:.1f} s)")
        out.print("  sign it with the artifact: edgeward sign ARTIFACT --key KEY")

    emit(as_json, made.to_dict(), human)


@behaviour.command("check")
@click.argument("artifact", type=click.Path(exists=True, path_type=Path))
@click.option("--fingerprint", "fingerprint_path",
              type=click.Path(dir_okay=False, path_type=Path),
              help="The fingerprint (default ARTIFACT.behaviour.json).")
@click.option("--signature", type=click.Path(dir_okay=False, path_type=Path),
              help="Verify the artifact's signed statement first and require the fingerprint "
                   "to be the signed one (needs --trust).")
@click.option("--trust", "trust_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The trust store for --signature.")
@click.option("--threads", type=click.IntRange(min=1), help="Threads (default every core).")
@json_option
def check(*, artifact: Path, fingerprint_path: Path | None, signature: Path | None,
          trust_dir: Path | None, threads: int | None, as_json: bool) -> None:
    """Load ARTIFACT, replay its fingerprint's probes and compare. Exit 0 when it behaves as
    fingerprinted, 10 when it drifted."""
    from edgeward.behaviour import check_artifact, fingerprint_path_for
    from edgeward.errors import ConfigError

    fp_path = fingerprint_path or fingerprint_path_for(artifact)
    signed_digest = None
    if signature is not None or trust_dir is not None:
        if signature is None or trust_dir is None:
            raise ConfigError("--signature and --trust go together")
        from edgeward.provenance import TrustStore, check_fingerprint_file, verify_artifact

        verified = verify_artifact(artifact, signature, TrustStore.open(trust_dir))
        signed_digest = check_fingerprint_file(verified.statement, fp_path).sha256
    result = check_artifact(artifact, fp_path, sha256=signed_digest, threads=threads)
    d = {**result.to_dict(), "fingerprint": str(fp_path), "signed": signed_digest is not None}

    def human() -> None:
        verdict = "ok: behaves as fingerprinted" if result.status == "ok" else "DRIFT"
        out.print(f"{verdict} ({artifact.name})")
        out.print(f"  distance {result.distance:.3g} (threshold {result.threshold:.3g})")
        out.print(f"  top-1 agreement {result.top1_agreement:.3f}, continuations "
                  f"{result.continuation_agreement:.3f}")
        for reason in result.reasons:
            out.print(f"  - {reason}")

    emit(as_json, d, human)
    if result.status != "ok":
        state.result_printed = True
        raise BehaviourDrift(f"{artifact}: behaviour drifted from its fingerprint: "
                             + "; ".join(result.reasons), distance=result.distance,
                             threshold=result.threshold, reasons=result.reasons)


@behaviour.command("canaries")
@click.option("--policy", "policy_path", metavar="PRESET|FILE",
              help="The safety policy the filter runs with: a preset (default, phi) or a "
                   "policy TOML (default: the shipped default policy).")
@click.option("--canaries", "canaries_path", type=click.Path(dir_okay=False, exists=True,
                                                             path_type=Path),
              help="A signed canary set (default: the packaged edgeward-canaries/1); needs "
                   "--trust.")
@click.option("--trust", "trust_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The trust store that holds the --canaries signer (publisher or operator).")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Record the rates as expected for this policy and sign the set with this "
                   "private key (with --out).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the signed canary set (with --key; never overwritten).")
@click.option("--passphrase-env", metavar="VAR",
              help="Name of an environment variable holding the private key's passphrase.")
@json_option
def canaries(*, policy_path: str | None, canaries_path: Path | None, trust_dir: Path | None,
             key_path: Path | None, out_path: Path | None, passphrase_env: str | None,
             as_json: bool) -> None:
    """Run the safety canaries through the bundled filter and compare each family's block
    rate with the set's expected one (exit 10 on drift). With --key and --out: record the
    rates as the expected ones for this policy and write a signed set for the agents
    ([behaviour] canaries = PATH).

    JSON: status, rates, expected, tolerance, drifts, policy, policy_digest; with --out also
    out, signed_by.
    """
    import os

    from edgeward._cli._output import write_new
    from edgeward.behaviour import (
        CANARY_FAMILIES,
        load_canary_set,
        record_expected,
        run_canaries,
        sign_canary_set,
    )
    from edgeward.errors import ConfigError
    from edgeward.provenance import load_private_key
    from edgeward.safety import load_filter

    if (key_path is None) != (out_path is None):
        raise ConfigError("--key and --out go together: the set is recorded and signed into "
                          "--out with --key")
    if canaries_path is not None and trust_dir is None:
        raise ConfigError("--canaries needs --trust: a canary set file is verified first")
    flt = load_filter(policy_path or "default")
    cs = load_canary_set(canaries_path, trust_store=trust_dir)

    def decide(text: str) -> bool:
        return flt.check(text).action == "block"

    policy = {"policy": flt.policy.source, "policy_digest": flt.policy.digest}
    if key_path is not None and out_path is not None:
        passphrase = None
        if passphrase_env is not None:
            value = os.environ.get(passphrase_env)
            if value is None:
                raise ConfigError(f"--passphrase-env {passphrase_env}: that environment "
                                  "variable is not set")
            passphrase = value.encode()
        key = load_private_key(key_path, passphrase=passphrase)
        recorded = record_expected(cs, decide, policy_digest=flt.policy.digest)
        write_new(out_path, sign_canary_set(recorded, key).decode("utf-8"))
        made = {"canary_set": recorded.id, "sha256": recorded.sha256, **policy,
                "counts": recorded.counts, "expected": recorded.expected,
                "tolerance": recorded.tolerance, "out": str(out_path),
                "signed_by": key.key_id}

        def human_made() -> None:
            out.print(f"recorded {recorded.id} for policy {flt.policy.source}")
            for fam in CANARY_FAMILIES:
                out.print(f"  {fam:<10} {recorded.counts[fam]:>3} canaries  blocked "
                          f"{recorded.expected[fam]:6.1%}  tolerance "
                          f"{recorded.tolerance[fam]:.3f}")
            out.print(f"signed set: {out_path} (key {key.key_id[:16]}…)")
            out.print("  on a device: [behaviour] canaries = PATH in agent.toml")

        emit(as_json, made, human_made)
        return
    result = run_canaries(cs, decide)
    mismatch = cs.policy_digest is not None and cs.policy_digest != flt.policy.digest
    d = {**result.to_dict(), **policy, "policy_digest_expected": cs.policy_digest,
         "recorded_for_this_policy": not mismatch}
    _print_canaries(as_json, d, result.reasons, counts=cs.counts, mismatch=mismatch)
    if result.status != "ok":
        state.result_printed = True
        raise BehaviourDrift(f"safety canaries drifted ({cs.id}): " + ", ".join(
            f"{x.family} {x.direction}" for x in result.drifts), reasons=result.reasons)


def _print_canaries(as_json: bool, d: dict[str, Any], reasons: tuple[str, ...], *,
                    counts: dict[str, int], mismatch: bool) -> None:
    from rich import box
    from rich.table import Table

    def human() -> None:
        drifted = {x["family"]: x["direction"] for x in d["drifts"]}
        out.print(f"canaries {d['canary_set']}, policy {d['policy']}")
        table = Table(box=box.SIMPLE_HEAD)
        for col in ("family", "canaries", "blocked", "expected", "tolerance", "verdict"):
            table.add_column(col, justify="left" if col in ("family", "verdict") else "right")
        for fam, rate in d["rates"].items():
            verdict = drifted.get(fam, "ok")
            style = "green" if verdict == "ok" else "red"
            table.add_row(fam, str(counts[fam]), f"{rate:.1%}", f"{d['expected'][fam]:.1%}",
                          f"±{d['tolerance'][fam]:.1%}", f"[{style}]{verdict}[/{style}]")
        out.print(table)
        verdict = "ok: every family within tolerance" if d["status"] == "ok" else "DRIFT"
        out.print(verdict)
        for reason in reasons:
            out.print(f"  - {reason}")
        if mismatch:
            out.print("  note: expected rates were recorded with another policy "
                      f"({d['policy_digest_expected'][:15]}…);")
            out.print("  record them for this one with --key KEY --out FILE")

    emit(as_json, d, human)
