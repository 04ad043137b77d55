"""Compute kernels of the job suite: pure numerical code, no MPI and no I/O.

Three backends provide the same functions with the same signatures:

* ``numpy``: the readable reference (``kernels.numpy_backend``);
* ``cython``: the fast one (``kernels.cython_backend``, built by ``pip install -e .``);
* ``cuda``: GPU kernels through PyCUDA (``kernels.cuda_backend``, an optional extra:
  ``pip install '.[cuda]'``) for pi, heat2d, nbody and kmeans.

Pick one with :func:`load_backend`.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

CPU_BACKENDS = ("numpy", "cython")
BACKENDS = (*CPU_BACKENDS, "cuda")

_MODULES = {"numpy": "kernels.numpy_backend", "cython": "kernels.cython_backend",
            "cuda": "kernels.cuda_backend"}


_NOT_BUILT = "Cython kernels are not built: run `make setup` (or pip install -e .)"


def _check_name(name: str) -> None:
    if name not in _MODULES:
        valid = ", ".join(repr(b) for b in BACKENDS)
        raise ValueError(f"unknown kernel backend {name!r}: expected one of {valid}")


def find_backend(name: str) -> None:
    """:func:`load_backend`'s refusals of an unknown name or an unbuilt Cython extension,
    without importing the kernels (nor numpy): for a process that only starts the ranks,
    which load them for real. The CUDA backend is only checked by loading it."""
    _check_name(name)
    if name == "cython" and importlib.util.find_spec(_MODULES["cython"]) is None:
        raise ImportError(_NOT_BUILT)


def load_backend(name: str) -> ModuleType:
    """Return the kernel module of backend ``name`` (one of :data:`BACKENDS`).

    Raises ``ValueError`` for an unknown name and ``ImportError`` when the Cython extension
    has not been compiled or PyCUDA cannot be imported (not installed, or no NVIDIA driver).
    """
    _check_name(name)
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError as exc:
        # Only a missing compiled extension gets the build hint; any other import error
        # (a broken numpy, say) is re-raised as it is.
        if name == "cython" and exc.name == _MODULES["cython"]:
            raise ImportError(_NOT_BUILT) from exc
        if name == "cuda" and "libcuda" in str(exc):
            raise ImportError(
                f"CUDA backend unavailable: no NVIDIA driver (PyCUDA cannot load it: {exc})"
            ) from exc
        if name == "cuda" and exc.name == "pycuda":
            raise ImportError(
                "CUDA backend unavailable: PyCUDA is not installed: pip install '.[cuda]'"
            ) from exc
        raise
