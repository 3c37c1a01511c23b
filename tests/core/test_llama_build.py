"""The embedded server's llama.cpp must run on every machine of our kind: a portable build, checked."""

from __future__ import annotations

import platform

import pytest

from core.llama_build import check, judge, parse_system_info

# what llama_print_system_info() printed for a native build on an Intel Xeon with AMX (issue 14)
NATIVE_INFO = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | "
    "OPENMP = 1 | REPACK = 1 | "
)
PORTABLE_INFO = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | OPENMP = 1 | "
XEON_FLAGS = frozenset([
    "sse", "ssse3", "pni", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512vbmi", "avx512_vnni",
    "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
])
OLD_CPU_FLAGS = frozenset(["sse", "ssse3", "pni", "avx"])


def test_installed_llama_cpp_is_a_portable_build() -> None:
    """Reads the installed llama.cpp's own system info: fails on a native (AVX-512/AMX) build."""
    pytest.importorskip("llama_cpp", reason="the embedded server is installed with the `local` extra")
    verdict = check()
    assert verdict.ok, verdict.reason
    if platform.machine() == "x86_64":
        assert {"AVX2", "FMA", "F16C"} <= verdict.features, verdict.features
        assert not {f for f in verdict.features if f.startswith(("AVX512", "AMX"))}, verdict.features


def test_system_info_is_parsed() -> None:
    features = parse_system_info(NATIVE_INFO)
    assert {"AVX2", "AVX512", "AMX_INT8", "OPENMP"} <= features
    assert "AMX_TILE" not in features


def test_a_native_build_is_refused_even_where_the_cpu_advertises_its_instructions() -> None:
    verdict = judge(parse_system_info(NATIVE_INFO), XEON_FLAGS, machine="x86_64")
    assert not verdict.ok and "AMX_INT8" in verdict.reason and "AVX512" in verdict.reason
    assert judge(parse_system_info(NATIVE_INFO), XEON_FLAGS, machine="x86_64", allow_native=True).ok


def test_a_build_for_instructions_the_cpu_lacks_is_refused_even_when_native_is_allowed() -> None:
    verdict = judge(parse_system_info(PORTABLE_INFO), OLD_CPU_FLAGS, machine="x86_64", allow_native=True)
    assert not verdict.ok and "AVX2" in verdict.reason and "FMA" in verdict.reason


def test_the_portable_build_runs_on_both_kinds_of_machine() -> None:
    amd_epyc = frozenset(["sse", "ssse3", "pni", "avx", "avx2", "fma", "f16c", "bmi2"])
    for flags in (amd_epyc, XEON_FLAGS):
        assert judge(parse_system_info(PORTABLE_INFO), flags, machine="x86_64").ok
