"""The compiled pc kernels (native/pc_kernels.c) against the Numba ones, bit for bit.

Why: bitstreams must not depend on which kernel an installation happens to have, so the C
extension must reproduce every integer table of the Numba path (the reference and fallback), on
random circuits of every shape and on the shipped models with real images; and the model-building
twins must give the very same floats."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from neurocodec import datasets
from neurocodec.entropy import SequentialDecoder
from neurocodec.codecs.pc import coding, kernels, native
from neurocodec.codecs.pc import model as pcmodel
from neurocodec.codecs.pc.model import HCLT, load_model
from neurocodec.codecs.pc.structure import compile_tree
from neurocodec.errors import CorruptStreamError, UsageError

PREC = 24


def _have_compiler() -> bool:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None


def test_extension_is_built_where_a_compiler_is():
    """`pip install` builds the extension whenever a C compiler is there (CI has gcc); only a
    machine without one may fall back to Numba silently."""
    if not _have_compiler():
        pytest.skip("no C compiler: the Numba fallback is what this installation runs")
    assert native.available(), "the C extension neurocodec.codecs.pc._native was not built: run pip install -e ."
    assert native.DEFAULT == "native" or os.environ.get(native.ENV, "").lower() == "numba"


needs_native = pytest.mark.skipif(not native.available(), reason="compiled pc kernels not built")


def _circuit(parent: np.ndarray, m: int, seed: int, basis: int = 0, skew: float = 0.3) -> HCLT:
    rng = np.random.default_rng(seed)
    tree = compile_tree(parent)
    d = parent.shape[0]
    prior, trans = rng.dirichlet(np.ones(m)), rng.dirichlet(np.full(m, skew), size=(d, m))
    if basis:
        return HCLT.from_probs(tree, prior, trans, None, (1, d, 1), rng.dirichlet(np.ones(basis), size=(d, m)),
                               rng.dirichlet(np.full(256, skew), size=basis))
    return HCLT.from_probs(tree, prior, trans, rng.dirichlet(np.full(256, skew), size=(d, m)), (1, d, 1))


def _trees(d: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"random": np.array([-1] + [int(rng.integers(v)) for v in range(1, d)], dtype=np.int32),
            "chain": np.arange(-1, d - 1, dtype=np.int32),
            "star": np.array([-1] + [0] * (d - 1), dtype=np.int32),
            # root in the middle, raster order jumping between branches
            "shuffled": np.array([int(p) for p in _shuffled_parent(d, rng)], dtype=np.int32)}


def _shuffled_parent(d: int, rng: np.random.Generator) -> np.ndarray:
    order = rng.permutation(d)  # order[0] is the root; each later node hangs under an earlier one
    parent = np.empty(d, dtype=np.int32)
    parent[order[0]] = -1
    for i in range(1, d):
        parent[order[i]] = order[int(rng.integers(i))]
    return parent


@needs_native
@pytest.mark.parametrize("m", [1, 3, 16, 20])
def test_tables_equal_numba_and_naive_on_random_circuits(m):
    for name, parent in _trees(23, seed=m).items():
        for basis in (0, 4):
            circ = _circuit(parent, m, seed=m + basis, basis=basis)
            x = np.random.default_rng(m).integers(0, 256, (5, circ.num_vars)).astype(np.uint8)
            got = coding.efficient_tables(circ, x, PREC, kernel="native")  # node-major state
            assert np.array_equal(got, coding.efficient_tables(circ, x, PREC, kernel="numba")), (name, basis)
            assert np.array_equal(got, coding.naive_tables(circ, x, PREC)), (name, basis)


@needs_native
def test_bitstreams_equal_with_padding_and_chunks(monkeypatch):
    """Masked (padding) pixels, several chunks and several encoder blocks: same words, and each
    kernel decodes the other's stream."""
    circ = _circuit(_trees(30, seed=5)["shuffled"], 6, seed=7, basis=3)
    rng = np.random.default_rng(3)
    patches = rng.integers(0, 256, (11, 30)).astype(np.uint8)
    mask = rng.random((11, 30)) < 0.8
    mask[:, 4] = False  # a position no patch codes
    monkeypatch.setattr(coding, "STATE_BYTES", 4 * 30 * 6 * 8)  # chunks of 4 patches
    monkeypatch.setattr(coding, "TABLE_ROWS", 9)  # two positions per encoder call
    words = coding.encode_patches(circ, patches, mask, PREC, kernel="native")
    assert words == coding.encode_patches(circ, patches, mask, PREC, kernel="numba")
    for kernel in native.KERNELS:
        back = coding.decode_patches(circ, words, mask, PREC, kernel=kernel)
        assert np.array_equal(back[mask], patches[mask]) and not back[~mask].any(), kernel


@needs_native
def test_decoder_groups_of_patches_decode_the_same():
    """More patches per position than the C decoder hands to the range decoder at once (512)."""
    circ = _circuit(_trees(5, seed=2)["random"], 2, seed=4)
    rng = np.random.default_rng(8)
    patches = rng.integers(0, 256, (1100, 5)).astype(np.uint8)
    mask = rng.random((1100, 5)) < 0.9
    words = coding.encode_patches(circ, patches, mask, PREC, kernel="native")
    assert words == coding.encode_patches(circ, patches, mask, PREC, kernel="numba")
    back = coding.decode_patches(circ, words, mask, PREC, kernel="native")
    assert np.array_equal(back[mask], patches[mask])


@needs_native
def test_shipped_models_on_real_images():
    digits, _ = datasets.load("mnist_5k")
    circ = load_model("mnist").circuits[1]
    x = np.ascontiguousarray(digits[::700][:6].reshape(6, -1))
    assert np.array_equal(coding.efficient_tables(circ, x, PREC, kernel="native"),
                          coding.efficient_tables(circ, x, PREC, kernel="numba"))
    photo = datasets.load("astronaut")[100:140, 200:250]
    nat = load_model("natural")
    for planes in (photo[None], photo[None, :, :, 1:2]):
        circ = coding.choose_circuit(nat, planes.shape[3])
        lay = coding.make_layout(planes.shape, circ)
        patches, mask = coding.to_patches(np.ascontiguousarray(planes), lay)
        words = coding.encode_patches(circ, patches, mask, PREC, kernel="native")
        assert words == coding.encode_patches(circ, patches, mask, PREC, kernel="numba")
        assert np.array_equal(coding.decode_patches(circ, words, mask, PREC, kernel="native"),
                              coding.decode_patches(circ, words, mask, PREC, kernel="numba"))


@needs_native
def test_model_building_twins_give_the_same_floats():
    assert kernels.Q_STEP == pcmodel.Q_STEP
    q = np.concatenate([np.arange(256, dtype=np.uint8)[None], np.full((1, 256), 9, np.uint8),
                        np.random.default_rng(0).integers(0, 256, (4, 256)).astype(np.uint8)])
    numba_q = np.empty(q.shape)
    kernels.dequantize_rows(q, numba_q)
    assert np.array_equal(native.dequantize(q).view(np.uint64), numba_q.view(np.uint64))
    circ = load_model("natural").circuits[3]
    w, basis = pcmodel.dequantize(circ.q_bw), pcmodel.dequantize(circ.q_basis)
    numba_leaf = np.empty(circ.leaf.shape)
    kernels.mix_leaves(w, basis, numba_leaf)
    assert np.array_equal(native.mix_leaves(w, basis).view(np.uint64), numba_leaf.view(np.uint64))
    assert np.array_equal(native.mix_leaves(w, basis).view(np.uint64), circ.leaf.view(np.uint64))
    assert np.array_equal(native.dequantize(circ.q_trans).view(np.uint64), circ.trans.view(np.uint64))


@needs_native
def test_damage_is_reported_not_crashed():
    circ = _circuit(_trees(12, seed=1)["random"], 4, seed=2)
    x = np.random.default_rng(1).integers(0, 256, (3, 12)).astype(np.uint8)
    mask = np.ones_like(x, dtype=bool)
    words = coding.encode_patches(circ, x, mask, PREC, kernel="native")
    for bad in (words[: len(words) // 2], bytes(len(words)), b"\xff" * 4):
        try:
            out = coding.decode_patches(circ, bad, mask, PREC, kernel="native")
        except CorruptStreamError:
            continue
        assert out.shape == x.shape  # a damaged stream may also decode to other pixels
    coder = native.coder(circ, 2, PREC)
    with pytest.raises(IndexError):
        coder.tables(12, np.ones(2, bool), np.empty((2, 256)))
    with pytest.raises(ValueError):
        coder.tables(0, np.ones(3, bool), np.empty((2, 256)))  # active of the wrong length
    assert coder.observe(0, np.array([3, 256]), np.ones(2, bool)) == -1  # a pixel outside 0..255
    mask_t = np.ones((12, 2), bool)
    tables = np.empty((2, 256))
    assert coder.decode(np.arange(3), mask_t, 0, lambda t: np.array([1, 999]), tables) == -2
    # int32, as SequentialDecoder.bare_pull returns them: checked the same; floats and short pulls refused
    assert coder.decode(np.arange(3), mask_t, 0, lambda t: np.array([1, -1], np.int32), tables) == -2
    assert coder.decode(np.arange(3), mask_t, 0, lambda t: np.array([1.0, 2.0]), tables) == -2
    assert coder.decode(np.arange(3), mask_t, 0, lambda t: np.array([1], np.int32), tables) == -2
    assert coder.decode(np.arange(1), mask_t, 0, lambda t: np.array([7, 9], np.int32), tables) == 0
    with pytest.raises(CorruptStreamError, match="entropy decoding failed"):
        SequentialDecoder.failed(ValueError("bad words"))
    with pytest.raises(CorruptStreamError, match="boom"):
        coder.decode(np.arange(3), mask_t, 0, lambda t: (_ for _ in ()).throw(CorruptStreamError("boom")), tables)


def test_kernel_choice():
    assert native.resolve("numba") == "numba"
    assert native.resolve("auto") == native.DEFAULT
    with pytest.raises(UsageError, match="not a kernel"):
        native.resolve("cuda")
    if not native.available():
        with pytest.raises(UsageError, match="not built"):
            native.resolve("native")
    code = "from neurocodec.codecs.pc import native; print(native.DEFAULT)"
    env = {**os.environ, native.ENV: "numba"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "numba"


@needs_native
def test_fresh_process_codes_without_loading_numba(tmp_path):
    """The default path of a pc encode and decode of a digit never imports Numba: no
    JIT compile and none of Numba's 0.9 s import time on a first call (the fallback kernels load
    lazily, on first use)."""
    code = ("import sys, numpy as np, neurocodec\n"
            "x = (np.arange(28 * 28).reshape(28, 28) % 251).astype(np.uint8)\n"
            "assert (neurocodec.decode(neurocodec.encode(x, codec='pc')) == x).all()\n"
            "print('numba' in sys.modules)\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    env.pop(native.ENV, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
    assert kernels.cond_freqs.py_func is not None  # the fallback is still there


def test_kernel_scope_is_context_local_and_changes_no_module_state():
    """``kernel_scope`` (the perf benchmark's way to run the codec API on either kernel) sets a
    context variable: the block sees its kernel, another thread and the code after it do not, and
    :data:`native.DEFAULT` stays what the environment made it at import."""
    import threading

    default = native.DEFAULT
    seen: list[str] = []
    with native.kernel_scope("numba") as name:
        assert name == "numba" and native.current() == "numba" and native.resolve() == "numba"
        assert native.resolve("auto") == "numba" and native.DEFAULT == default
        worker = threading.Thread(target=lambda: seen.append(native.current()))
        worker.start()
        worker.join()
    assert seen == [default]
    assert native.current() == default and native.resolve() == default
    with pytest.raises(UsageError, match="not a kernel"):
        with native.kernel_scope("cuda"):
            pass
    assert native.current() == default


def test_codec_bytes_do_not_depend_on_the_kernel_scope():
    import neurocodec

    (_, _), (digits, _) = datasets.mnist_5k_split()
    blob = neurocodec.encode(digits[:2], codec="pc", model="mnist")
    with native.kernel_scope("numba"):
        assert neurocodec.encode(digits[:2], codec="pc", model="mnist") == blob
        assert np.array_equal(neurocodec.decode(blob), digits[:2])
