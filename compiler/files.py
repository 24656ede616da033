"""The files netc writes and reads back, one way each: `atomic_write` (a temporary file beside
the target, fsynced, renamed into place: a reader sees the old file or the new one, never half
of one, and a failed write leaves no stray temporary), and `read_arrays` (a `.npz`/`.npy` file
read without pickle; a damaged, truncated or foreign file raises the caller's user-error type
with the reason, never numpy's or zipfile's exception)."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import warnings
import zipfile
import zlib
from typing import Dict, Union

import numpy as np


def fsync_dir(path: str) -> None:
    """Make a rename inside `path` durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", **kw):
    """`with atomic_open(path) as f: f.write(...)`: the file appears at `path` complete, or
    not at all (an exception, a kill or a full disk leave the old file, if any)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    parent = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(parent)


def atomic_write(path: str, data: Union[str, bytes]) -> None:
    """Write `data` (text as UTF-8, or bytes) to `path` atomically."""
    if isinstance(data, str):
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.write(data)
    else:
        with atomic_open(path, "wb") as f:
            f.write(data)


# numpy's reader raises a dozen kinds of exception on foreign bytes (BadZipFile, a bad CRC,
# zlib.error, EOFError, ValueError, tokenize.TokenError and SyntaxError from the header, ...):
# reading an untrusted file, every one of them means "not a readable file"
_DAMAGE = Exception


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e)
    if "pickle" in text:        # numpy's "if you trust the file ... allow_pickle" is not for users
        return "it holds Python objects (pickled data), which netc never loads"
    if isinstance(e, (zipfile.BadZipFile, zlib.error)) or "CRC" in text:
        return f"damaged or truncated ({text})" if text else "damaged or truncated"
    if isinstance(e, MemoryError):
        return "an array is larger than this machine's memory"
    return text or type(e).__name__


def read_arrays(path: str, error: type, message: str = "{path}: not a readable .npz/.npy file ({reason})"
                ) -> Union[np.ndarray, Dict[str, np.ndarray]]:
    """The arrays of a `.npz` file (a dict, every member read and CRC-checked) or of a `.npy`
    file (one array), never unpickling; anything unreadable raises `error(message)`, the
    message formatted with `path` and `reason`."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if not (magic.startswith(b"PK\x03\x04") or magic.startswith(b"PK\x05\x06") or magic == b"\x93NUMPY"):
            raise ValueError("not a .npz or .npy file" if magic else "the file is empty")
        with warnings.catch_warnings():         # numpy's advice about old headers is not for users
            warnings.simplefilter("ignore")
            z = np.load(path, allow_pickle=False)
        if isinstance(z, np.ndarray):
            return z
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("not a .npz or .npy file")
        with z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise error(message.format(path=path, reason="file not found")) from None
    except _DAMAGE as e:
        raise error(message.format(path=path, reason=_reason(e))) from None
