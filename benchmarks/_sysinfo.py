"""Describe the machine and the versions of every system under test."""

from __future__ import annotations

import json
import os
import platform
import subprocess

import psutil

PACKAGES = ["actorscoop", "ray", "dask", "distributed", "loky", "scoop", "psutil", "numpy"]

_PROBE = r"""
import json, sys
from importlib.metadata import version, PackageNotFoundError
out = {"python": sys.version.split()[0], "packages": {}}
for name in sys.argv[1:]:
    try:
        out["packages"][name] = version(name)
    except PackageNotFoundError:
        out["packages"][name] = None
print(json.dumps(out))
"""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_describe(repo: str) -> str:
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "actorscoop"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def collect(python: str, repo: str) -> dict:
    try:
        probe = json.loads(subprocess.run([python, "-c", _PROBE, *PACKAGES], capture_output=True,
                                          text=True, timeout=60).stdout)
    except (OSError, ValueError, subprocess.SubprocessError):
        probe = {"python": "unknown", "packages": {}}
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_bytes": psutil.virtual_memory().total,
        "kernel": platform.release(),
        "python": probe["python"],
        "python_path": python,
        "packages": probe["packages"],
        "actorscoop_git": git_describe(repo),
    }


def headline(info: dict) -> str:
    return (f"{info['cpu_model']}, {info['logical_cpus']} cores, "
            f"{info['ram_bytes'] / 2**30:.1f} GiB RAM, Linux {info['kernel']}, "
            f"Python {info['python']}")


def versions_line(info: dict) -> str:
    parts = []
    for name, ver in info["packages"].items():
        if name == "actorscoop":
            ver = f"{ver or 'not installed'} (git {info['actorscoop_git']})"
        parts.append(f"{name} {ver or 'not installed'}")
    return ", ".join(parts)
