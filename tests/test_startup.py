"""Start-up: the everyday commands never import torch or numba (a fresh process each)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from neurocodec import io
from neurocodec.codec import encode

_PROBE = """
import sys, contextlib, io
from neurocodec.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(code, sorted(m for m in ("torch", "numba") if m in sys.modules))
"""


def test_everyday_commands_import_neither_torch_nor_numba(tmp_path):
    img = (np.indices((16, 24)).sum(0)[..., None] * np.array([1, 2, 3]) % 256).astype(np.uint8)
    io.write_image(tmp_path / "x.png", img)
    io.write_bytes_atomic(tmp_path / "x.ncx", encode(img, codec="png"))
    commands = (["--help"], ["codecs"], ["info", str(tmp_path / "x.ncx")],
                ["encode", str(tmp_path / "x.png"), "-c", "png", "-o", str(tmp_path / "y.ncx"), "-q"])
    for argv in commands:
        out = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, check=True)
        assert out.stdout.strip().splitlines()[-1] == "0 []", (argv, out.stdout, out.stderr)
    assert (tmp_path / "y.ncx").stat().st_size > 0


def test_light_descriptions_match_the_classes():
    from neurocodec.codec import describe_codecs, list_codecs

    light = describe_codecs()
    for name, cls in list_codecs().items():
        info = light[name]
        assert (info.kind, info.version, info.description) == (cls.kind, cls.version, cls.description), name


def test_wing_command_table_matches_the_wings():
    """cli._EXTENSIONS names every command a wing adds, with the wing's own help line."""
    import argparse
    import importlib

    from neurocodec import cli

    for module_name, commands in cli._EXTENSIONS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module_name).add_commands(sub, argparse.ArgumentParser(add_help=False))
        helps = {a.dest: a.help for a in sub._choices_actions}
        assert helps == commands, module_name
