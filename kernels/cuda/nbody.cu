// All-pairs softened gravity (G = 1): tiled in shared memory, float64 and float32.
//
// Bodies are packed as rows [x, y, z, m] (body64 or float4). A block of NBODY_TILE threads
// owns NBODY_TILE target bodies, one per thread; it walks over the sources in tiles of
// NBODY_TILE bodies that it first stages in shared memory, so each source is read from
// global memory once per block and then broadcast to every thread from shared memory.
// Each thread adds the sources up in ascending order, like the numpy and Cython backends.
//
// float64: every operation is rounded as numpy rounds it (_rn intrinsics, correctly rounded
// sqrt and division, no FMA contraction), so the accelerations are those of the numpy
// backend bit for bit. float32: fast arithmetic (FMA, rsqrtf), 20 flops per interaction
// in the usual count, for throughput; accurate to float32 round-off.

#ifndef NBODY_TILE  // threads per block, set by kernels/cuda_build.py (nvcc -DNBODY_TILE=...)
#error "compile through kernels/cuda_build.py, which sets NBODY_TILE"
#endif

struct __align__(16) body64 {
    double x, y, z, m;
};

__device__ __forceinline__ void interact(const body64 &me, const body64 &src, double eps2,
                                         double &ax, double &ay, double &az)
{
    const double dx = __dsub_rn(src.x, me.x);
    const double dy = __dsub_rn(src.y, me.y);
    const double dz = __dsub_rn(src.z, me.z);
    const double r2 = __dadd_rn(
        __dadd_rn(__dadd_rn(__dmul_rn(dx, dx), __dmul_rn(dy, dy)), __dmul_rn(dz, dz)), eps2);
    const double f = __ddiv_rn(src.m, __dmul_rn(r2, __dsqrt_rn(r2)));
    ax = __dadd_rn(ax, __dmul_rn(dx, f));
    ay = __dadd_rn(ay, __dmul_rn(dy, f));
    az = __dadd_rn(az, __dmul_rn(dz, f));
}

__device__ __forceinline__ void interact(const float4 &me, const float4 &src, float eps2,
                                         float &ax, float &ay, float &az)
{
    const float dx = src.x - me.x;
    const float dy = src.y - me.y;
    const float dz = src.z - me.z;
    const float r2 = fmaf(dx, dx, fmaf(dy, dy, fmaf(dz, dz, eps2)));
    const float inv = rsqrtf(r2);
    const float s = src.w * inv * inv * inv;
    ax = fmaf(dx, s, ax);
    ay = fmaf(dy, s, ay);
    az = fmaf(dz, s, az);
}

// acc[0 * stride + i], acc[1 * stride + i], acc[2 * stride + i] = acceleration of
// targets[i] from sources[0 .. n_sources). Grid: ceil(n / NBODY_TILE) blocks of NBODY_TILE.
template <typename Body, typename Real>
__device__ void accel(const Body *__restrict__ targets, const Body *__restrict__ sources,
                      double *__restrict__ acc, Real eps2, int n, int n_sources, int stride)
{
    __shared__ Body tile[NBODY_TILE];
    const int i = blockIdx.x * NBODY_TILE + threadIdx.x;
    Body me = targets[min(i, n - 1)];  // threads past the end compute a copy, never stored
    Real ax = 0, ay = 0, az = 0;
    for (int base = 0; base < n_sources; base += NBODY_TILE) {
        if (base + threadIdx.x < n_sources)
            tile[threadIdx.x] = sources[base + threadIdx.x];
        __syncthreads();
        const int count = min(NBODY_TILE, n_sources - base);
        if (count == NBODY_TILE) {
#pragma unroll 16
            for (int k = 0; k < NBODY_TILE; ++k)
                interact(me, tile[k], eps2, ax, ay, az);
        } else {
            for (int k = 0; k < count; ++k)
                interact(me, tile[k], eps2, ax, ay, az);
        }
        __syncthreads();
    }
    if (i < n) {
        acc[i] = ax;
        acc[stride + i] = ay;
        acc[2 * stride + i] = az;
    }
}

extern "C" __global__ void __launch_bounds__(NBODY_TILE)
nbody_accel_f64(const body64 *__restrict__ targets, const body64 *__restrict__ sources,
                double *__restrict__ acc, double eps2, int n, int n_sources, int stride)
{
    accel<body64, double>(targets, sources, acc, eps2, n, n_sources, stride);
}

extern "C" __global__ void __launch_bounds__(NBODY_TILE)
nbody_accel_f32(const float4 *__restrict__ targets, const float4 *__restrict__ sources,
                double *__restrict__ acc, float eps2, int n, int n_sources, int stride)
{
    accel<float4, float>(targets, sources, acc, eps2, n, n_sources, stride);
}

// pot[i] = sum over sources j != offset + i, ascending, of m_j / sqrt(|r_j - r_i|^2 + eps2),
// rounded as the numpy backend rounds it. Grid as for nbody_accel_f64.
extern "C" __global__ void __launch_bounds__(NBODY_TILE)
nbody_potential_f64(const body64 *__restrict__ targets, const body64 *__restrict__ sources,
                    double *__restrict__ pot, double eps2, int n, int n_sources, int offset)
{
    __shared__ body64 tile[NBODY_TILE];
    const int i = blockIdx.x * NBODY_TILE + threadIdx.x;
    const body64 me = targets[min(i, n - 1)];
    const int self = offset + i;
    double sum = 0.0;
    for (int base = 0; base < n_sources; base += NBODY_TILE) {
        if (base + threadIdx.x < n_sources)
            tile[threadIdx.x] = sources[base + threadIdx.x];
        __syncthreads();
        const int count = min(NBODY_TILE, n_sources - base);
        for (int k = 0; k < count; ++k) {
            if (base + k == self)
                continue;
            const body64 src = tile[k];
            const double dx = __dsub_rn(src.x, me.x);
            const double dy = __dsub_rn(src.y, me.y);
            const double dz = __dsub_rn(src.z, me.z);
            const double r2 = __dadd_rn(
                __dadd_rn(__dadd_rn(__dmul_rn(dx, dx), __dmul_rn(dy, dy)), __dmul_rn(dz, dz)),
                eps2);
            sum = __dadd_rn(sum, __ddiv_rn(src.m, __dsqrt_rn(r2)));
        }
        __syncthreads();
    }
    if (i < n)
        pot[i] = sum;
}

// Packs positions (3, stride) (columns 0..n) and masses (n; null: zero) into body rows.
extern "C" __global__ void nbody_pack_f64(const double *__restrict__ pos,
                                          const double *__restrict__ mass,
                                          body64 *__restrict__ out, int n, int stride)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = body64{pos[i], pos[stride + i], pos[2 * (long)stride + i], mass ? mass[i] : 0.0};
}

extern "C" __global__ void nbody_pack_f32(const double *__restrict__ pos,
                                          const double *__restrict__ mass,
                                          float4 *__restrict__ out, int n, int stride)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = make_float4(__double2float_rn(pos[i]), __double2float_rn(pos[stride + i]),
                             __double2float_rn(pos[2 * (long)stride + i]),
                             mass ? __double2float_rn(mass[i]) : 0.0f);
}

// Leapfrog, with numpy's rounding: vel += h * acc (h = dt / 2), over count = 3 n values.
extern "C" __global__ void nbody_kick(double *__restrict__ vel, const double *__restrict__ acc,
                                      double h, int count)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < count)
        vel[t] = __dadd_rn(vel[t], __dmul_rn(h, acc[t]));
}

// pos[:, first:first + n] += dt * vel, with pos (3, n_all) and vel (3, n).
extern "C" __global__ void nbody_drift(double *__restrict__ pos, const double *__restrict__ vel,
                                       double dt, int n, int n_all, int first)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < 3 * n) {
        const long p = (long)(t / n) * n_all + first + t % n;
        pos[p] = __dadd_rn(pos[p], __dmul_rn(dt, vel[t]));
    }
}
