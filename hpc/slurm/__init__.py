"""Slurm for the suite: one ``Resources`` description rendered as job scripts (Jinja2
templates and site profiles in ``slurm/``), submitted with ``sbatch --parsable`` or run as
a function on every MPI rank through submitit, and followed through its states.

Entry points: ``resources.Resources``, ``profiles.load_profile``, ``render.render_script``,
``submit.submit`` / ``submit.submit_array``, ``tracker.Tracker``,
``submitit_engine.submit_function``; the ``hpc status/wait/cancel/logs`` commands are in
``cli``. Launching a run (``hpc submit``, studies) goes through ``hpc.launchers``, whose
slurm and submitit launchers use these. See docs/SLURM.md.
"""
