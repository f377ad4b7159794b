"""Which GPUs a node has (issue 20): ``--num-gpus`` when given, else the devices
``CUDA_VISIBLE_DEVICES`` names, else the NVIDIA driver's count (``/proc/driver/nvidia``,
or ``nvidia-smi -L`` when that is missing). The ids are what a task's
``CUDA_VISIBLE_DEVICES`` is set to, so a node restricted to devices "2,3" hands out "2"
and "3", never "0"."""
import os
import shutil
import subprocess

PROC_GPUS = "/proc/driver/nvidia/gpus"


def _visible():
    """The ids ``CUDA_VISIBLE_DEVICES`` lists, or None when it is unset."""
    v = os.environ.get("CUDA_VISIBLE_DEVICES")
    if v is None:
        return None
    return [i.strip() for i in v.split(",") if i.strip() and i.strip() != "NoDevFiles"]


def _driver_count():
    try:
        return len(os.listdir(PROC_GPUS))
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def node_gpus(declared):
    """(GPU amount, device ids) of this node; ``declared``: the GPU amount it was started
    with, or None to detect."""
    visible = _visible()
    if declared is None:
        ids = visible if visible is not None else [str(i) for i in range(_driver_count())]
        return float(len(ids)), ids
    n = int(declared) if declared >= 1 else (1 if declared > 0 else 0)
    if visible is not None and len(visible) >= n:
        return float(declared), visible[:n]
    return float(declared), [str(i) for i in range(n)]
