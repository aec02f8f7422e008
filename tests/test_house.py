"""Rules of the house (ARCHITECTURE.md), checked on the whole package.

* the module-level import graph of ``neurocodec`` has no circle;
* no module outside training code imports a training module (``train*.py``) at module level, and
  decoding a file of every codec in a fresh process imports none;
* model files are ``.ncx`` containers: no pickle-era weight files ship, no code calls ``torch.load``
  or ``np.load(allow_pickle=True)``;
* codecs hold no state between calls: for every codec, encode at one thread count, decode at
  another, encode again at the first: the bytes are identical.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

PKG = Path(__file__).resolve().parents[1] / "neurocodec"
ROOT = PKG.parent


# ------------------------------------------------------------------------------ static graph
def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(module: str, is_pkg: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _imports(path: Path, lazy: bool = False) -> set[str]:
    """Modules of neurocodec imported when ``path`` is imported (statements at module level,
    including inside module-level if/try, excluding ``if TYPE_CHECKING``); with ``lazy``, also
    the imports inside functions and classes."""
    tree = ast.parse(path.read_text(), str(path))
    module, is_pkg = _module_name(path), _is_package(path)
    known = {_module_name(p) for p in PKG.rglob("*.py")}
    found: set[str] = set()

    def visit(stmts: list[ast.stmt]) -> None:
        for node in stmts:
            if isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif lazy and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.With,
                                            ast.For, ast.While)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("neurocodec"):
                        found.add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_pkg, node.level, node.module)
                if not base.startswith("neurocodec"):
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in known else base)

    visit(tree.body)
    # importing a.b.c imports a and a.b first
    out = set()
    for name in found:
        parts = name.split(".")
        out.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    out.discard(module)
    return {m for m in out if m in known}


def _graph(lazy: bool = False) -> dict[str, set[str]]:
    return {_module_name(p): _imports(p, lazy) for p in PKG.rglob("*.py")}


def _is_training(module: str) -> bool:
    return module.rsplit(".", 1)[-1].startswith("train")


def test_import_graph_has_no_circle():
    """No circle even counting imports inside functions: a lazy import only hides a circle."""
    graph = _graph(lazy=True)
    # A package importing its own submodules (``__init__`` re-exports) is how Python packages
    # work, not a circle: drop edges from a package to its descendants.
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                dfs(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            dfs(node)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_only_training_code_imports_training_modules_at_import_time():
    bad = [
        f"{mod} imports {dep}"
        for mod, deps in _graph().items() if not _is_training(mod)
        for dep in deps if _is_training(dep)
    ]
    assert not bad, "non-training modules import training code at module level: " + "; ".join(bad)


def test_every_neural_wing_has_the_same_rooms():
    for wing in ("hnerv", "pc", "ldm", "kvb"):
        folder = PKG / "codecs" / wing
        missing = [room for room in ("model.py", "train.py", "codec.py", "cli.py") if not (folder / room).is_file()]
        assert not missing, f"wing '{wing}' lacks {missing}"


def test_model_files_are_containers_and_nothing_unpickles():
    stale = [p for p in PKG.rglob("*") if p.suffix in (".pt", ".pth", ".pkl", ".npz", ".ncpc", ".ckpt")]
    assert not stale, f"weight files in a pickle-era format ship: {stale}"
    offenders = []
    for path in PKG.rglob("*.py"):
        text = path.read_text()
        if "torch.load(" in text or "allow_pickle=True" in text or "pickle.load" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"code that can unpickle: {offenders}"
    from neurocodec import weights

    for path in PKG.rglob("weights/*.ncx"):
        model = weights.load(path)
        assert model.digest == weights.file_digest(path)


# --------------------------------------------------------------------- fresh-process checks
def _inputs() -> dict[str, tuple[object, dict]]:
    """A small input and parameters for every registered codec (tests/cases.py; kept tiny: this
    runs each codec three times): a 64x64 photo, 4 frames of 32x48, two epochs of hnerv/nerv."""
    import cases

    given = cases.sources(scale=2, frames=4, digits=5)
    return cases.cases(given, data={"pc": given["digits"][:3], "ldm": given["photo"][:48, :48]},
                       params={"hnerv": {"epochs": 2}, "nerv": {"epochs": 2}})


_CHILD = r"""
import json, sys
import torch, numba
import neurocodec
sys.path.insert(0, sys.argv[1])
from test_house import _inputs

def threads(n):
    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))

out = {}
for name, (data, params) in _inputs().items():
    threads(1)
    first = neurocodec.encode(data, codec=name, **params)
    threads(2)
    neurocodec.decode(first)
    threads(1)
    again = neurocodec.encode(data, codec=name, **params)
    out[name] = first == again
json.dump(out, sys.stdout)
"""


@pytest.mark.slow
def test_encodes_are_stateless_across_decodes_and_thread_counts():
    """Encode at one thread, decode at two, encode again at one: a codec that parked anything
    (a model moved to another device, a reseeded global RNG, a changed thread setting, a cached
    object mutated by the decoder) gives other bytes the second time."""
    env = dict(os.environ, OMP_NUM_THREADS="2", NUMBA_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(Path(__file__).parent)], capture_output=True,
                          text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert set(result) == set(_inputs())
    differ = [name for name, same in result.items() if not same]
    assert not differ, f"re-encode after a decode at another thread count changed the bytes: {differ}"


_DECODE_CHILD = r"""
import json, sys
import neurocodec
from pathlib import Path
loaded = {}
for path in sorted(Path(sys.argv[1]).glob("*.ncx")):
    neurocodec.decode(path.read_bytes())
    loaded[path.stem] = sorted(m for m in sys.modules
                               if m.startswith("neurocodec") and m.rsplit(".", 1)[-1].startswith("train"))
json.dump(loaded, sys.stdout)
"""


@pytest.mark.slow
def test_decoding_never_imports_training_code(tmp_path):
    import neurocodec

    for name, (data, params) in _inputs().items():
        (tmp_path / f"{name}.ncx").write_bytes(neurocodec.encode(data, codec=name, **params))
    proc = subprocess.run([sys.executable, "-c", _DECODE_CHILD, str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout)
    assert set(loaded) == set(_inputs())
    bad = {name: mods for name, mods in loaded.items() if mods}
    assert not bad, f"decoding imported training modules: {bad}"


def test_decode_devices_do_not_leak_into_encodes():
    """The ldm autoencoder used to be moved in place to the decode device; with a device-keyed
    cache an encode after a CPU decode must equal one before it (on a GPU machine the same check
    covers CUDA)."""
    import neurocodec
    from neurocodec import datasets

    img = datasets.load("camera")[:48, :48]
    img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
    before = neurocodec.encode(img, codec="ldm", quality=1)
    neurocodec.decode(before, scale=2.0)
    assert neurocodec.encode(img, codec="ldm", quality=1) == before


def test_thread_policy_sees_a_load_that_started_a_moment_ago(monkeypatch):
    from neurocodec import runtime

    monkeypatch.delenv("NEUROCODEC_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.3)
        # no load average could have risen in 0.3 s: only the tasks runnable now show the spinners
        assert runtime.busy_cores() >= 1
        assert runtime.default_threads() <= max(1, cores - 1)
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def test_thread_policy_does_not_count_this_processs_own_threads():
    import hashlib
    import threading

    from neurocodec import runtime

    stop = threading.Event()
    data = bytes(1 << 24)

    def spin() -> None:  # hashing releases the GIL: a thread runnable the whole time, as a busy worker is
        while not stop.is_set():
            hashlib.sha256(data).digest()

    worker = threading.Thread(target=spin)
    worker.start()
    try:
        time.sleep(0.05)
        assert max(runtime._own_runnable() for _ in range(20)) >= 2  # the reader and the worker
    finally:
        stop.set()
        worker.join()


def test_thread_policy_is_scoped_and_honours_the_environment(monkeypatch):
    import torch

    from neurocodec import runtime

    monkeypatch.setenv("NEUROCODEC_THREADS", "3")
    assert runtime.default_threads() == 3
    monkeypatch.delenv("NEUROCODEC_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert runtime.default_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    with pytest.raises(Exception, match="not a number of threads"):
        runtime.default_threads()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= runtime.default_threads() <= (os.cpu_count() or 1)
    before = torch.get_num_threads()
    with runtime.threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
