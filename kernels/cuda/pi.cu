// Monte Carlo pi: the numpy backend's counter-based generator, bit for bit.
//
// Sample i uses x = U(2i + 1) and y = U(2i + 2), where U(c) takes the 53 high bits of
// SplitMix64's finaliser applied to seed + c * GAMMA (uint64 arithmetic wraps around).
// x*x + y*y is rounded after each operation (__dmul_rn, __dadd_rn are never fused into an
// FMA), exactly as numpy computes it, so the hit count equals the numpy backend's.
#include "common.cuh"

#define SPLITMIX_GAMMA 0x9E3779B97F4A7C15ULL
#define SPLITMIX_MIX1 0xBF58476D1CE4E5B9ULL
#define SPLITMIX_MIX2 0x94D049BB133111EBULL

__device__ __forceinline__ u64 mix(u64 z)
{
    z = (z ^ (z >> 30)) * SPLITMIX_MIX1;
    z = (z ^ (z >> 27)) * SPLITMIX_MIX2;
    return z ^ (z >> 31);
}

__device__ __forceinline__ double uniform(u64 seed, u64 counter)
{
    // A 53-bit integer converts to double exactly; the scaling by 2^-53 is exact too.
    return __ull2double_rn(mix(seed + counter * SPLITMIX_GAMMA) >> 11) * (1.0 / 9007199254740992.0);
}

// Adds to *hits the number of samples start <= i < start + count inside the unit circle.
// Any grid works (grid-stride loop); blockDim.x must be a multiple of 32. *hits must be
// zeroed by the caller before the launch.
extern "C" __global__ void pi_count_hits(u64 seed, u64 start, u64 count, u64 *hits)
{
    const u64 stride = (u64)gridDim.x * blockDim.x;
    u64 local = 0;
    for (u64 k = (u64)blockIdx.x * blockDim.x + threadIdx.x; k < count; k += stride) {
        const u64 i = start + k;
        const double x = uniform(seed, 2 * i + 1);
        const double y = uniform(seed, 2 * i + 2);
        local += (__dadd_rn(__dmul_rn(x, x), __dmul_rn(y, y)) < 1.0) ? 1 : 0;
    }
    local = block_sum(local);
    if (threadIdx.x == 0 && local != 0)
        atomicAdd(hits, local);
}
