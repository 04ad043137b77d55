#!/bin/bash
#SBATCH --job-name=nbody
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --time=00:30:00
#SBATCH --account=m0000
#SBATCH --qos=regular
#SBATCH --constraint=gpu
#SBATCH --gpus-per-node=4
#SBATCH --output=slurm-%j.out
#SBATCH --error=slurm-%j.err
# Rendered by hpc submit from profile example-cray-gpu.
# Runs in the job folder it was submitted from; see docs/SLURM.md for the files it leaves.

module load cray-mpich
module load cray-hdf5
module load python
export MPICH_GPU_SUPPORT_ENABLED=1
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

nvidia-smi -L >> "$provenance" 2>&1 || echo "nvidia-smi failed" >> "$provenance"

srun --kill-on-bad-exit=1 --mpi=cray_shasta --cpu-bind=cores --gpu-bind=closest --ntasks=8 /opt/venv/bin/python -m hpc run nbody --out /s/nb.h5
status=$?

{
  echo "end_utc=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)"
  echo "exit_code=${status}"
} >> "$provenance"
exit "$status"
