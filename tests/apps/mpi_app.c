/* A small MPI application for the [command] study tests (built by tests/mpi_app.py).

   app N [--rank-dependent]      app --version (before MPI_Init: no MPI singleton)
   Rank 0 writes result.txt into the working folder and prints its rank count, the
   values of $OMP_NUM_THREADS and $APP_MODE, a time and a checksum of N work items. The checksum is exact
   integer arithmetic, the same for any rank count, unless --rank-dependent adds the
   rank count into it. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("mpi_app 1.0\n");
        return 0;
    }
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long long n = argc > 1 ? atoll(argv[1]) : 1000000;
    int dependent = argc > 2 && strcmp(argv[2], "--rank-dependent") == 0;
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    long long local = 0, total = 0;
    for (long long i = rank; i < n; i += size) local += (i * i) % 1000003;
    MPI_Reduce(&local, &total, 1, MPI_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    double elapsed = MPI_Wtime() - start;
    if (rank == 0) {
        long long checksum = total + (dependent ? size : 0);
        FILE *f = fopen("result.txt", "w");
        if (!f) { perror("result.txt"); MPI_Abort(MPI_COMM_WORLD, 1); }
        fprintf(f, "%lld\n", checksum);
        fclose(f);
        const char *mode = getenv("APP_MODE"), *threads = getenv("OMP_NUM_THREADS");
        printf("ranks: %d\nthreads: %s\nmode: %s\ntime: %.6f\nchecksum: %lld\n", size,
               threads ? threads : "(unset)", mode ? mode : "(unset)",
               elapsed > 1e-6 ? elapsed : 1e-6, checksum);
    }
    MPI_Finalize();
    return 0;
}
