"""The slurm launcher: a rendered job script submitted with ``sbatch --parsable``.

One run is one job; several runs are one job array, task i running run i with its own
rank count inside an allocation the caller sized for the largest (a study's points), at
most ``throttle`` at once. A workload run's ranks are started by the job's starter
(srun or mpirun); a driver (a [command] point) runs once in the batch shell and starts
its ranks itself with ``srun`` or the job's mpirun. ``after_all`` adds a job that
depends on the others (afterany: it also runs when one failed), e.g. a study's report.
Every job gets a folder with its script and job.json (hpc.slurm.jobdir).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from hpc.errors import UserError
from hpc.launchers import NO_OPTIONS, JobOptions, Launched, Launcher, register
from hpc.runs import Run


@register
class SlurmLauncher(Launcher):
    name = "slurm"
    supports = frozenset({"dependency", "hold", "checkpoint_signal", "throttle",
                          "after_all"})

    def _profile(self) -> Any:
        if self.profile is None:
            from hpc.slurm.profiles import load_profile

            self.profile = load_profile(None)
        return self.profile

    def starter_options(self, resources: Any) -> list[str]:
        if resources.starter == "mpirun":
            from hpc.slurm.submit import mpirun_for

            return ["--starter", "mpirun", "--mpirun", mpirun_for(self._profile())]
        mpi = resources.with_mpi_resolved().mpi
        return ["--starter", "srun", *(["--mpi", mpi] if mpi else [])]

    def _steps(self, runs: Sequence[Run], resources: Any) -> tuple[Any, ...]:
        from hpc.slurm.render import Step
        from hpc.slurm.submit import python_for

        python = python_for(self._profile())
        steps = []
        for run in runs:
            argv = [python, "-m", "hpc", *run.hpc_argv()]
            if run.spec is None:
                steps.append(Step(tuple(argv + self.starter_options(resources)), direct=True))
            else:
                steps.append(Step(tuple(argv), run.ranks if len(runs) > 1 else None))
        return tuple(steps)

    def _jobs(self, runs: Sequence[Run], resources: Sequence[Any],
              options: JobOptions) -> list[Any]:
        from hpc.slurm.render import JobScript, Step
        from hpc.slurm.submit import python_for

        if not runs:
            raise UserError("nothing to submit")
        if any(r != resources[0] for r in resources[1:]):
            raise UserError("an array's runs share one allocation; give equal Resources")
        jobs = [JobScript(resources[0], self._steps(runs, resources[0]),
                          throttle=options.throttle, array=len(runs) > 1,
                          checkpoint_signal=options.checkpoint_signal)]
        if options.after_all is not None:
            after = options.after_all
            one = resources[0].updated(nodes=1, ntasks_per_node=1, job_name=after.name,
                                       time=after.info.get("time", "00:10:00"))
            argv = (python_for(self._profile()), "-m", "hpc", *after.hpc_argv())
            jobs.append(JobScript(one, (Step(argv, direct=True),)))
        return jobs

    def describe(self, runs: Sequence[Run], resources: Sequence[Any],
                 options: JobOptions = NO_OPTIONS) -> str:
        from hpc.slurm.render import render_script
        from hpc.slurm.submit import mpirun_for

        self.check_options(options)
        profile = self._profile()
        return "\n".join(render_script(job, profile, mpirun_for(profile))
                         for job in self._jobs(runs, resources, options))

    def start(self, runs: Sequence[Run], resources: Sequence[Any],
              options: JobOptions = NO_OPTIONS) -> list[Launched]:
        from hpc.slurm.jobdir import jobs_root
        from hpc.slurm.sbatch import Dependency
        from hpc.slurm.submit import submit

        self.check_options(options)
        profile, root = self._profile(), jobs_root(self.jobs_dir)
        jobs = self._jobs(runs, resources, options)
        info = {**runs[0].info} if len(runs) == 1 else {
            "runs": [r.name for r in runs]}
        first = submit(jobs[0], profile, jobs_dir=root, dependency=options.dependency,
                       hold=options.hold, info={**info, "launcher": self.name})
        if len(runs) == 1:
            launched = [Launched(runs[0], first.job_id, first.folder)]
        else:
            launched = [Launched(run, f"{first.job_id}_{i}", first.folder,
                                 extra={"array_id": first.job_id, "array_size": len(runs)})
                        for i, run in enumerate(runs)]
        if options.after_all is not None:
            after = submit(jobs[1], profile, jobs_dir=root,
                           dependency=Dependency("afterany", (first.job_id,)),
                           info={**options.after_all.info, "launcher": self.name})
            launched.append(Launched(options.after_all, after.job_id, after.folder))
        return launched

    def wait(self, launched: list[Launched], timeout: float | None = None) -> bool:
        from hpc.slurm.report import exit_code, remember_states, wait_for
        from hpc.slurm.tracker import Tracker

        tracker, folders = Tracker(), {}
        for item in launched:
            base = item.extra.get("array_id", item.job_id)
            if base not in folders:
                tracker.add(base, submitted_at=time.time(),
                            array_size=item.extra.get("array_size"))
                folders[base] = item.folder
        finished = wait_for(tracker, timeout)
        remember_states(tracker, folders)
        for item in launched:
            job = tracker.jobs.get(item.job_id)
            item.handle = job
            item.extra.update(tracker=tracker, folders=folders)
            if finished and job is not None:
                item.exit_code = exit_code([job])
        return finished
