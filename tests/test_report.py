"""benchmarks/report.py and the figure code it shares with `neurocodec plot` and the suites: like-for-
like tables, BD tables that name their dataset, dirty-tree results flagged, one look for every figure."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from neurocodec.bench import plot, results

ROOT = Path(__file__).resolve().parents[1]


def _load_report():
    spec = importlib.util.spec_from_file_location("neurocodec_benchmarks_report_t", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = _load_report()


def _write(base: Path, suite: str, dataset: str, codec: str, res: dict, commit: str, **kw) -> Path:
    path = results.write_results(suite, dataset, codec, res, out_dir=base, **kw)
    doc = json.loads(path.read_text())
    doc["environment"]["git_commit"] = commit  # the commit is the checkout's; set it to test both cases
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture()
def results_dir(tmp_path):
    clean, dirty = "a" * 40, "b" * 40 + "-dirty"
    rd = {"bpp": [0.02, 0.04, 0.08, 0.16], "psnr-rgb": [26.0, 29.0, 32.0, 34.5]}
    _write(tmp_path, "video", "clipA", "x265", rd, clean)
    _write(tmp_path, "video", "clipA", "hnerv", {"bpp": [0.03, 0.06, 0.1, 0.2], "psnr-rgb": [25.0, 27.0, 28.5, 30.0]},
           dirty, extra={"vs_nerv": [{"hnerv_values": 100, "nerv_values": 98, "epochs": 3, "hnerv_psnr": 27.0,
                                      "nerv_psnr": 26.0, "delta_db": 1.0}]})
    _write(tmp_path, "video", "clipA", "nerv", {"bpp": [0.03, 0.06, 0.1, 0.2], "psnr-rgb": [24.0, 26.0, 27.5, 28.0]}, clean)
    _write(tmp_path, "lossless", "mnist_5k", "pc", {"bpd": [1.35], "bpd_per_image_files": [2.7],
                                                    "bpd_per_image_payload": [1.37], "encode_images_per_s": [140.0],
                                                    "encode_images_per_s_per_image_files": [60.0]}, clean,
           description="pc on 1000 test images; bpd = one .ncx holding the batch")
    _write(tmp_path, "lossless", "mnist_5k", "png", {"bpd": [3.6], "bpd_payload": [2.8]}, clean,
           description="png lossless, one .ncx per image")
    _write(tmp_path, "lossless", "mnist_5k", "lzma", {"bpd": [1.45]}, clean, description="lzma over the raw bytes")
    return tmp_path


def test_lossless_rows_are_like_for_like(results_dir):
    text = report.render(results_dir)
    assert "| pc | one per image | 2.7 | 1.37 |" in text  # pc cut like png ...
    assert "| png | one per image | 3.6 | 2.8 |" in text
    assert "| pc | one for the set | 1.35 | n/a |" in text  # ... and like lzma
    assert "| lzma | one for the set | 1.45 | 1.45 |" in text
    table = text[text.index("#### lossless / mnist_5k"):]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "codec" not in line]
    assert [r.split(" | ")[1] for r in rows[:4]] == ["one per image", "one per image", "one for the set", "one for the set"]


def test_bd_table_names_its_dataset_and_second_anchor(results_dir):
    text = report.render(results_dir)
    bd = text[text.index("BD on video/clipA"):]
    assert "| hnerv | x265 |" in bd and "| hnerv | nerv |" in bd and "| nerv | x265 |" in bd
    assert "HNeRV against NeRV at equal size" in text and "| 100 | 98 | 3 | 27 | 26 | 1 |" in text


def test_dirty_results_are_flagged_and_listed(results_dir, capsys):
    text = report.render(results_dir)
    assert "bbbbbbbbbbbb-dirty" in text and "Result files written from a checkout with uncommitted changes: 1**" in text
    row = next(line for line in text.splitlines() if line.startswith("| hnerv | 0.03"))
    assert row.endswith("| bbbbbbbbbbbb-dirty |")
    listed = report.dirty_results(results_dir)
    assert [p.name for p, _ in listed] == ["hnerv.json"]
    assert report.main(["--results", str(results_dir), "--dirty"]) == 1
    assert "hnerv.json" in capsys.readouterr().out


def test_kvb_table_says_whether_it_is_the_shipped_model(tmp_path):
    shipped = json.loads(report.KVB_SHIPPED.read_text())["models"]["mnist"]
    params = {k: shipped[k] for k in ("num_codebooks", "num_keys", "key_dim")}
    _write(tmp_path, "kvb", "mnist", "kvb", {"accuracy": [0.9], "bits_per_sample": [500.0]}, "c" * 40,
           extra={"params": params})
    assert "the shipped `mnist` model's bottleneck" in report.render(tmp_path)
    _write(tmp_path, "kvb", "mnist", "kvb", {"accuracy": [0.9], "bits_per_sample": [500.0]}, "c" * 40,
           extra={"params": {**params, "num_keys": 2 * params["num_keys"]}})
    assert "NOT the shipped `mnist` model" in report.render(tmp_path)


def test_figures_use_the_plot_colours_and_labels(results_dir):
    docs = plot.load_suite("video", "clipA", results_dir)["clipA"]
    fig = plot.rd_figure([(docs, "bpp", "psnr-rgb", None)])
    ax = fig.axes[0]
    colours = {line.get_label(): line.get_color() for line in ax.lines}
    assert colours == {name: plot.colour(name) for name in ("hnerv", "nerv", "x265")}
    assert ax.get_xlabel() == plot.axis_label("bpp") == "rate (bits per pixel)"
    assert ax.get_ylabel() == "PSNR-RGB (dB)"
    assert all(len(line.get_xdata()) == 4 for line in ax.lines)  # a marker per RD point, none dropped
    plot._pyplot().close(fig)


def test_report_redraws_figures_and_the_bytes_repeat(results_dir):
    written = report.figures(results_dir)
    rd = results_dir / "video" / "clipA" / "rd.png"
    assert rd in written and rd.stat().st_size > 5000
    first = rd.read_bytes()
    report.figures(results_dir)
    assert rd.read_bytes() == first


def test_kvb_figure_draws_points_not_lines():
    sweeps = {"digits": [{"num_codebooks": c, "num_keys": k, "bits_coded": b, "final_accuracy": a}
                         for c, k, b, a in ((1, 256, 8, 0.7), (64, 16, 250, 0.9), (16, 256, 126, 0.97))]}
    rows = [("digits", "kvb", {"bits_per_sample": [440.0], "accuracy": [0.97]}),
            ("digits", "iid", {"bits_per_sample": [440.0], "accuracy": [0.972]})]
    fig = plot.kvb_figure(sweeps, rows)
    ax = fig.axes[0]
    assert not ax.lines  # no line joins two (C, K) configurations
    labels = [t.get_text() for t in ax.texts]
    assert sorted(labels) == ["C=1,K=256", "C=16,K=256", "C=64,K=16"]
    lo, hi = ax.get_xlim()
    assert lo < 8 and hi > 440 * 1.5  # room for the rightmost label
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "iid, digits" in legend and "kvb, digits" in legend
    plot._pyplot().close(fig)


def test_crop_strip_keeps_raw_tiles_and_draws_captions(tmp_path):
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 255, (32, 40, 3), dtype=np.uint8) for _ in range(3)]
    captions = [{"name": "original"}, {"name": "jpeg", "setting": "q50", "bpp": 0.512, "psnr": 31.25},
                {"name": "png", "bpp": 9.1, "psnr": float("inf")}]
    out = plot.write_crop_strip(tmp_path / "crops", "x", tiles, captions, title="test strip")
    raw = tmp_path / "crops" / "raw" / "x.png"
    from neurocodec.io import read_image

    assert np.array_equal(read_image(raw), np.concatenate(tiles, axis=1))  # the data, unlabelled
    labelled = read_image(out)
    assert labelled.shape[0] > 32 + 3 * 14 and labelled.shape[1] > 120  # room for title and 3 caption lines
    assert plot.caption_lines(captions[1]) == ["jpeg q50", "0.512 bpp", "31.25 dB PSNR"]
    assert plot.caption_lines(captions[2])[-1] == "lossless"
    before = out.read_bytes()
    assert plot.draw_crop_strip(raw.with_suffix(".json")) == out and out.read_bytes() == before
    with pytest.raises(ValueError, match="one caption per tile"):
        plot.write_crop_strip(tmp_path, "y", tiles, captions[:2])
