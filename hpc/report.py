"""Study reports. The code is hpc.scaling.report; this name is what the study CLI imports."""

from hpc.scaling.report import write_report

__all__ = ["write_report"]
