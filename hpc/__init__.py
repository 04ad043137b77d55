"""HPC job suite: MPI workloads, HDF5 run records, Slurm submission and scaling studies."""

__version__ = "0.1.0"
