"""Access to the compiled parts, with errors that say how to fix a missing one.

``nemocore._C`` holds the C++/CUDA kernels and ``nemocore._rs`` the Rust core. Both are built by
``pip install .``; a source checkout that was never built, or a build without CUDA asked to run
on a GPU, fails here with a message instead of an ``AttributeError`` deep inside an op.
"""

from __future__ import annotations

import functools
from types import ModuleType

import torch

_REBUILD = (
    "Build it with `pip install -e . --no-build-isolation` from a source checkout "
    "(see the README), and run `nemocore doctor` to see what was built."
)


@functools.cache
def kernels() -> ModuleType:
    """The ``nemocore._C`` extension module."""
    try:
        from nemocore import _C
    except ImportError as e:
        raise ImportError(
            f"nemocore._C (the C++/CUDA kernels) could not be loaded: {e}. {_REBUILD}"
        ) from e
    return _C


@functools.cache
def rust() -> ModuleType:
    """The ``nemocore._rs`` extension module."""
    try:
        from nemocore import _rs
    except ImportError as e:
        raise ImportError(
            f"nemocore._rs (the Rust core) could not be loaded: {e}. {_REBUILD}"
        ) from e
    return _rs


@functools.cache
def has_cuda_kernels() -> bool:
    """Whether ``_C`` was compiled with CUDA kernels."""
    return bool(kernels().build_info()["cuda"])


# Below this many scalar operations a CPU kernel runs on one thread: forking and joining the
# OpenMP team costs more than it saves, and on a busy machine the join waits for whichever
# thread the OS descheduled (a one-token decode step then took milliseconds, not microseconds).
SERIAL_WORK = 1 << 16


def launch_args(device: torch.device, work: int | None = None) -> tuple[int, int]:
    """``(num_threads, stream)`` for a kernel launch on ``device``.

    CPU kernels use ``torch.get_num_threads()`` threads, or one when ``work`` (an estimate of
    the kernel's scalar operations) is below ``SERIAL_WORK``; CUDA kernels run on torch's
    current stream of that device.
    """
    if device.type == "cuda":
        if not has_cuda_kernels():
            raise RuntimeError(
                "nemocore._C was built without CUDA kernels, so nemocore ops cannot run on "
                f"{device}. Rebuild with a CUDA compiler available (NEMOCORE_CUDA=1). {_REBUILD}"
            )
        return 1, torch.cuda.current_stream(device).cuda_stream
    if work is not None and work < SERIAL_WORK:
        return 1, 0
    return torch.get_num_threads(), 0
