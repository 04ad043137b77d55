#!/bin/bash
#SBATCH --job-name=shape
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=3
#SBATCH --time=00:05:00
#SBATCH --partition=debug
#SBATCH --array=0-0
#SBATCH --output=slurm-%A_%a.out
#SBATCH --error=slurm-%A_%a.err
# Rendered by hpc submit from profile local.
# Runs in the job folder it was submitted from; see docs/SLURM.md for the files it leaves.

export OMP_NUM_THREADS=1

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

case "${SLURM_ARRAY_TASK_ID:-}" in
  0) srun --kill-on-bad-exit=1 --mpi=pmi2 --ntasks=2 /opt/venv/bin/python -m hpc run heat2d --n 64 --out /data/shape.h5 ;;
  *) echo "hpc: no step for array task '${SLURM_ARRAY_TASK_ID:-}'" >&2; false ;;
esac
status=$?

{
  echo "end_utc=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)"
  echo "exit_code=${status}"
} >> "$provenance"
exit "$status"
