"""Where computation runs: devices and threads, decided in one place.

Why one place: four wings had four resolvers with four meanings of ``"auto"``. Here ``"auto"``
means CUDA when torch sees a GPU, else CPU; ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` are taken as they
are, and a CUDA request on a machine without one is a usage error (never a silent CPU run).

Threads: :func:`default_threads` is the policy, :func:`threads` the scoped way to apply it.

Importing this module does not import torch; :func:`resolve_device` does, on first call.

Loading: :func:`lazy_import` defers a module (the Numba kernels) to its first use, so a call served
by the compiled kernels never pays Numba's 0.9 s import.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import types
import time
from collections.abc import Iterator
from typing import Any

from .errors import UsageError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")


def lazy_import(name: str) -> types.ModuleType:
    """The module ``name``, executed on the first access of one of its attributes.

    Why: the Numba kernels are a fallback (and a training tool) beside the compiled ones in
    ``native/``, but ``import numba`` alone costs about 0.9 s of a fresh process, most of a first pc
    encode. Modules that only *may* need a kernel hold it through this; the first attribute access
    runs the real import (standard :class:`importlib.util.LazyLoader`), once per process."""
    found = sys.modules.get(name)
    if found is not None:
        return found
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}")
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


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


# ------------------------------------------------------------------------------ thread policy
def default_threads() -> int:
    """How many threads neurocodec's own compute uses when the caller does not say.

    ``NEUROCODEC_THREADS``, else ``OMP_NUM_THREADS``, when set; otherwise the cores this process
    may run on that other work is not using right now (:func:`busy_cores`), at least one. Why not
    simply all cores: on a loaded machine torch's and Numba's thread pools wait for their slowest
    worker, and a 2-core machine with one busy core trained hnerv 7x slower at 2 threads than at 1."""
    asked = asked_threads()
    if asked is not None:
        return asked
    cores = usable_cores()
    return max(1, min(cores, int(cores - busy_cores() + 0.5)))


def asked_threads() -> int | None:
    """The thread count the environment asks for: ``NEUROCODEC_THREADS`` (the CLI's ``--threads``),
    else ``OMP_NUM_THREADS``, at least 1; ``None`` when neither is set."""
    for name in ("NEUROCODEC_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                raise UsageError(f"{name}={value!r} is not a number of threads") from None
    return None


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask; elsewhere than Linux, all of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def busy_cores(samples: int = 3, gap_s: float = 0.0005) -> float:
    """How many cores other work keeps busy now: the tasks runnable at this moment less the one
    reading process's own (the fourth field of ``/proc/loadavg`` less :func:`_own_runnable`), the
    fewest of a few samples ``gap_s`` apart
    (about 1 ms in all: it runs on every call that applies the policy). The fewest, not the median:
    a busy process is runnable at every sample, while the threads another library is winding down
    (seen: 4-5 runnable for a moment after an x265 decode) come and go between them.
    Why not the load average: it trails by a minute both ways, so a process picked one thread for a
    minute after a load had gone (its own last run counted as load) and all cores for a minute after
    one had started. Elsewhere than Linux, the 1-minute load average."""
    counts = []
    for i in range(max(1, samples)):
        try:
            own = _own_runnable()
            with open("/proc/loadavg", "rb") as f:
                total = int(f.read().split()[3].split(b"/")[0])
            # own threads read before and after: one that fell asleep in between is still subtracted
            counts.append(total - max(own, _own_runnable()))
        except (OSError, IndexError, ValueError):
            try:
                return max(0.0, os.getloadavg()[0])
            except OSError:
                return 0.0
        if i + 1 < samples:
            time.sleep(gap_s)
    return float(max(0, min(counts)))


def _own_runnable() -> int:
    """This process's threads that are runnable now, the reader included (at least 1). Why: torch's
    OpenMP workers keep spinning for a while after a parallel region, and counted as other work
    they made the call after a 2-thread decode pick one thread."""
    own = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        end = stat.rfind(b")")  # the state follows the command name, which may hold spaces
        own += stat[end + 2:end + 3] == b"R"
    return max(1, own)


@contextlib.contextmanager
def threads(count: int | None = None) -> Iterator[int]:
    """Run a block with ``count`` torch threads (default :func:`default_threads`) and restore the
    previous setting afterwards: the one place neurocodec sets a thread count, scoped, so library
    calls never leave the caller's process changed. Results must not depend on it (every codec's
    bitstream is thread-count independent; tests/test_house.py checks)."""
    n = default_threads() if count is None else int(count)
    if n < 1:
        raise UsageError(f"threads must be >= 1, got {count}")
    try:
        import torch
    except ImportError:  # nothing to set: no torch, no torch threads
        torch = None
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None and before != n:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch is not None and before != n:
            torch.set_num_threads(before)
