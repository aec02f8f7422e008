"""Entropy-layer throughput and rate: neurocodec.entropy against the empirical entropy.

    neurocodec bench entropy [--quick] [--out DIR] [--codecs iid,gaussian,tables]

Writes <results>/entropy/synthetic/<family>.json and prints a table. Throughput is in
million symbols per second on this machine, single thread; rate is file bytes over the entropy.
"""
from __future__ import annotations

import time

import numpy as np

from ... import entropy
from ..results import write_results
from ._shared import parser, split_names


def _best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = parser("entropy", __doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--codecs", nargs="+", help="families: iid, gaussian, tables")
    ap.add_argument("--data", nargs="+", help="ignored (synthetic data only)")
    args = ap.parse_args(argv)
    families = set(split_names(args.codecs) or ["iid", "gaussian", "tables"])
    if families - {"iid", "gaussian", "tables"}:
        ap.error(f"unknown families {sorted(families - {'iid', 'gaussian', 'tables'})}; known: gaussian, iid, tables")
    n = 100_000 if args.quick else 2_000_000
    repeats = 1 if args.quick else 3
    rng = np.random.default_rng(0)
    rows = []

    def record(family: str, symbols: int, nbytes: int, ideal_bytes: float, enc_s: float, dec_s: float) -> None:
        res = {"symbols": [symbols], "bytes": [nbytes], "ideal_bytes": [ideal_bytes],
               "rate_over_entropy": [nbytes / ideal_bytes], "encode_msym_per_s": [symbols / enc_s / 1e6],
               "decode_msym_per_s": [symbols / dec_s / 1e6]}
        write_results("entropy", "synthetic", family, res, quick=args.quick, out_dir=args.out,
                      description=f"{symbols} synthetic symbols, best of {repeats} runs")
        rows.append((family, symbols, nbytes / ideal_bytes, symbols / enc_s / 1e6, symbols / dec_s / 1e6))

    if "iid" in families:
        x = rng.geometric(0.15, n) - 1
        enc, blob = _best_of(lambda: entropy.encode_symbols(x), repeats)
        dec, back = _best_of(lambda: entropy.decode_symbols(blob), repeats)
        assert np.array_equal(back, x)
        _, c = np.unique(x, return_counts=True)
        record("iid", n, len(blob), float(-(c * np.log2(c / n)).sum() / 8), enc, dec)
    if "gaussian" in families:
        m = n // 4
        mu, sd = rng.normal(0, 4, m), rng.uniform(0.5, 8, m)
        x = np.clip(np.round(mu + rng.normal(0, 1, m) * sd), -128, 127).astype(np.int64)
        enc, blob = _best_of(lambda: entropy.encode_quantized(x, mu, sd, lo=-128, hi=127), repeats)
        dec, back = _best_of(lambda: entropy.decode_quantized(blob, mu, sd, lo=-128, hi=127, count=m), repeats)
        assert np.array_equal(back, x)
        from scipy.stats import norm

        p = norm.cdf(x + 0.5, mu, sd) - norm.cdf(x - 0.5, mu, sd)
        record("gaussian", m, len(blob), float(-np.log2(np.maximum(p, 1e-12)).sum() / 8), enc, dec)
    if "tables" in families:
        m = n // 20
        freqs = entropy.quantize_pmf(rng.dirichlet(np.full(256, 0.05), size=m))
        cdf = np.cumsum(freqs, axis=1)
        x = (cdf < rng.integers(0, 1 << 16, m)[:, None]).sum(axis=1)
        enc, blob = _best_of(lambda: entropy.encode_with_tables(x, freqs), repeats)
        dec, back = _best_of(lambda: entropy.decode_with_tables(blob, freqs), repeats)
        assert np.array_equal(back, x)
        p = freqs[np.arange(m), x] / (1 << 16)
        record("tables", m, len(blob), float(-np.log2(p).sum() / 8), enc, dec)

    print(f"{'family':<10}{'symbols':>10}{'rate/ideal':>12}{'enc Msym/s':>12}{'dec Msym/s':>12}")
    for fam, sym, ratio, e, d in rows:
        print(f"{fam:<10}{sym:>10}{ratio:>12.4f}{e:>12.2f}{d:>12.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
