"""Print shell assignments that make numpy's OpenBLAS and torch's CPU kernels differ from this machine's defaults.

CI runs the suite a second time under them, so a test that depends on one kernel's rounding fails here and not on a
user's machine. OpenBLAS picks its kernel per CPU (OPENBLAS_CORETYPE overrides it); torch dispatches ATen kernels by
ATEN_CPU_CAPABILITY and oneDNN's by ONEDNN_MAX_CPU_ISA. Each choice is checked in a fresh interpreter: a setting that
the library ignores is reported on stderr, never silently claimed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

# a kernel of the previous generation: it exists on every x86 CPU that runs the default one
OLDER = {
    "SAPPHIRERAPIDS": "Haswell", "COOPERLAKE": "Haswell", "SKYLAKEX": "Haswell", "ZEN": "Sandybridge",
    "HASWELL": "Sandybridge", "SANDYBRIDGE": "Nehalem", "NEHALEM": "Prescott",
}  # fmt: skip
PROBE = (
    "import json, threadpoolctl, numpy\n"
    "info = [i for i in threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas']\n"
    "cap = None\n"
    "try:\n    import torch; cap = torch.backends.cpu.get_cpu_capability()\nexcept ImportError:\n    pass\n"
    "print(json.dumps({'openblas': info[0]['architecture'] if info else None, 'torch': cap}))\n"
)


def probe(env: dict[str, str]) -> dict[str, str | None]:
    out = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True)
    out.check_returncode()
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> None:
    default = probe({})
    chosen: dict[str, str] = {"OPENBLAS_NUM_THREADS": "1"}
    if default["openblas"] is not None:
        older = OLDER.get(default["openblas"].upper())
        if older is not None:
            chosen["OPENBLAS_CORETYPE"] = older
    if default["torch"] in ("AVX512", "AVX512_VNNI", "AVX512_BF16", "AMX"):
        chosen |= {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    elif default["torch"] == "AVX2":
        chosen |= {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}
    after = probe(chosen)
    print(f"default kernels: {default}; second pass: {after}", file=sys.stderr)
    if after["openblas"] == default["openblas"] and after["torch"] == default["torch"]:
        print("no other BLAS or torch kernel could be forced on this machine", file=sys.stderr)
    print(" ".join(f"{k}={v}" for k, v in chosen.items()))


if __name__ == "__main__":
    main()
