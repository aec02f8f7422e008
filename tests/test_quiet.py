"""`-q` silences every progress bar, busy ticker and summary on stderr, command by command."""
from __future__ import annotations

import numpy as np
import pytest

from neurocodec import io
from neurocodec.cli import main


@pytest.fixture()
def files(tmp_path, photo_small, carphone_small, mnist_small):
    io.write_image(tmp_path / "img.png", photo_small)
    np.save(tmp_path / "clip.npy", carphone_small[:3])
    np.save(tmp_path / "digits.npy", mnist_small[:4])
    return tmp_path


@pytest.fixture()
def instant_ticker(monkeypatch):
    """The busy ticker from the first moment (it waits 2 s normally), so a quick step would show it."""
    from neurocodec import cli

    init = cli._Ticker.__init__
    monkeypatch.setattr(cli._Ticker, "__init__", lambda self, desc, delay=0.0: init(self, desc, 0.0))


def _commands(d) -> list[list[str]]:
    return [
        ["encode", f"{d}/img.png", "-o", f"{d}/w.ncx", "--codec", "webp"],
        ["decode", f"{d}/w.ncx", "-o", f"{d}/w.png"],
        ["encode", f"{d}/clip.npy", "-o", f"{d}/c.ncx", "--codec", "x264"],
        ["decode", f"{d}/c.ncx", "-o", f"{d}/c.y4m", "--frames", "0:2"],
        ["encode", f"{d}/digits.npy", "-o", f"{d}/d.ncx", "--codec", "pc", "--param", "model=mnist"],
        ["decode", f"{d}/d.ncx", "-o", f"{d}/d.npy"],
        ["compare", f"{d}/img.png", "--codecs", "jpeg,webp", "--bpp", "1", "-o", f"{d}/cmp.png"],
        ["bench", "entropy", "--quick", "--out", f"{d}/bench"],
    ]


def test_quiet_silences_stderr_of_every_command(files, instant_ticker, capfd):
    for argv in _commands(files):
        assert main([*argv, "-q"]) == 0, argv
        err = capfd.readouterr().err
        assert err == "", (argv, err)


def test_without_quiet_the_same_commands_report(files, instant_ticker, capfd):
    # the counter-check: what -q removes is there without it (summaries, bars, the ticker)
    for argv in _commands(files)[:3]:
        assert main(argv) == 0, argv
        assert capfd.readouterr().err.strip(), argv
