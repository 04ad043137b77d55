// k-means: assignment, per-cluster sums and the centroid update, on the device.
//
// Squared distances add the coordinates in ascending order with numpy's rounding (_rn
// intrinsics, no FMA), and ties go to the lowest centroid index, so the labels equal the
// numpy backend's. Sums are reproducible run to run: each block adds its chunk of points
// in order, then the chunks are added in order (no floating-point atomics).
#include "common.cuh"

#ifndef KMEANS_CHUNK  // points per block in the sums, set by kernels/cuda_build.py
#error "compile through kernels/cuda_build.py, which sets KMEANS_CHUNK"
#endif

// labels[i] = nearest centroid of point i; partials[block] = sum of the blocks's minimum
// squared distances. points (n, d), centroids (k, d). With shared = 1 the centroids are
// staged in dynamic shared memory (k * d doubles), else read from global memory.
extern "C" __global__ void kmeans_assign(const double *__restrict__ points,
                                         const double *__restrict__ centroids,
                                         long long *__restrict__ labels,
                                         double *__restrict__ partials, int n, int d, int k,
                                         int shared)
{
    extern __shared__ double staged[];
    const double *c = centroids;
    if (shared) {
        for (int t = threadIdx.x; t < k * d; t += blockDim.x)
            staged[t] = centroids[t];
        __syncthreads();
        c = staged;
    }
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    double best = 0.0;
    if (i < n) {
        const double *p = points + (long)i * d;
        int best_c = -1;
        for (int cl = 0; cl < k; ++cl) {
            double dist = 0.0;
            for (int l = 0; l < d; ++l) {
                const double t = __dsub_rn(p[l], c[cl * d + l]);
                dist = __dadd_rn(dist, __dmul_rn(t, t));
            }
            if (best_c < 0 || dist < best) {
                best = dist;
                best_c = cl;
            }
        }
        labels[i] = best_c;
    }
    best = block_sum(best);
    if (threadIdx.x == 0)
        partials[blockIdx.x] = best;
}

// Per block of KMEANS_CHUNK points: sums (blocks, k, d) and counts (blocks, k) by label.
// Labels outside [0, k) are not counted.
extern "C" __global__ void kmeans_partial_sums(const double *__restrict__ points,
                                               const long long *__restrict__ labels,
                                               double *__restrict__ sums,
                                               long long *__restrict__ counts, int n, int d,
                                               int k)
{
    const int lo = blockIdx.x * KMEANS_CHUNK;
    const int hi = min(lo + KMEANS_CHUNK, n);
    for (int p = threadIdx.x; p < k * d; p += blockDim.x) {
        const int cl = p / d, l = p % d;
        double s = 0.0;
        long long members = 0;
        for (int i = lo; i < hi; ++i) {
            if (labels[i] == cl) {
                s = __dadd_rn(s, points[(long)i * d + l]);
                ++members;
            }
        }
        sums[(long)blockIdx.x * k * d + p] = s;
        if (l == 0)
            counts[(long)blockIdx.x * k + cl] = members;
    }
}

// sums (k, d) and counts (k) = the per-block partials added in block order.
extern "C" __global__ void kmeans_reduce_partials(const double *__restrict__ part_sums,
                                                  const long long *__restrict__ part_counts,
                                                  double *__restrict__ sums,
                                                  long long *__restrict__ counts, int blocks,
                                                  int d, int k)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p < k * d) {
        double s = 0.0;
        for (int b = 0; b < blocks; ++b)
            s = __dadd_rn(s, part_sums[(long)b * k * d + p]);
        sums[p] = s;
    }
    if (p < k) {
        long long c = 0;
        for (int b = 0; b < blocks; ++b)
            c += part_counts[(long)b * k + p];
        counts[p] = c;
    }
}

// centroids = sums / counts for the clusters that have members; empty ones keep theirs.
extern "C" __global__ void kmeans_update(const double *__restrict__ sums,
                                         const long long *__restrict__ counts,
                                         double *__restrict__ centroids, int d, int k)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p < k * d && counts[p / d] > 0)
        centroids[p] = __ddiv_rn(sums[p], (double)counts[p / d]);
}
