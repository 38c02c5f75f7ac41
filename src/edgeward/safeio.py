"""Reading what comes from outside: regular files only, never blocking, never unbounded.

Every file edgeward reads from disk that someone else could have put there (signatures,
manifests, policies, configs, trust-store keys, artifacts) goes through this module:

- :func:`open_regular` opens without blocking (a FIFO in place of a file does not hang the
  open) and refuses anything that is not a regular file once opened (a FIFO, a socket,
  ``/dev/zero`` or any device, a directory), whether it was named directly or through a
  symlink;
- :func:`read_capped` reads a small file whole, up to a cap (a signature symlinked to
  ``/dev/zero`` or a 600 MB "manifest" is refused before it costs memory);
- :func:`copy_capped` copies a file up to the size a signed statement declares;
- :func:`parse_json` parses with depth and size limits and without lone surrogates, so a
  hostile document ends in the documented error instead of ``RecursionError`` or a
  ``UnicodeEncodeError`` far from the parser; :func:`parse_toml` likewise for TOML.

Errors are :class:`~edgeward.errors.ConfigError` (exit 3) unless the caller names another
class of the one tree; the message says which file, what was wrong and the limit.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgeward.errors import ConfigError, EdgewardError

__all__ = ["JSON_MAX_DEPTH", "MAX_CONFIG_BYTES", "MAX_KEY_BYTES", "MAX_MANIFEST_BYTES",
           "MAX_SIGNATURE_BYTES", "copy_capped", "open_regular", "parse_json", "parse_toml",
           "read_capped", "read_text_capped"]

MAX_SIGNATURE_BYTES = 16 << 20   # a DSSE envelope; a directory of 100,000 files is ~12 MB
MAX_MANIFEST_BYTES = 16 << 20    # a bundle manifest, a report, a signed statement's payload
MAX_CONFIG_BYTES = 1 << 20       # policies, agent/fleet configs, profiles
MAX_KEY_BYTES = 64 << 10         # one trust-store or key file
JSON_MAX_DEPTH = 64              # no document edgeward reads nests deeper than ~8

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
_SURROGATE = re.compile(r"\\[uU][dD][89a-fA-F][0-9a-fA-F]{2}")

ErrorClass = Callable[[str], EdgewardError]


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path: Path, *, what: str = "file", error: ErrorClass = ConfigError
                 ) -> io.BufferedReader:
    """Open ``path`` for reading if it is (or links to) a regular file; never blocks.

    Raises:
        ``error``: it does not exist, cannot be opened, or is not a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{path}: no such file (the {what})") from None
    except OSError as e:
        raise error(f"{path}: cannot open the {what} ({e.strerror})") from e
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{path}: the {what} is {_kind(mode)}, not a regular file; "
                        "replace it with the file itself")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_capped(path: Path, cap: int, *, what: str = "file",
                error: ErrorClass = ConfigError) -> bytes:
    """All of a regular file of at most ``cap`` bytes.

    Raises:
        ``error``: see :func:`open_regular`; or it is larger than ``cap``.
    """
    with open_regular(path, what=what, error=error) as f:
        size = os.fstat(f.fileno()).st_size
        if size > cap:
            raise error(f"{path}: the {what} is {size:,} bytes; at most {cap:,} are read")
        data = f.read(cap + 1)
    if len(data) > cap:  # it grew while being read
        raise error(f"{path}: the {what} is over {cap:,} bytes; at most {cap:,} are read")
    return data


def read_text_capped(path: Path, cap: int = MAX_CONFIG_BYTES, *, what: str = "file",
                     error: ErrorClass = ConfigError) -> str:
    """:func:`read_capped`, decoded as UTF-8.

    Raises:
        ``error``: as :func:`read_capped`, or the bytes are not UTF-8.
    """
    data = read_capped(path, cap, what=what, error=error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: the {what} is not UTF-8 text (byte {e.start})") from None


def copy_capped(src: Path, dst: Path, cap: int, *, what: str = "artifact",
                error: ErrorClass = ConfigError, block: int = 1 << 20) -> int:
    """Copy the regular file ``src`` to ``dst`` (created, not followed) if it is at most
    ``cap`` bytes; returns the bytes copied. ``dst`` is removed when the copy fails.

    Raises:
        ``error``: see :func:`open_regular`; ``src`` holds more than ``cap`` bytes.
        OSError: ``dst`` cannot be written.
    """
    with open_regular(src, what=what, error=error) as f:
        size = os.fstat(f.fileno()).st_size
        if size > cap:
            raise error(f"{src}: the {what} is {size:,} bytes, more than the {cap:,} its "
                        "signed statement declares")
        done = 0
        try:
            with Path(dst).open("xb") as out:
                while chunk := f.read(min(block, cap + 1 - done)):
                    done += len(chunk)
                    if done > cap:
                        raise error(f"{src}: the {what} grew past the {cap:,} bytes its "
                                    "signed statement declares while it was copied")
                    out.write(chunk)
        except BaseException:
            Path(dst).unlink(missing_ok=True)
            raise
    return done


def parse_json(data: bytes | str, *, what: str = "document", max_depth: int = JSON_MAX_DEPTH,
               error: ErrorClass = ConfigError) -> Any:
    """``json.loads`` for input from outside: nesting over ``max_depth``, lone UTF-16
    surrogates (``"\\ud800"``), NaN/Infinity and invalid UTF-8 are refused with ``error``.

    The size limit is the caller's (it knows what it read); the depth is checked on the
    parsed value without recursion, and the parser's own recursion limit is caught.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise error(f"the {what} nests deeper than {max_depth} levels") from None
    except UnicodeDecodeError as e:
        raise error(f"the {what} is not UTF-8 (byte {e.start})") from None
    except ValueError as e:
        raise error(f"the {what} is not valid JSON ({e})") from None
    _check_depth(value, max_depth, what, error)
    if _SURROGATE.search(text):
        _check_surrogates(value, what, error)
    return value


def parse_toml(text: str, *, what: str = "document", error: ErrorClass = ConfigError
               ) -> dict[str, Any]:
    """``tomllib.loads`` for input from outside: every way it can fail (bad TOML, nesting
    past the interpreter's recursion limit, integers longer than Python converts) is
    ``error``, its message starting with ``what`` (the file's path, usually)."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise error(f"{what}: not valid TOML (nested too deeply)") from None
    except ValueError as e:  # TOMLDecodeError, and integers of more than 4,300 digits
        raise error(f"{what}: not valid TOML ({e})") from None
    # TOML integers are 64-bit; tomllib returns any size (0x9999… of 5,000 digits parses, and
    # then formatting it in an error message raises ValueError).
    for item, _depth in _walk(data):
        if isinstance(item, int) and not -(1 << 63) <= item < 1 << 63:
            raise error(f"{what}: not valid TOML (an integer outside the 64-bit range)")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _walk(value: Any) -> Iterator[tuple[Any, int]]:
    """Every node of a parsed document (dict keys included) with its depth, without
    recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        yield item, depth
        if isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _check_depth(value: Any, max_depth: int, what: str, error: ErrorClass) -> None:
    for item, depth in _walk(value):
        if depth > max_depth and isinstance(item, dict | list):
            raise error(f"the {what} nests deeper than {max_depth} levels")


def _check_surrogates(value: Any, what: str, error: ErrorClass) -> None:
    for item, _depth in _walk(value):
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise error(f"the {what} holds a lone UTF-16 surrogate (\\ud800-\\udfff), "
                            "which is not text; send UTF-8") from None
