"""Build script for the compiled kernels; everything else about the package is in pyproject.toml.

``native/pc_kernels.c`` becomes ``neurocodec.codecs.pc._native``. The extension is optional: on a
machine without a C compiler ``pip install`` still succeeds and pc runs its Numba kernels (the
same bits, slower, with a JIT warm-up). Plain C against the CPython API and the buffer protocol:
no numpy headers, no Cython, nothing to add to the build requirements.
"""
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Bits must match the Numba kernels: IEEE doubles, no fast-math, no fused multiply-add.
_FLAGS = {
    "unix": ["-O3", "-std=c99", "-fno-fast-math", "-ffp-contract=off", "-fno-strict-aliasing"],
    "msvc": ["/O2", "/fp:precise"],
}


class BuildExt(build_ext):
    def build_extensions(self) -> None:
        flags = _FLAGS.get(self.compiler.compiler_type, [])
        for ext in self.extensions:
            ext.extra_compile_args = [*flags, *ext.extra_compile_args]
        super().build_extensions()


setup(
    ext_modules=[Extension("neurocodec.codecs.pc._native", sources=["native/pc_kernels.c"], optional=True)],
    cmdclass={"build_ext": BuildExt},
)
