// 2-D Jacobi heat step, bitwise equal to the numpy backend.
//
// Layout: u and out are (nx + 2) x (ny + 2) row-major doubles, one halo cell on each side;
// interior rows are 1..nx, interior columns 1..ny. The halo of out is never written.
//
// Each thread owns one interior column j and walks down a strip of ROWS rows, keeping the
// rows above, at and below in registers: every row is read from memory about once per
// strip ((ROWS + 2) / ROWS reads) and written once, and the left/right neighbours come
// from the same cache lines its warp just loaded (L1). A warp covers 32 consecutive
// columns, so every load and store is coalesced. Staging tiles in shared memory does not
// pay for a 5-point stencil in double precision: the only reuse it would add (left/right)
// is already served by L1, at the cost of a __syncthreads per row.
//
// Arithmetic per site: 0.25 * (((up + down) + left) + right), rounded after every
// operation as numpy does (the _rn intrinsics are never contracted into FMAs).
#include "common.cuh"

#ifndef HEAT_ROWS  // rows per thread, set by kernels/cuda_build.py (nvcc -DHEAT_ROWS=...)
#error "compile through kernels/cuda_build.py, which sets HEAT_ROWS"
#endif

__device__ __forceinline__ double jacobi(double up, double down, double left, double right)
{
    return __dmul_rn(0.25, __dadd_rn(__dadd_rn(__dadd_rn(up, down), left), right));
}

// Grid: (ceil(ny / blockDim.x), ceil(nx / HEAT_ROWS)); blockDim.x a multiple of 32.
template <bool RESIDUAL>
__device__ void sweep(const double *__restrict__ u, double *__restrict__ out, int nx, int ny,
                      double *__restrict__ partials)
{
    const long w = ny + 2;
    const int j = blockIdx.x * blockDim.x + threadIdx.x + 1;
    const int first = blockIdx.y * HEAT_ROWS + 1;
    const int last = min(first + HEAT_ROWS, nx + 1);  // exclusive
    double squares = 0.0;
    if (j <= ny) {
        double up = __ldg(u + (long)(first - 1) * w + j);
        double mid = __ldg(u + (long)first * w + j);
#pragma unroll 8
        for (int i = first; i < last; ++i) {
            const double *row = u + (long)i * w + j;
            const double down = __ldg(row + w);
            const double value = jacobi(up, down, __ldg(row - 1), __ldg(row + 1));
            out[(long)i * w + j] = value;
            if (RESIDUAL) {
                const double d = __dsub_rn(value, mid);
                squares = __dadd_rn(squares, __dmul_rn(d, d));
            }
            up = mid;
            mid = down;
        }
    }
    if (RESIDUAL) {
        // Every thread reaches this point: block_sum synchronises the block.
        squares = block_sum(squares);
        if (threadIdx.x == 0)
            partials[(long)blockIdx.y * gridDim.x + blockIdx.x] = squares;
    }
}

extern "C" __global__ void heat2d_step(const double *__restrict__ u, double *__restrict__ out,
                                       int nx, int ny)
{
    sweep<false>(u, out, nx, ny, nullptr);
}

// Also writes, per block, the sum of (out - u)^2 over its sites into partials
// (gridDim.x * gridDim.y doubles); the caller adds them up.
extern "C" __global__ void heat2d_step_residual(const double *__restrict__ u,
                                                double *__restrict__ out,
                                                double *__restrict__ partials, int nx, int ny)
{
    sweep<true>(u, out, nx, ny, partials);
}

// Halo exchange buffers, 2 * (nx + ny) doubles each.
//   edges (what neighbours need): [row 1 | row nx | column 1 | column ny]  (interior cells)
//   halo (what they sent):        [row 0 | row nx + 1 | column 0 | column ny + 1]
// Rows hold columns 1..ny, columns hold rows 1..nx: corners are never exchanged (the
// 5-point stencil does not read them).
extern "C" __global__ void heat2d_pack_edges(const double *__restrict__ u,
                                             double *__restrict__ edges, int nx, int ny)
{
    const long w = ny + 2;
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < ny) {
        edges[t] = u[w + 1 + t];
        edges[ny + t] = u[(long)nx * w + 1 + t];
    }
    if (t < nx) {
        edges[2 * ny + t] = u[(long)(t + 1) * w + 1];
        edges[2 * ny + nx + t] = u[(long)(t + 1) * w + ny];
    }
}

// Copies the halo parts named in sides (1: row 0, 2: row nx + 1, 4: column 0,
// 8: column ny + 1) into u; the other halo cells keep their (boundary) values.
extern "C" __global__ void heat2d_unpack_halo(const double *__restrict__ halo,
                                              double *__restrict__ u, int nx, int ny, int sides)
{
    const long w = ny + 2;
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < ny) {
        if (sides & 1)
            u[1 + t] = halo[t];
        if (sides & 2)
            u[(long)(nx + 1) * w + 1 + t] = halo[ny + t];
    }
    if (t < nx) {
        if (sides & 4)
            u[(long)(t + 1) * w] = halo[2 * ny + t];
        if (sides & 8)
            u[(long)(t + 1) * w + ny + 1] = halo[2 * ny + nx + t];
    }
}
