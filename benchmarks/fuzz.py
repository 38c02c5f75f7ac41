"""Benchmark: fuzz every parser of outside input; counts internal errors and hangs. Prints JSON.

Issue 18's figure: 0 internal errors and 0 hangs over >= 100,000 generated inputs per parser.
An *internal error* is any exception outside edgeward's one error tree (``EdgewardError``);
a *hang* is an input that takes longer than ``--hang-s`` (a timer interrupts it).

Each parser gets inputs of three kinds, from a fixed seed (reproducible):

- byte mutations of a valid document (flips, insertions, deletions, truncation, splices);
- structural hostility spliced into a valid document: deep nesting, lone surrogates, huge
  numbers, NaN, wrong types in every field, very long strings;
- random bytes.

    .venv/bin/python benchmarks/fuzz.py [--n 100000] [--parsers gguf,policy,...] [--seed 0]

The bounded versions of these (a few hundred hypothesis examples per parser) run in
``make test``: tests/runtimes/test_gguf_header_hostile.py, tests/test_safe_reads.py,
tests/test_fuzz_parsers.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from edgeward.errors import EdgewardError

_HOSTILE = [b"[" * 5000, b"{\"a\":" * 3000, b"\"\\ud800\"", b"NaN", b"1e999999",
            b"9" * 5000, b"\"" + b"A" * 100_000 + b"\"", b"null", b"true", b"[]", b"{}",
            b"-0", b"\x00", b"\xff\xfe", b"\"\\u0000\"", b"[[[[[[[[[[]]]]]]]]]]"]


class _Hang(Exception):  # noqa: N818 - a signal, caught below
    pass


def _alarm(_sig: int, _frame: FrameType | None) -> None:
    raise _Hang


def mutate(seed: bytes, rng: random.Random) -> bytes:
    """One hostile variant of ``seed``."""
    data = bytearray(seed)
    kind = rng.randrange(6)
    if kind == 0 or not data:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 256)))
    if kind == 1:  # flips
        for _ in range(rng.randrange(1, 9)):
            data[rng.randrange(len(data))] = rng.getrandbits(8)
    elif kind == 2:  # truncation
        del data[rng.randrange(len(data)):]
    elif kind == 3:  # splice a hostile snippet at a random place
        at = rng.randrange(len(data) + 1)
        data[at:at + rng.randrange(0, 16)] = rng.choice(_HOSTILE)
    elif kind == 4:  # replace a JSON/TOML value after a separator with a hostile one
        seps = [i for i, b in enumerate(data) if b in b":="]
        if seps:
            at = rng.choice(seps) + 1
            end = at
            while end < len(data) and data[end] not in b",}\n]":
                end += 1
            data[at:end] = rng.choice(_HOSTILE)
    else:  # duplicate a slice
        a = rng.randrange(len(data))
        b = min(len(data), a + rng.randrange(1, 64))
        data[a:a] = data[a:b] * rng.randrange(1, 50)
    return bytes(data)


# -- the parsers: each returns (valid seed, run(input)) ------------------------------------

def _via_file(target: Path, parse: Callable[[Path], object]) -> Callable[[bytes], object]:
    """A run() that writes the input to ``target`` and parses the file, as a user's is."""
    def run(data: bytes) -> object:
        target.write_bytes(data)
        return parse(target)

    return run


def _gguf(tmp: Path) -> tuple[bytes, Callable[[bytes], object]]:
    from _models import write_tiny_gguf
    from edgeward.runtimes import read_gguf_header

    seed_path = write_tiny_gguf(tmp / "seed.gguf")
    header = read_gguf_header(seed_path)
    seed = seed_path.read_bytes()[:header.data_offset]  # what is parsed
    data_bytes = header.file_size - header.data_offset
    target = tmp / "f.gguf"

    def run(data: bytes) -> object:
        with target.open("wb") as f:  # the tensor data as a sparse tail: same size, no I/O
            f.write(data)
            f.truncate(len(data) + data_bytes)
        return read_gguf_header(target)

    return seed, run


def _policy(tmp: Path) -> tuple[bytes, Callable[[bytes], object]]:
    from importlib import resources

    from edgeward.safety import load_policy

    seed = (resources.files("edgeward.safety") / "policies" / "phi.toml").read_bytes()
    return seed, _via_file(tmp / "p.toml", load_policy)


def _trust_store(tmp: Path) -> tuple[bytes, Callable[[bytes], object]]:
    from edgeward.provenance import Role, TrustStore, generate_key

    store = tmp / "trust"
    TrustStore.open(store, create=True).add(generate_key().public_key, [Role.PUBLISHER],
                                             name="fuzz")
    seed = (store / "index.toml").read_bytes()

    return seed, _via_file(store / "index.toml", lambda _index: TrustStore.open(store))


def _envelope(tmp: Path) -> tuple[bytes, Callable[[bytes], object]]:
    from edgeward.provenance import Envelope, generate_key, sign_payload

    seed = sign_payload(b'{"a": 1}', "application/vnd.in-toto+json", generate_key()).to_json()

    def run(data: bytes) -> object:
        return Envelope.from_json(data, source="fuzz")

    return seed, run


def _command(tmp: Path) -> tuple[bytes, Callable[[bytes], object]]:
    from edgeward.fleet.protocol import decode_command, encode_command, new_command
    from edgeward.provenance import Role, TrustStore, generate_key

    key = generate_key()
    store = TrustStore.open(tmp / "ops", create=True)
    store.add(key.public_key, [Role.OPERATOR], name="op")
    cmd = new_command("dev-1", "deploy", version=1, params={"artifact_digest": "ab" * 32})
    wire = encode_command(cmd, key)

    def run(data: bytes) -> object:
        return decode_command(wire.topic, data, store)

    return bytes(wire.payload), run


def _telemetry(tmp: Path) -> tuple[bytes, Callable[[bytes], object]]:
    from edgeward.fleet.protocol import HealthReport, HealthSample, decode, encode
    from edgeward.provenance import Role, TrustStore, generate_key

    key = generate_key()
    store = TrustStore.open(tmp / "devs", create=True)
    store.add(key.public_key, [Role.DEVICE], name="dev-1")
    msg = HealthReport(device_id="dev-1", seq=1, time=time.time(),
                       metrics=HealthSample(uptime_s=5.0, queue_depth=1))
    wire = encode(msg, key)

    def run(data: bytes) -> object:
        return decode(wire.topic, data, store, key_id=key.key_id)

    return bytes(wire.payload), run


def _http_body(tmp: Path) -> tuple[bytes, Callable[[bytes], object]]:
    from edgeward.device_agents._openai import ApiError, parse_chat, parse_completion
    from edgeward.errors import ConfigError
    from edgeward.safeio import parse_json

    seed = json.dumps({"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                                  {"role": "user", "content": "hi"}],
                       "max_tokens": 8, "temperature": 0.2, "top_p": 0.9, "top_k": 40,
                       "stop": ["\n"], "stream": True, "seed": 3,
                       "stream_options": {"include_usage": True}}).encode()

    def run(data: bytes) -> object:
        body = parse_json(data, what="request body")  # as the agent's app does
        if not isinstance(body, dict):
            raise ConfigError("not an object")
        try:
            parse_chat(body, default_max_tokens=16, cap=64)
            return parse_completion({**body, "prompt": "x"}, default_max_tokens=16, cap=64)
        except ApiError as e:  # the agent's 400: a refusal, as intended
            raise ConfigError(str(e)) from None

    return seed, run


def _agent_config(tmp: Path) -> tuple[bytes, Callable[[bytes], object]]:
    from edgeward.device_agents import load_agent_config

    (tmp / "m.gguf").write_bytes(b"GGUF")
    (tmp / "trust").mkdir()
    seed = (b'artifact = "m.gguf"\ntrust_store = "trust"\ndevice_id = "dev-1"\n'
            b'listen = "127.0.0.1:8080"\nmax_queue = 8\nmax_tokens_cap = 1024\n'
            b'default_max_tokens = 256\nsafety_policy = "default"\n'
            b'[telemetry]\nbroker = "mqtt://127.0.0.1:1883"\n')
    return seed, _via_file(tmp / "agent.toml", load_agent_config)


def _bundle_manifest(tmp: Path) -> tuple[bytes, Callable[[bytes], object]]:
    from edgeward.device_agents import _bundle

    bundle = tmp / "bundle"
    bundle.mkdir()
    seed = json.dumps({"format": 1, "artifact": "m.gguf", "created": "2026-12-03T00:00:00Z",
                       "files": {"artifact/m.gguf": "ab" * 32,
                                 "artifact/m.gguf.edgeward.json": "cd" * 32,
                                 "trust/index.toml": "ef" * 32}}, indent=2).encode()

    return seed, _via_file(bundle / "MANIFEST.json", lambda _m: _bundle._read_manifest(bundle))


PARSERS: dict[str, Callable[[Path], tuple[bytes, Callable[[bytes], object]]]] = {
    "gguf_header": _gguf,
    "safety_policy": _policy,
    "trust_store_index": _trust_store,
    "dsse_envelope": _envelope,
    "command": _command,
    "telemetry": _telemetry,
    "http_body": _http_body,
    "agent_config": _agent_config,
    "bundle_manifest": _bundle_manifest,
}


def fuzz(name: str, n: int, seed: int, hang_s: float) -> dict[str, Any]:
    rng = random.Random(f"{seed}:{name}")
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) \
            as d:
        valid, run = PARSERS[name](Path(d))
        counts = {"ok": 0, "refused": 0, "internal_errors": 0, "hangs": 0}
        examples: list[dict[str, str]] = []
        slowest = 0.0
        old = signal.signal(signal.SIGALRM, _alarm)
        t0 = time.perf_counter()
        try:
            for _ in range(n):
                data = mutate(valid, rng)
                start = time.perf_counter()
                signal.setitimer(signal.ITIMER_REAL, hang_s)
                try:
                    run(data)
                    counts["ok"] += 1
                except _Hang:
                    counts["hangs"] += 1
                    examples.append({"kind": "hang", "input": data[:200].hex()})
                except EdgewardError:
                    counts["refused"] += 1
                except Exception as e:  # noqa: BLE001 - what we are counting
                    counts["internal_errors"] += 1
                    if len(examples) < 5:
                        examples.append({"kind": type(e).__name__, "error": str(e)[:200],
                                         "input": data[:200].hex()})
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                slowest = max(slowest, time.perf_counter() - start)
        finally:
            signal.signal(signal.SIGALRM, old)
        return {"parser": name, "inputs": n, **counts, "slowest_input_s": round(slowest, 4),
                "seconds": round(time.perf_counter() - t0, 1), "examples": examples}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="inputs per parser")
    ap.add_argument("--parsers", default=",".join(PARSERS),
                    help=f"comma-separated, of {', '.join(PARSERS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hang-s", type=float, default=2.0)
    args = ap.parse_args()
    names = [p for p in args.parsers.split(",") if p]
    unknown = sorted(set(names) - set(PARSERS))
    if unknown:
        ap.error(f"unknown parsers {unknown}; choose from {', '.join(PARSERS)}")
    results = [fuzz(p, args.n, args.seed, args.hang_s) for p in names]
    out = {"benchmark": "fuzz", "machine": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "python": platform.python_version(), "seed": args.seed,
           "results": results,
           "figure": {"internal_errors": sum(r["internal_errors"] for r in results),
                      "hangs": sum(r["hangs"] for r in results),
                      "min_inputs_per_parser": min(r["inputs"] for r in results),
                      "target": "0 internal errors, 0 hangs, >= 100,000 inputs per parser"}}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
