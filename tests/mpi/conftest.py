"""Under mpiexec every rank runs pytest; only rank 0 reports in full.

Ranks above 0 drop the terminal report (it would repeat rank 0's N times) but print any
failure of their own, labelled with the rank, so a failure on one rank only is visible.
"""

from __future__ import annotations

import sys

import pytest


def _rank() -> int:
    from mpi4py import MPI

    return MPI.COMM_WORLD.rank


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("with_mpi", default=False) or _rank() == 0:
        return
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        config.pluginmanager.unregister(reporter)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed and _rank() != 0:
        print(f"[rank {_rank()}] FAILED {report.nodeid} ({report.when})\n"
              f"{report.longreprtext}", file=sys.__stderr__, flush=True)
