"""Atomic file writing, config hashing and tensor caches.

Every file xaibench writes goes through :func:`atomic_write`: a temporary file in the same
folder, fsync, then ``os.replace``; a crash leaves either the old file or the new one, never
half of one. Cached tensors carry a SHA-256 checksum of their payload, so a corrupt cache file is
detected and recomputed instead of being read as data.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` atomically: ``write`` fills a temporary file that then replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600 files; use the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # name the file that did not fit (a full disk, say)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_csv(path: Path, frame: Any) -> None:
    """A pandas DataFrame as CSV (numbers to 6 significant digits, no index), atomically."""
    write_text(path, frame.to_csv(index=False, float_format="%.6g", lineterminator="\n"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_checked(path: Path, obj: Any) -> None:
    """torch.save ``obj`` with a SHA-256 checksum header, atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode()
    atomic_write(path, lambda f: (f.write(digest + b"\n"), f.write(payload)))


def checksum_of(path: Path) -> str:
    """The SHA-256 header of a file written by :func:`save_checked` (identifies its content)."""
    with open(path, "rb") as f:
        return f.readline().strip().decode()


def is_valid(path: Path) -> bool:
    """Whether ``path`` is a complete, intact file written by :func:`save_checked` (the checksum
    is verified; nothing is unpickled)."""
    try:
        blob = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False
    digest, _, payload = blob.partition(b"\n")
    return hashlib.sha256(payload).hexdigest().encode() == digest


def load_checked(path: Path) -> Any | None:
    """The object saved by :func:`save_checked`, or None when missing, partial or corrupt."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    digest, _, payload = blob.partition(b"\n")
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        return None
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)


def to_half(maps: torch.Tensor) -> dict[str, torch.Tensor]:
    """Maps [B,H,W] as float16 relative to each map's max |a|, with that max kept in float32.

    Plain float16 flushes values below ~6e-8 to zero and keeps few digits below ~6e-5, and some
    methods' maps are that small (e.g. relevance conserved to a small logit); relative to its own
    maximum every map keeps float16's ~3 significant digits wherever it is not near zero.
    """
    scale = maps.abs().flatten(1).amax(1).float()
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return {"maps": (maps / safe.view(-1, 1, 1)).half().cpu(), "scale": scale.cpu()}


def from_half(shard: dict[str, torch.Tensor]) -> torch.Tensor:
    """The float32 maps [B,H,W] stored by :func:`to_half`."""
    return shard["maps"].float() * shard["scale"].view(-1, 1, 1)
