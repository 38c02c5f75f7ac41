"""Pack a trained safety encoder over the packaged MiniLM (see edgeward.safety._encoder_pack).

    .venv/bin/python scripts/pack_safety_encoder.py MODEL.onnx [--dir DIR]

Writes ``DIR/model-delta.npz.xz`` (default: the package's encoder directory), records the pack
under ``pack`` in ``DIR/encoder.json`` and removes ``DIR/model.onnx`` if it is there: the
package ships the pack, and the stage rebuilds the model from it at load, checked by sha256.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / "src" / "edgeward" / "safety" / "model" / "encoder"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="the trained int8 model.onnx")
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                    help="the encoder directory (with encoder.json)")
    args = ap.parse_args(argv)
    from edgeward.errors import EdgewardError
    from edgeward.packaged_models import minilm_dir
    from edgeward.safety._encoder_pack import PACK_NAME, pack

    try:
        record_path = args.dir / "encoder.json"
        record = json.loads(record_path.read_text(encoding="utf-8"))
        record["pack"] = pack(args.model, minilm_dir() / "model.safetensors",
                              args.dir / PACK_NAME)
    except (EdgewardError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    record_path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n",
                           encoding="utf-8")
    (args.dir / "model.onnx").unlink(missing_ok=True)  # the pack stands for it now
    print(json.dumps(record["pack"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
