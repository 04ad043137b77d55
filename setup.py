"""Builds the Cython kernels in kernels/*.pyx.

Compiler flags: -O3 -march=native by default, because the kernels are built on the
machine that runs them (a cluster's compute node image, or a laptop). Set
HPC_CFLAGS to replace them, for instance HPC_CFLAGS="-O3 -march=x86-64-v3" when the
login node differs from the compute nodes.
"""

import os
import shlex
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

CFLAGS = shlex.split(os.environ.get("HPC_CFLAGS", "-O3 -march=native"))

extensions = [
    Extension(f"kernels.{pyx.stem}", [str(pyx)], extra_compile_args=CFLAGS)
    for pyx in sorted(Path("kernels").glob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
