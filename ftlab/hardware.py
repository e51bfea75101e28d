"""What a speed figure depends on: the CPU's feature flags (the one /proc/cpuinfo reader: the bf16 rule in
ftlab/models/build.py, bench's machine check), the CPU model, threads and GPU (`machine()`, stored in run.json).

torch is imported inside the functions: report and other run.json readers import this module without it.
"""
from __future__ import annotations

import platform
from typing import Any, Dict, Optional

from ftlab.io import read_text


def device_name() -> str:
    import torch

    return f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"


# the CPU features that set this project's speed, best first: bf16 matrix units (AMX, AVX512-BF16: train.py's
# bf16 default), then the fp32 vector widths; a 2-core AVX2 machine trains MiniLM ~5x slower than an
# AVX512-BF16 one of the same core count (fp32: README "Speed")
ISA_LEVELS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")


def cpu_flags(cpuinfo: Optional[str] = None) -> frozenset:
    """The CPU's feature flags (the first "flags" line of /proc/cpuinfo; empty where it cannot be read)."""
    text = read_text("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def machine(cpuinfo: Optional[str] = None) -> Dict[str, Any]:
    """What a speed figure depends on, so that figures from two machines are never put in one ratio:
    the CPU model, the best of ISA_LEVELS it has, the threads torch uses, the GPU (None on the CPU)."""
    import torch

    text = read_text("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 platform.processor() or platform.machine())
    flags = cpu_flags(text)
    return {"cpu": model, "isa": next((level for level in ISA_LEVELS if level in flags), "other"),
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
