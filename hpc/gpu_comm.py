"""Device arrays through MPI: via pinned host buffers, or directly when MPI is CUDA-aware.

A ``MpiStage`` stands between one device array and the MPI calls that read or write it.
By default it keeps a page-locked host copy: ``for_mpi`` copies the device data (or the
parts named) into it and returns it, ``from_mpi`` copies what MPI wrote back to the device.
With a CUDA-aware MPI library (see hpc.gpu.cuda_aware_mpi) it hands MPI the device memory
itself: ``for_mpi`` only waits for the kernels that write it, ``from_mpi`` does nothing.
Either way the caller writes the same MPI calls on the flat (1-D) buffer it gets.
"""

from __future__ import annotations

from typing import Any


class MpiStage:
    def __init__(self, device: Any, cuda_aware: bool):
        import pycuda.driver as drv

        self.device = device.reshape(device.size)  # a flat view of the same memory
        self.cuda_aware = cuda_aware
        self.host = None if cuda_aware else drv.pagelocked_empty(device.size, device.dtype)

    @property
    def buffer(self) -> Any:
        """What to give MPI: the host copy, or the device memory (CUDA-aware)."""
        return self.device if self.cuda_aware else self.host

    def for_mpi(self, parts: list[slice] | None = None) -> Any:
        """Make the device data (only ``parts`` of the flat array, if given) readable by
        MPI and return the buffer to give it."""
        if self.cuda_aware:
            import pycuda.driver as drv

            drv.Context.synchronize()  # MPI reads device memory outside our stream
        else:
            for part in parts or [slice(None)]:
                chunk = self.device[part]
                if chunk.size:
                    chunk.get(self.host[part])
        return self.buffer

    def from_mpi(self, parts: list[slice] | None = None) -> None:
        """Bring what MPI wrote into the buffer (only ``parts``, if given) to the device."""
        if self.cuda_aware:
            return  # MPI wrote the device memory itself and completed before returning
        for part in parts or [slice(None)]:
            chunk = self.device[part]
            if chunk.size:
                chunk.set(self.host[part])
