"""Reading pickled numpy arrays without running arbitrary code.

``pickle.load`` can call any importable function, so a data file from the internet must not be
unpickled freely. The CIFAR-100 ``python`` batches and the Mini-ImageNet ``.pkl`` caches only
need numpy's array reconstruction; this unpickler allows those globals and refuses all others.
"""
from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import IO, Any

# (module, name) pairs a pickled ndarray / numpy scalar / dtype refers to. numpy 2 moved
# ``numpy.core`` to ``numpy._core``; both spellings appear in files in the wild.
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),   # protocol 5 arrays
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),                   # how protocol-2 pickles spell bytes
}


class UnsafePickleError(pickle.UnpicklingError):
    """The file asks for something other than numpy arrays."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that builds dicts, lists, strings, numbers and numpy arrays, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(
                f"refusing to unpickle {module}.{name}: only numpy arrays are allowed in a data file")
        if module.startswith("numpy.core"):
            try:  # numpy >= 2: the same function, without the deprecation warning
                return getattr(importlib.import_module(module.replace("numpy.core", "numpy._core", 1)), name)
            except ImportError:
                pass
        return getattr(importlib.import_module(module), name)


def load(file: IO[bytes], encoding: str = "ASCII") -> Any:
    """``pickle.load`` restricted to numpy arrays (``encoding='bytes'`` for Python 2 pickles)."""
    return NumpyOnlyUnpickler(file, encoding=encoding).load()


def load_path(path: str | Path, encoding: str = "ASCII") -> Any:
    """:func:`load` of a file; a refused or broken pickle becomes a ValueError naming the file."""
    try:
        with open(path, "rb") as f:
            return load(f, encoding)
    except UnsafePickleError as e:
        raise ValueError(f"{path}: {e}. This is not a plain array file; delete it and get the data "
                         "again from a source you trust") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"{path} is not a readable pickle ({type(e).__name__}: {e}); it may be "
                         "truncated: get it again") from None
