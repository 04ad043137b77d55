"""The slurm launcher: a rendered job script submitted with ``sbatch --parsable``.

One run is one job; several runs (a study's points) are one job array per allocation
shape: Slurm sizes every task of an array alike, so the runs are grouped by their
``Resources`` and each group becomes an array whose tasks have exactly that allocation,
task i running the group's run i; ``throttle`` bounds the tasks running of each array
and, chaining array i after array i - throttle, the arrays running at once. A
workload run's ranks are started by the job's starter (srun or mpirun); a driver (a
[command] point) runs once in the batch shell and starts its ranks itself with ``srun``
or the job's mpirun. ``after_all`` adds a job that depends on every array (afterany: it
also runs when one failed), e.g. a study's report. Every job gets a folder with its
script and job.json (hpc.slurm.jobdir).
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

    def _steps(self, runs: Sequence[Run], resources: Any,
               array: bool) -> tuple[Any, ...]:
        from hpc.slurm.render import Step
        from hpc.slurm.submit import python_for

        python = python_for(self._profile())
        steps = []
        for run in runs:
            argv = [python, "-m", "hpc", *run.hpc_argv()]
            if run.spec is None:
                steps.append(Step(tuple(argv + self.starter_options(resources)), direct=True))
            else:
                steps.append(Step(tuple(argv), run.ranks if array else None))
        return tuple(steps)

    def _groups(self, runs: Sequence[Run],
                resources: Sequence[Any]) -> list[tuple[Any, list[int]]]:
        """The runs' indexes grouped by equal Resources, in order of first appearance:
        one job (one run) or one array (several) per group."""
        if not runs:
            raise UserError("nothing to submit")
        if len(resources) != len(runs):
            raise UserError("give one Resources per run")
        groups: list[tuple[Any, list[int]]] = []
        for i, res in enumerate(resources):  # Resources holds dicts: compare, not hash
            match = next((g for g in groups if g[0] == res), None)
            if match is None:
                groups.append((res, [i]))
            else:
                match[1].append(i)
        return groups

    def _jobs(self, runs: Sequence[Run], resources: Sequence[Any],
              options: JobOptions) -> list[Any]:
        """One JobScript per group of runs, then the after_all job if asked."""
        from hpc.slurm.render import JobScript, Step
        from hpc.slurm.submit import python_for

        several = len(runs) > 1
        jobs = [JobScript(res, self._steps([runs[i] for i in members], res, several),
                          throttle=options.throttle if len(members) > 1 else None,
                          array=several,
                          checkpoint_signal=options.checkpoint_signal)
                for res, members in self._groups(runs, resources)]
        if options.after_all is not None:
            after = options.after_all
            one = resources[0].updated(nodes=1, ntasks_per_node=1, cpus_per_task=1,
                                       job_name=after.name,
                                       time=after.info.get("time", "00:10:00"))
            argv = (python_for(self._profile()), "-m", "hpc", *after.hpc_argv())
            jobs.append(JobScript(one, (Step(argv, direct=True),)))
        return jobs

    @staticmethod
    def _throttled_after(index: int, arrays: int, options: JobOptions) -> int | None:
        """The array that array ``index`` waits for: Slurm throttles tasks within one
        array only, so across arrays (one per allocation shape) array i starts after
        array i - throttle has ended, keeping at most ``throttle`` arrays running."""
        throttle = options.throttle
        if throttle is None or index >= arrays or index < throttle:
            return None
        return index - throttle

    def describe(self, runs: Sequence[Run], resources: Sequence[Any],
                 options: JobOptions = NO_OPTIONS) -> str:
        from hpc.slurm.render import render_script
        from hpc.slurm.submit import mpirun_for

        self.check_options(options)
        profile = self._profile()
        jobs = self._jobs(runs, resources, options)
        if len(jobs) == 1:  # the script alone, as sbatch would get it
            return render_script(jobs[0], profile, mpirun_for(profile))
        arrays = len(jobs) - (options.after_all is not None)
        texts = []
        for n, job in enumerate(jobs, 1):
            # Only sbatch learns a dependency (it needs the ids): say which it will get.
            after = (f", after every job above (--dependency=afterany on "
                     f"{'all ' + str(arrays) if arrays > 1 else 'the'} array job"
                     f"{'s' if arrays > 1 else ''})" if n > arrays else "")
            waits = self._throttled_after(n - 1, arrays, options)
            if waits is not None:
                after = f", after job {waits + 1} ended (array_throttle)"
            shape = job.resources
            texts.append(f"# job {n} of {len(jobs)}: {len(job.steps)} step(s) on "
                         f"{shape.nodes} node(s) x {shape.ntasks_per_node} task(s) x "
                         f"{shape.cpus_per_task} cpu(s){after}\n"
                         + render_script(job, profile, mpirun_for(profile)))
        return "\n".join(texts)

    def start(self, runs: Sequence[Run], resources: Sequence[Any],
              options: JobOptions = NO_OPTIONS) -> list[Launched]:
        from hpc.slurm.jobdir import jobs_root
        from hpc.slurm.sbatch import Dependency
        from hpc.slurm.submit import submit

        self.check_options(options)
        profile, root = self._profile(), jobs_root(self.jobs_dir)
        jobs = self._jobs(runs, resources, options)
        groups = self._groups(runs, resources)
        if options.dependency is not None and options.throttle is not None \
                and len(groups) > options.throttle:
            raise UserError("array_throttle across several arrays chains them with "
                            "dependencies of their own; give no --dependency with it")
        launched: list[Launched | None] = [None] * len(runs)
        ids: list[str] = []
        for g, (job, (_, members)) in enumerate(zip(jobs, groups, strict=False)):
            info = {**runs[0].info} if len(runs) == 1 else {
                "runs": [runs[i].name for i in members]}
            waits = self._throttled_after(g, len(groups), options)
            dependency = (options.dependency if waits is None
                          else Dependency("afterany", (ids[waits],)))
            done = submit(job, profile, jobs_dir=root, dependency=dependency,
                          hold=options.hold, info={**info, "launcher": self.name})
            ids.append(done.job_id)
            for task, i in enumerate(members):
                launched[i] = (Launched(runs[i], done.job_id, done.folder)
                               if len(runs) == 1 else
                               Launched(runs[i], f"{done.job_id}_{task}", done.folder,
                                        extra={"array_id": done.job_id,
                                               "array_size": len(members)}))
        result = [item for item in launched if item is not None]
        if options.after_all is not None:
            after = submit(jobs[-1], profile, jobs_dir=root,
                           dependency=Dependency("afterany", tuple(ids)),
                           info={**options.after_all.info, "launcher": self.name})
            result.append(Launched(options.after_all, after.job_id, after.folder))
        return result

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
