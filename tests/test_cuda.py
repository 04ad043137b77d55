"""The CUDA backend where there is no GPU (CI): every kernel compiles, its arguments match
what the loader packs, the compile cache works, device choice follows the environment,
and every way of asking for CUDA without it fails with exit code 2 and one clear line.

The GPU half of the suite is tests/test_cuda_gpu.py (skipped here, with the reason).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hpc.errors import UserError
from hpc.gpu import (
    AWARE_ENV,
    choose_device,
    forced_cuda_aware,
    parse_gpu_ids,
    probe,
    slurm_local_rank,
)
from kernels import cuda_build
from tests.conftest import ROOT, run_hpc

NVCC = cuda_build.find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed (CI has it)")
CUDA = probe()
without_cuda = pytest.mark.skipif(
    CUDA.available, reason="CUDA is usable here: the no-CUDA error paths cannot happen")
SOURCES = cuda_build.kernel_sources()


def assert_one_clean_error(proc: subprocess.CompletedProcess, *phrases: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("hpc: error:") == 1, proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, (phrase, proc.stderr)


# ---------------------------------------------------------------------------------------
# Every kernel compiles (nvcc, no GPU needed), and matches the loader's view of it
# ---------------------------------------------------------------------------------------

def test_every_kernel_group_has_a_source_and_signatures():
    assert {s.stem for s in SOURCES} == set(cuda_build.KERNEL_SIGNATURES)


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_kernel_compiles_to_ptx(tmp_path, source, arch):
    out = tmp_path / f"{source.stem}.ptx"
    cuda_build.run_nvcc(source, arch, "ptx", out)
    ptx = out.read_text()
    assert f".target {arch}" in ptx
    entries = set(re.findall(r"\.entry\s+(\w+)\(", ptx))
    assert entries == set(cuda_build.KERNEL_SIGNATURES[source.stem])


# PTX parameter types of each PyCUDA argument code (pointers are 64-bit integers).
PTX_TYPES = {"P": {".u64"}, "Q": {".u64"}, "d": {".f64"}, "f": {".f32"}, "i": {".u32", ".s32"}}


@needs_nvcc
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_packed_arguments_match_the_kernel_parameters(tmp_path, source):
    """The loader packs arguments by KERNEL_SIGNATURES; a mismatch with the kernel's C
    parameters (order, type, count) would silently pass garbage on the GPU."""
    out = tmp_path / "k.ptx"
    cuda_build.run_nvcc(source, "sm_90", "ptx", out)
    ptx = out.read_text()
    for name, signature in cuda_build.KERNEL_SIGNATURES[source.stem].items():
        block = re.search(rf"\.entry\s+{name}\((.*?)\)", ptx, re.S)
        assert block, name
        types = re.findall(r"\.param\s+(\.\w+)", block.group(1))
        assert len(types) == len(signature), (name, types, signature)
        for code, ptx_type in zip(signature, types, strict=True):
            assert ptx_type in PTX_TYPES[code], (name, signature, types)


@needs_nvcc
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_kernels_do_not_spill_registers_on_sm90(tmp_path, source):
    done = cuda_build.run_nvcc(source, "sm_90", "cubin", tmp_path / "k.cubin",
                               extra=("-Xptxas", "-v"))
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", done.stderr)
    assert len(spills) >= len(cuda_build.KERNEL_SIGNATURES[source.stem]), done.stderr
    assert all(s == ("0", "0") for s in spills), done.stderr


@needs_nvcc
def test_kernels_need_the_geometry_from_cuda_build(tmp_path):
    """The launch geometry is defined once, in cuda_build.GEOMETRY: compiling a kernel
    without it fails instead of silently using a value the launches do not expect."""
    proc = subprocess.run([NVCC, "-ptx", "-arch=sm_90", "-o", str(tmp_path / "x.ptx"),
                           str(cuda_build.source_path("heat2d"))],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0 and "cuda_build.py" in proc.stderr


# ---------------------------------------------------------------------------------------
# Compiled once: the on-disk cache
# ---------------------------------------------------------------------------------------

@pytest.fixture
def kernel_copy(tmp_path):
    """A private copy of the pi kernel and its header, to change without touching the repo."""
    folder = tmp_path / "src"
    folder.mkdir()
    shutil.copy(cuda_build.source_path("pi"), folder)
    shutil.copy(cuda_build.SOURCE_DIR / "common.cuh", folder)
    return folder / "pi.cu"


@needs_nvcc
def test_second_build_comes_from_the_cache_without_nvcc(tmp_path, monkeypatch, kernel_copy):
    monkeypatch.setenv("HPC_CUDA_CACHE", str(tmp_path / "cache"))
    first = cuda_build.compiled(kernel_copy, "sm_90")
    assert first.is_file() and first.parent == tmp_path / "cache"
    stamp = first.stat().st_mtime_ns
    monkeypatch.setenv("HPC_NVCC", str(tmp_path / "no-such-nvcc"))  # nvcc is now gone
    assert cuda_build.find_nvcc() is None
    assert cuda_build.compiled(kernel_copy, "sm_90") == first
    assert first.stat().st_mtime_ns == stamp
    with pytest.raises(cuda_build.CudaBuildError, match="nvcc not found"):
        cuda_build.compiled(kernel_copy, "sm_80")  # not cached, and no compiler


def test_cache_key_follows_source_header_arch_and_kind(tmp_path, monkeypatch, kernel_copy):
    monkeypatch.setenv("HPC_CUDA_CACHE", str(tmp_path / "cache"))
    base = cuda_build.cached_path(kernel_copy, "sm_90")
    assert base.name.startswith("pi-sm_90-") and base.suffix == ".cubin"
    assert cuda_build.cached_path(kernel_copy, "sm_90") == base  # stable
    assert cuda_build.cached_path(kernel_copy, "sm_80") != base
    assert cuda_build.cached_path(kernel_copy, "sm_90", "ptx") != base
    header = kernel_copy.parent / "common.cuh"
    header.write_text(header.read_text() + "\n// changed\n")
    changed_header = cuda_build.cached_path(kernel_copy, "sm_90")
    assert changed_header != base
    kernel_copy.write_text(kernel_copy.read_text() + "\n// changed\n")
    assert cuda_build.cached_path(kernel_copy, "sm_90") not in (base, changed_header)
    monkeypatch.setitem(cuda_build.GEOMETRY, "HEAT_ROWS", 16)  # flags are part of the key
    assert cuda_build.cached_path(kernel_copy, "sm_90") not in (base, changed_header)


@needs_nvcc
def test_ranks_compiling_at_once_build_one_file(tmp_path, kernel_copy):
    """Two processes miss the cache together (two ranks' first run): both get the same
    complete file, and no temporary file is left behind."""
    script = textwrap.dedent(f"""
        from pathlib import Path
        from kernels import cuda_build
        print(cuda_build.compiled(Path({str(kernel_copy)!r}), "sm_90"))
    """)
    env = {"HPC_CUDA_CACHE": str(tmp_path / "cache"), "PATH": f"{Path(NVCC).parent}:/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert outputs[0][0] == outputs[1][0]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [Path(outputs[0][0].strip()).name]


def test_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("HPC_CUDA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cuda_build.cache_dir() == tmp_path / "hpc-suite" / "cuda"
    monkeypatch.setenv("HPC_CUDA_CACHE", str(tmp_path / "mine"))
    assert cuda_build.cache_dir() == tmp_path / "mine"


def test_unknown_kernel_group_names_the_known_ones():
    with pytest.raises(ValueError, match="known: heat2d, kmeans, nbody, pi"):
        cuda_build.source_path("fft")


# ---------------------------------------------------------------------------------------
# Which GPU a rank takes
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, ids", [("0", [0]), ("0,1,3", [0, 1, 3]), ("0-3", [0, 1, 2, 3]),
                                       ("0-1,4", [0, 1, 4]), (" 2 , 5 ", [2, 5])])
def test_parse_slurm_gpu_lists(text, ids):
    assert parse_gpu_ids(text) == ids


@pytest.mark.parametrize("text", ["", "a", "1,,2", "3-1", "GPU-0f2c", "-1"])
def test_parse_rejects_what_is_not_a_gpu_list(text):
    with pytest.raises(ValueError, match="not a GPU index list"):
        parse_gpu_ids(text)


def test_ranks_go_round_robin_over_all_devices():
    assert [choose_device(r, 4, {}).ordinal for r in range(6)] == [0, 1, 2, 3, 0, 1]
    # More ranks than GPUs: they share, e.g. 2 ranks on the one H100.
    assert [choose_device(r, 1, {}).ordinal for r in range(2)] == [0, 0]


def test_cuda_visible_devices_wins_over_slurm_lists():
    # Slurm with --gpus-per-task gives each task one device: CUDA shows it as ordinal 0.
    env = {"CUDA_VISIBLE_DEVICES": "3", "SLURM_STEP_GPUS": "3"}
    choice = choose_device(5, 1, env)
    assert choice.ordinal == 0 and "CUDA_VISIBLE_DEVICES=3" in choice.how


def test_slurm_step_gpus_name_the_usable_devices():
    env = {"SLURM_STEP_GPUS": "2,3", "SLURM_JOB_GPUS": "0,1,2,3"}
    assert [choose_device(r, 4, env).ordinal for r in range(3)] == [2, 3, 2]
    assert "SLURM_STEP_GPUS=2,3" in choose_device(0, 4, env).how
    assert choose_device(1, 4, {"GPU_DEVICE_ORDINAL": "1-2"}).ordinal == 2


@pytest.mark.parametrize("env, message", [
    ({"SLURM_STEP_GPUS": "4"}, "names GPU(s) [4], but this process sees 2"),
    ({"SLURM_JOB_GPUS": "x"}, "SLURM_JOB_GPUS: not a GPU index list"),
])
def test_bad_slurm_gpu_lists_are_user_errors(env, message):
    with pytest.raises(UserError, match=re.escape(message)):
        choose_device(0, 2, env)


def test_no_device_is_a_user_error_naming_cuda_visible_devices():
    with pytest.raises(UserError, match="no CUDA device visible.*CUDA_VISIBLE_DEVICES=''"):
        choose_device(0, 0, {"CUDA_VISIBLE_DEVICES": ""})


def test_local_rank_without_mpi_comes_from_slurm():
    assert slurm_local_rank({"SLURM_LOCALID": "3"}) == 3
    assert slurm_local_rank({}) == 0


@pytest.mark.parametrize("text, value", [("1", True), ("yes", True), ("0", False),
                                         ("off", False)])
def test_cuda_aware_mpi_can_be_forced(text, value):
    assert forced_cuda_aware({AWARE_ENV: text}) is value
    assert forced_cuda_aware({}) is None


def test_cuda_aware_mpi_setting_must_be_a_boolean():
    with pytest.raises(UserError, match="HPC_CUDA_AWARE_MPI must be 0 or 1"):
        forced_cuda_aware({AWARE_ENV: "maybe"})


def test_cuda_versions_of_the_workloads():
    from hpc.workloads import WORKLOADS
    from hpc.workloads.cuda import CUDA_WORKLOADS, cuda_workload

    for name, cls in CUDA_WORKLOADS.items():
        base = WORKLOADS[name]
        assert issubclass(cls, base) and cls.params == base.params and cls.phases == base.phases
    with pytest.raises(UserError, match="amdahl has no CUDA kernels"):
        cuda_workload("amdahl")


# ---------------------------------------------------------------------------------------
# Asking for CUDA where it is unusable: exit 2, one line, no traceback, nothing written
# ---------------------------------------------------------------------------------------

@without_cuda
def test_load_backend_says_pycuda_is_missing():
    from kernels import load_backend

    if CUDA.pycuda is not None or "PyCUDA is not installed" not in CUDA.reason:
        pytest.skip(f"PyCUDA is installed here ({CUDA.reason})")
    with pytest.raises(ImportError, match=r"PyCUDA is not installed: pip install '\.\[cuda\]'"):
        load_backend("cuda")


@without_cuda
@pytest.mark.parametrize("np_args", [(), ("--np", "2")], ids=["in-process", "np2"])
def test_run_with_cuda_backend_fails_cleanly(tmp_path, np_args):
    out = tmp_path / "r.h5"
    proc = run_hpc("run", "pi", "--backend", "cuda", *np_args, "--size", "1000", "--out",
                   str(out))
    assert_one_clean_error(proc, "CUDA backend unavailable:", CUDA.reason)
    assert not out.exists()


@without_cuda
def test_ranks_inside_mpiexec_agree_on_the_cuda_error(tmp_path):
    from hpc.mpi_env import mpiexec_command

    argv, env = mpiexec_command(2, [sys.executable, "-m", "hpc", "run", "heat2d", "--backend",
                                    "cuda", "--size", "32", "--out", str(tmp_path / "r.h5")])
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert_one_clean_error(proc, "CUDA backend unavailable:", "(every rank)")


def test_amdahl_refuses_cuda_before_looking_for_a_gpu(tmp_path):
    proc = run_hpc("run", "amdahl", "--backend", "cuda", "--out", str(tmp_path / "r.h5"))
    assert_one_clean_error(proc, "amdahl has no CUDA kernels", "--backend numpy or")


@without_cuda
@pytest.mark.parametrize("args", [(), ("--json",), ("--bench", "--quick")])
def test_hpc_cuda_exits_2_with_the_reason(args):
    assert_one_clean_error(run_hpc("cuda", *args), "CUDA backend unavailable:", CUDA.reason)


@without_cuda
def test_hpc_info_says_why_cuda_is_unavailable():
    proc = run_hpc("info")
    assert proc.returncode == 0
    assert f"CUDA:     unavailable: {CUDA.reason}" in proc.stdout


@without_cuda
def test_bench_skips_cuda_with_the_reason():
    from hpc.bench_cuda import cuda_section, format_cuda_section

    section = cuda_section(quick=True)
    assert section == {"skipped": CUDA.reason}
    assert format_cuda_section(section) == f"CUDA: skipped: {CUDA.reason}"


# A stand-in PyCUDA for the two failures that cannot be caused for real on a machine
# without PyCUDA (CI): PyCUDA present but no NVIDIA driver library, and a driver that
# finds no device. (On the GPU machine tests/test_cuda_gpu.py causes the second for real
# with CUDA_VISIBLE_DEVICES="".)
FAKE_PYCUDA = {
    "no-driver": "raise ImportError('libcuda.so.1: cannot open shared object file: "
                 "No such file or directory')",
    "no-device": textwrap.dedent("""
        class Error(Exception):
            pass
        def init():
            raise Error("cuInit failed: no CUDA-capable device is detected")
    """),
}


@without_cuda
@pytest.mark.parametrize("case, phrases", [
    ("no-driver", ["no NVIDIA driver: PyCUDA cannot load the driver library",
                   "libcuda.so.1"]),
    ("no-device", ["the NVIDIA driver found no usable device: cuInit failed",
                   "CUDA_VISIBLE_DEVICES='' limits what CUDA shows"]),
])
def test_driver_and_device_failures_are_named(tmp_path, case, phrases):
    package = tmp_path / "pycuda"
    package.mkdir()
    (package / "__init__.py").write_text("VERSION_TEXT = '0-fake'\n")
    (package / "driver.py").write_text(FAKE_PYCUDA[case])
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "CUDA_VISIBLE_DEVICES": ""}
    for args in (("run", "pi", "--backend", "cuda", "--size", "100", "--out",
                  str(tmp_path / "r.h5")), ("cuda",)):
        assert_one_clean_error(run_hpc(*args, env=env), "CUDA backend unavailable:", *phrases)
    info = run_hpc("info", env=env)
    assert info.returncode == 0 and phrases[0] in info.stdout
