#!/bin/bash
#SBATCH --job-name=hpc
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=8
#SBATCH --time=01:00:00
#SBATCH --mem=64G
#SBATCH --partition=gpu
#SBATCH --account=proj123
#SBATCH --gres=gpu:a100:2
#SBATCH --exclusive
#SBATCH --output=slurm-%j.out
#SBATCH --error=slurm-%j.err
# Rendered by hpc submit from profile example-openmpi-gres.
# Runs in the job folder it was submitted from; see docs/SLURM.md for the files it leaves.

module purge
module load GCC/12.3.0
module load OpenMPI/4.1.5
module load HDF5/1.14.0
export OMP_NUM_THREADS=8

export SLURM_MPI_TYPE=none

# Where and when this job ran; the HDF5 record holds the rest of the provenance.
job_tag=${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}
job_tag=${job_tag:-${SLURM_JOB_ID:-nojob}}
provenance="provenance-${job_tag}.txt"
{
  echo "job_id=${SLURM_JOB_ID:-}"
  echo "restart_count=${SLURM_RESTART_COUNT:-0}"
  echo "start_utc=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)"
  echo "batch_host=$(hostname)"
  echo "nodelist=${SLURM_JOB_NODELIST:-}"
} >> "$provenance"

mpirun --bind-to core --map-by socket -n 2 /opt/venv/bin/python -m hpc run heat2d --n 64 --out /data/runs.h5
status=$?

{
  echo "end_utc=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)"
  echo "exit_code=${status}"
} >> "$provenance"
exit "$status"
