"""On-disk cache of example embeddings and the fitted head, keyed by content hashes.

A warm start embeds nothing and fits nothing. Example embeddings are stored per domain, named by
the SHA-256 of the embedder's fingerprint and the exact texts embedded, so editing one domain file
re-embeds only that domain; the head is keyed by every domain's key plus the method's settings.
A missing, unreadable or mismatched file is recomputed; a directory that cannot be written only
costs speed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt
import structlog

log = structlog.get_logger(__name__)


def content_key(*parts: object) -> str:
    """A SHA-256 over JSON-encodable parts (texts, fingerprints, settings)."""
    return hashlib.sha256(msgspec.json.encode(list(parts))).hexdigest()


class ArrayCache:
    """Memoises float32 arrays on disk under ``directory`` (``None``: compute every time)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def get(
        self, key: str, shape: Sequence[int], compute: Callable[[], npt.NDArray[np.float32]]
    ) -> npt.NDArray[np.float32]:
        if self.directory is None:
            return compute()
        path = self.directory / f"{key}.npy"
        cached = self._read(path, tuple(shape))
        if cached is not None:
            return cached
        array = np.ascontiguousarray(compute(), dtype=np.float32)
        self._write(path, array)
        return array

    def _read(self, path: Path, shape: tuple[int, ...]) -> npt.NDArray[np.float32] | None:
        try:
            array = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("classify.cache_unreadable", path=str(path), error=str(exc))
            return None
        if array.shape != shape or array.dtype != np.float32:
            log.warning("classify.cache_mismatch", path=str(path), shape=list(array.shape))
            return None
        return array

    def _write(self, path: Path, array: npt.NDArray[np.float32]) -> None:
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, array, allow_pickle=False)
            os.replace(tmp, path)  # atomic: concurrent starters never read half a file
        except OSError as exc:
            log.warning("classify.cache_unwritable", path=str(path), error=str(exc))
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
