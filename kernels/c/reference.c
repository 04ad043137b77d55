/*
 * Plain C yardstick for the Cython kernels: the loops a scientist would write, built with
 *
 *     cc -O3 -march=native -fno-math-errno -o ref kernels/c/reference.c -lm
 *
 * -fno-math-errno lets sqrt compile to the bare instruction (no errno branch), so gcc
 * vectorises the n-body loop (across i: every sum over j keeps its order).
 *
 * Usage:
 *     ref heat2d N STEPS   Jacobi sweeps on an N x N interior with a one-cell halo
 *     ref nbody  N STEPS   direct-sum gravitational accelerations of N bodies
 *     ref peak   M STEPS   the core's FP64 peak: M million vector FMAs of the widest kind
 *
 * Prints exactly one JSON line on stdout, for instance
 *     {"workload": "heat2d", "size": 4096, "unit": "MLUP/s", "value": 1234.5}
 * and a checksum on stderr, which uses every result so the compiler cannot drop the work.
 *
 * The reported value is the BEST single step (sweep or force evaluation) over STEPS, timed
 * with clock_gettime(CLOCK_MONOTONIC): the best step is the least disturbed by other
 * processes and page faults on the first touch, and it is what the Python bench reports too.
 */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Deterministic uniform numbers in [0, 1) (SplitMix64), so runs are reproducible. */
static unsigned long long rng_state = 12345;
static double uniform(void)
{
    unsigned long long z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

/* One Jacobi sweep of the interior; the halo of `out` is never written. */
static void heat2d_step(long n, const double *u, double *out)
{
    const long w = n + 2; /* row length including the halo */
    for (long i = 1; i <= n; i++)
        for (long j = 1; j <= n; j++)
            out[i * w + j] = 0.25 * (u[(i - 1) * w + j] + u[(i + 1) * w + j]
                                     + u[i * w + j - 1] + u[i * w + j + 1]);
}

static int run_heat2d(long n, int steps)
{
    const long w = n + 2;
    double *u = xmalloc((size_t)(w * w) * sizeof(double));
    double *v = xmalloc((size_t)(w * w) * sizeof(double));
    /* Cold plate with one hot edge; both buffers carry the same fixed halo. */
    memset(u, 0, (size_t)(w * w) * sizeof(double));
    for (long j = 0; j < w; j++)
        u[j] = 1.0;
    memcpy(v, u, (size_t)(w * w) * sizeof(double));

    double best = 1e300;
    for (int s = 0; s < steps; s++) {
        double t0 = now();
        heat2d_step(n, u, v);
        double t = now() - t0;
        if (t < best)
            best = t;
        double *tmp = u; /* swap: the new field becomes the input of the next sweep */
        u = v;
        v = tmp;
    }

    double checksum = 0.0;
    for (long k = 0; k < w * w; k++)
        checksum += u[k];
    fprintf(stderr, "checksum %.17g\n", checksum);
    printf("{\"workload\": \"heat2d\", \"size\": %ld, \"unit\": \"MLUP/s\", \"value\": %.1f}\n",
           n, (double)n * (double)n / best / 1e6);
    free(u);
    free(v);
    return 0;
}

/* Structure of arrays, i outer and j inner, one accumulator per component. */
static void nbody_accel(long n, const double *x, const double *y, const double *z,
                        const double *m, double eps2, double *ax, double *ay, double *az)
{
    for (long i = 0; i < n; i++) {
        double xi = x[i], yi = y[i], zi = z[i];
        double sx = 0.0, sy = 0.0, sz = 0.0;
        for (long j = 0; j < n; j++) {
            double dx = x[j] - xi, dy = y[j] - yi, dz = z[j] - zi;
            double r2 = dx * dx + dy * dy + dz * dz + eps2;
            double f = m[j] / (r2 * sqrt(r2));
            sx += f * dx;
            sy += f * dy;
            sz += f * dz;
        }
        ax[i] = sx;
        ay[i] = sy;
        az[i] = sz;
    }
}

static int run_nbody(long n, int steps)
{
    double *x = xmalloc((size_t)n * sizeof(double)), *y = xmalloc((size_t)n * sizeof(double));
    double *z = xmalloc((size_t)n * sizeof(double)), *m = xmalloc((size_t)n * sizeof(double));
    double *ax = xmalloc((size_t)n * sizeof(double)), *ay = xmalloc((size_t)n * sizeof(double));
    double *az = xmalloc((size_t)n * sizeof(double));
    for (long i = 0; i < n; i++) {
        x[i] = uniform();
        y[i] = uniform();
        z[i] = uniform();
        m[i] = 1.0 / (double)n;
    }
    const double eps2 = 1e-4;

    double best = 1e300, checksum = 0.0;
    for (int s = 0; s < steps; s++) {
        double t0 = now();
        nbody_accel(n, x, y, z, m, eps2, ax, ay, az);
        double t = now() - t0;
        if (t < best)
            best = t;
        for (long i = 0; i < n; i++)
            checksum += ax[i] + ay[i] + az[i];
    }

    fprintf(stderr, "checksum %.17g\n", checksum);
    printf("{\"workload\": \"nbody\", \"size\": %ld, \"unit\": \"Minteractions/s\", "
           "\"value\": %.1f}\n",
           n, (double)n * (double)n / best / 1e6);
    free(x);
    free(y);
    free(z);
    free(m);
    free(ax);
    free(ay);
    free(az);
    return 0;
}

/*
 * The core's FP64 peak, measured: CHAINS independent chains of vector multiply-adds
 * (a = a * b + c, contracted to one FMA instruction where the CPU has FMA), enough chains
 * to cover the FMA latency on every FMA port. The widest vector the target has is used
 * (512 bits with AVX-512, else 256 with AVX, else 128). N is the number of rounds in
 * millions; a round is CHAINS vector FMAs of 2 flops per lane.
 */
#if defined(__AVX512F__)
#define LANES 8
#elif defined(__AVX__)
#define LANES 4
#else
#define LANES 2
#endif
#define CHAINS 16
typedef double vec __attribute__((vector_size(LANES * sizeof(double))));

static int run_peak(long millions, int steps)
{
    volatile double vb = 0.999999, vc = 1e-7; /* volatile: not known at compile time */
    vec b, c, a[CHAINS];
    for (int l = 0; l < LANES; l++) {
        b[l] = vb;
        c[l] = vc;
    }
    for (int k = 0; k < CHAINS; k++)
        for (int l = 0; l < LANES; l++)
            a[k][l] = 0.5 + 0.01 * k + 0.001 * l;
    const long rounds = millions * 1000000L / CHAINS;
    double best = 1e300;
    for (int s = 0; s < steps; s++) {
        double t0 = now();
        for (long r = 0; r < rounds; r++)
            for (int k = 0; k < CHAINS; k++)
                a[k] = a[k] * b + c;
        double t = now() - t0;
        if (t < best)
            best = t;
    }
    double checksum = 0.0;
    for (int k = 0; k < CHAINS; k++)
        for (int l = 0; l < LANES; l++)
            checksum += a[k][l];
    fprintf(stderr, "checksum %.17g\n", checksum);
    printf("{\"workload\": \"fp64_peak\", \"size\": %d, \"unit\": \"GFLOP/s\", "
           "\"value\": %.1f}\n",
           LANES * 64, (double)rounds * CHAINS * LANES * 2.0 / best / 1e9);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s heat2d|nbody|peak N STEPS\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    int steps = atoi(argv[3]);
    if (n < 1 || steps < 1) {
        fprintf(stderr, "N and STEPS must be positive integers\n");
        return 2;
    }
    if (strcmp(argv[1], "heat2d") == 0)
        return run_heat2d(n, steps);
    if (strcmp(argv[1], "nbody") == 0)
        return run_nbody(n, steps);
    if (strcmp(argv[1], "peak") == 0)
        return run_peak(n, steps);
    fprintf(stderr, "unknown workload '%s' (expected heat2d, nbody or peak)\n", argv[1]);
    return 2;
}
