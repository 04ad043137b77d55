// Helpers shared by the kernels in this folder (included, not compiled on its own).
#pragma once

typedef unsigned long long u64;

// Sum of v over a 1-D thread block; the result is valid in thread 0 only.
// Every thread of the block must call it (it synchronises), blockDim.x must be a multiple
// of 32, and it may be called once per kernel (it reuses one shared array). The order of
// the additions is fixed for a given block size, so results are reproducible run to run.
template <typename T>
__device__ T block_sum(T v)
{
    __shared__ T warp_sums[32];
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int offset = 16; offset > 0; offset /= 2)
        v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0)
        warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = (lane < blockDim.x / 32) ? warp_sums[lane] : T(0);
        for (int offset = 16; offset > 0; offset /= 2)
            v += __shfl_down_sync(0xffffffffu, v, offset);
    }
    return v;
}
