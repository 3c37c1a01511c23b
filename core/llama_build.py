"""Whether the installed llama.cpp can run on this CPU: its compiled instruction sets against the CPU's.

llama.cpp built with its default native tuning uses every instruction set of the build machine. Machines
of one kind differ (AMD EPYC; Intel Xeon VMs that advertise AVX-512 and AMX but trap on AMX tile
instructions), and pip's wheel cache carries a build from one machine to the next, so a native build dies
with SIGILL on the first long prompt. `scripts/dev` builds a portable baseline (x86-64: AVX2, FMA, F16C);
this module checks what is installed. Standard library only: `scripts/dev` runs it before the project's
dependencies are installed.

    python -m core.llama_build [--allow-native]    # prints the verdict; exit 1 when it must not run
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# llama.cpp's names (llama_print_system_info) -> the flag /proc/cpuinfo shows when the CPU has it (x86-64).
X86_FLAGS = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX_VNNI": "avx_vnni",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
    "AMX_BF16": "amx_bf16",
}
# Beyond the portable baseline: what a native build on a newer CPU adds. AMX in particular traps in VMs
# that advertise it (the kernel's per-process permission for tile data is not granted there).
NOT_PORTABLE = re.compile(r"^(AVX512|AMX)")

PROBE = "import llama_cpp, sys; sys.stdout.write(llama_cpp.llama_print_system_info().decode(errors='replace'))"


@dataclass(frozen=True)
class BuildCheck:
    """The verdict on the installed llama.cpp: `ok`, and the reason when it is not."""

    ok: bool
    features: frozenset[str]
    reason: str = ""


def parse_system_info(text: str) -> frozenset[str]:
    """Features reported as `NAME = 1` by llama_print_system_info()."""
    return frozenset(name for name, value in re.findall(r"([A-Z][A-Z0-9_]*) = (\d+)", text) if value != "0")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The CPU's feature flags (x86-64 Linux), or None where /proc/cpuinfo has none to read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    match = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    return frozenset(match.group(1).split()) if match else None


def system_info(python: str = sys.executable, timeout: float = 60.0) -> str:
    """llama.cpp's system info, read in a child process (loading the library may itself fault)."""
    result = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise RuntimeError(f"llama-cpp-python could not be loaded: {tail}")
    return result.stdout


def judge(
    features: frozenset[str], flags: frozenset[str] | None, *, machine: str, allow_native: bool = False
) -> BuildCheck:
    """Whether a build with `features` may run on a CPU with `flags`."""
    if machine in ("x86_64", "amd64", "AMD64"):
        if flags is not None:
            missing = sorted(f for f in features if f in X86_FLAGS and X86_FLAGS[f] not in flags)
            if missing:
                return BuildCheck(
                    False, features, f"built for instructions this CPU lacks ({', '.join(missing)})"
                )
        native = sorted(f for f in features if NOT_PORTABLE.match(f))
        if native and not allow_native:
            return BuildCheck(
                False,
                features,
                f"built with native tuning ({', '.join(native)}), which traps on machines that advertise "
                "but do not run these instructions",
            )
    return BuildCheck(True, features)


def check(*, allow_native: bool = False, python: str = sys.executable) -> BuildCheck:
    """The verdict on the llama.cpp installed for `python` on this machine."""
    try:
        info = system_info(python)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return BuildCheck(False, frozenset(), str(exc))
    return judge(parse_system_info(info), cpu_flags(), machine=platform.machine(), allow_native=allow_native)


REBUILD_HINT = "Rebuild it for a portable baseline with `scripts/dev rebuild-llama`."


def main(argv: list[str]) -> int:
    verdict = check(allow_native="--allow-native" in argv)
    shown = " ".join(sorted(verdict.features)) or "-"
    if verdict.ok:
        print(f"llama.cpp build: portable ({shown})")
        return 0
    print(f"llama.cpp build: refused: {verdict.reason}. {REBUILD_HINT}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
