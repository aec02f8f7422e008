"""Where computation runs: the one place that turns a ``device`` argument into a torch device.

Why one place: four wings had four resolvers with four meanings of ``"auto"``. Here ``"auto"``
means CUDA when torch sees a GPU, else CPU; ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` are taken as they
are, and a CUDA request on a machine without one is a usage error (never a silent CPU run).

Importing this module does not import torch; :func:`resolve_device` does, on first call.
"""
from __future__ import annotations

from typing import Any

from .errors import UsageError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")


def check_device_name(device: Any) -> str:
    """Validate a device name without importing torch; returns it as a string."""
    if hasattr(device, "type") and type(device).__module__.startswith("torch"):
        return str(device)
    if not isinstance(device, str):
        raise UsageError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device in ("auto", "cpu", "cuda"):
        return device
    if device.startswith("cuda:") and device[5:].isdigit():
        return device
    raise UsageError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")


def resolve_device(device: Any = "auto") -> Any:
    """``"auto" | "cpu" | "cuda" | "cuda:N" | torch.device`` -> ``torch.device``."""
    import torch

    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = check_device_name("auto" if device is None else device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"device={name} asked for, but CUDA is not available here")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"device={name} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(name)
