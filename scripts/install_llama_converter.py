"""Install llama.cpp's Hugging Face -> GGUF converter for the installed llama-cpp-python.

``convert_hf_to_gguf.py`` (with its ``conversion/`` package, ``gguf-py``, requirements and
llama.cpp's LICENSE) is extracted from the llama-cpp-python sdist of the installed version
into ``<venv>/share/edgeward/llama.cpp`` (or ``--dest``), with a stamp recording the version
and the sdist's sha256. ``make setup`` runs it with the sdist it built llama-cpp-python from:

    .venv/bin/python scripts/install_llama_converter.py --sdist llama_cpp_python-0.3.36.tar.gz
    .venv/bin/python scripts/install_llama_converter.py      # pip-downloads the sdist
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeward.compress import default_converter_dir, install_converter
from edgeward.errors import EdgewardError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, default=None,
                        help="a local llama_cpp_python-<version>.tar.gz (default: pip download "
                             "the installed version's sdist from PyPI)")
    parser.add_argument("--dest", type=Path, default=None,
                        help=f"install directory (default: {default_converter_dir()})")
    args = parser.parse_args(argv)
    try:
        dest = install_converter(args.dest, sdist=args.sdist)
    except EdgewardError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"llama.cpp converter installed in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
