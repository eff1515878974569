"""Read PyTorch ``.pt`` files as plain data, without arbitrary code execution.

``torch.save`` writes a zip whose ``*/data.pkl`` is a pickle. Unpickling can call any importable
callable, so a downloaded file is read with an unpickler that resolves only the few globals a plain
data file needs (numpy scalars and their dtype, and ``_codecs.encode`` that numpy uses for their
bytes) and refuses tensors (persistent ids). Anything else is rejected with an error naming it.
No torch import is needed.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

from latbench.errors import DataError, UnsafePickleError


def _allowed():
    import codecs

    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    scalar = multiarray.scalar
    return {
        ("numpy.core.multiarray", "scalar"): scalar,
        ("numpy._core.multiarray", "scalar"): scalar,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, origin: str):
        super().__init__(file)
        self._origin = origin
        self._globals = _allowed()

    def find_class(self, module, name):
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._origin}: refuses to load {module}.{name} (only plain data and numpy scalars are allowed)"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._origin}: contains a tensor/storage reference; only plain data is allowed")


def loads(data: bytes, origin: str = "<bytes>"):
    try:
        return _RestrictedUnpickler(io.BytesIO(data), origin).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # truncated or garbage pickle stream
        raise DataError(f"{origin}: not a readable pickle ({type(e).__name__}: {e})") from None


def load_pt(path: str | Path):
    """The object stored in a ``torch.save`` zip file (or a raw pickle), as plain Python/numpy data."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if zipfile.is_zipfile(io.BytesIO(raw)):
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                names = [n for n in z.namelist() if n.endswith("data.pkl")]
                if len(names) != 1:
                    raise DataError(f"{path}: expected one data.pkl in the torch zip, found {len(names)}")
                raw = z.read(names[0])
        except zipfile.BadZipFile as e:
            raise DataError(f"{path}: corrupt zip archive ({e})") from None
    return loads(raw, str(path))
