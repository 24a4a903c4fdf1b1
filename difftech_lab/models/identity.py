"""A model's identity: a content hash of its weight files, so a Recipe can tell which weights made it.

Names are not enough: a retrained model keeps its name (the bundled one does), and two folders may share one.
The hash covers every weight file of a diffusers folder (with its path inside the folder, so swapped components
differ) or the single checkpoint file; it is read once per process and path, on first use.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
HASH_CHARS = 12  # like A1111's short model hash: enough to tell models apart, short enough to read


def weights_hash(source: str | Path) -> str:
    """The short SHA-256 of the weights at ``source`` (a folder or a file); "" when it holds no weight file."""
    path = Path(source)
    if not path.exists():
        return ""
    stat = path.stat()
    return _hash(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _hash(path: str, mtime_ns: int, size: int) -> str:  # keyed by stat too: a replaced checkpoint is read again
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
    if not files:
        return ""
    digest = hashlib.sha256()
    for file in files:
        if file != root:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:HASH_CHARS]
