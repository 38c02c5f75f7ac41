"""``edgeward behaviour``: make and check behavioural fingerprints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
