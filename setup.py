"""Builds the optional fused-kernel libraries at install (metadata lives in pyproject.toml).

Two libraries: the ONNX Runtime custom op and the LiteRT delegate (``libedgeconv_litert.so``,
needs no runtime headers; ``EDGECONV_BUILD_LITERT=0`` skips it). Neither build is ever fatal.

The library (``edgeconv/kernels/libedgeconv_kernels.so``) is built from ``edgeconv/kernels/src``
against ONNX Runtime's C/C++ API headers (see ``edgeconv/kernels/build.py`` for where they come
from). A failed build never fails the install: edgeconv works without the kernels, and
``edgeconv kernels`` then says in one line why they are missing and how to build them.
"""

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _kernel_build():
    spec = importlib.util.spec_from_file_location(
        "_edgeconv_kernel_build", ROOT / "edgeconv" / "kernels" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class BuildKernels(build_ext):
    """Compile the kernel library with the project's own build script, never fatally.

    The extension entry only gives setuptools a place for the file: it keeps its plain name
    (it is an ONNX Runtime custom-op library, not a Python module).
    """

    def get_ext_filename(self, fullname):
        if fullname == KERNEL_EXT:  # setuptools asks with the full dotted name
            return os.path.join("edgeconv", "kernels", _kernel_build().LIB_NAME)
        if fullname == KERNEL_EXT.rsplit(".", 1)[1]:  # distutils' get_ext_fullpath: last part
            return _kernel_build().LIB_NAME
        return super().get_ext_filename(fullname)

    def build_extension(self, ext):
        out = Path(self.get_ext_fullpath(ext.name))
        if os.environ.get("EDGECONV_BUILD_KERNELS", "1") == "0":
            print("edgeconv kernels: skipped (EDGECONV_BUILD_KERNELS=0)", file=sys.stderr)
            return
        kb = _kernel_build()
        self._build_litert_delegate(kb, out.with_name(kb.LITERT_LIB_NAME))
        try:
            inc = kb.find_ort_include()
            kb.build(out, inc)
            print(f"edgeconv kernels: built {out} against {inc}", file=sys.stderr)
            if getattr(self, "editable_mode", False) and not self.inplace:
                # editable install: the package is imported from this tree, so the library
                # must land here too (setuptools copies only real Python extensions)
                src = ROOT / "edgeconv" / "kernels" / kb.LIB_NAME
                tmp = src.with_name(src.name + ".tmp")
                shutil.copy2(out, tmp)
                os.replace(tmp, src)
                print(f"edgeconv kernels: copied to {src}", file=sys.stderr)
        except kb.BuildError as exc:
            print(f"edgeconv kernels: NOT built ({exc}); edgeconv works without them, "
                  f"`edgeconv kernels` says how to build them", file=sys.stderr)

    def _build_litert_delegate(self, kb, out: Path):
        """The LiteRT delegate library (no runtime headers needed), next to the ORT one."""
        if os.environ.get("EDGECONV_BUILD_LITERT", "1") == "0":
            print("edgeconv litert delegate: skipped (EDGECONV_BUILD_LITERT=0)", file=sys.stderr)
            return
        try:
            kb.build_litert(out)
            print(f"edgeconv litert delegate: built {out}", file=sys.stderr)
            if getattr(self, "editable_mode", False) and not self.inplace:
                src = ROOT / "edgeconv" / "kernels" / kb.LITERT_LIB_NAME
                tmp = src.with_name(src.name + ".tmp")
                shutil.copy2(out, tmp)
                os.replace(tmp, src)
        except Exception as exc:  # noqa: BLE001 - never fatal to the install
            print(f"edgeconv litert delegate: NOT built ({exc}); fused .tflite files then run "
                  f"their portable body", file=sys.stderr)

    def copy_extensions_to_source(self):  # done in build_extension, only if really built
        pass

    def get_outputs(self):
        outs = [p for p in super().get_outputs() if Path(p).exists()]
        delegate = Path(self.get_ext_fullpath(KERNEL_EXT)).with_name(_kernel_build().LITERT_LIB_NAME)
        return outs + ([str(delegate)] if delegate.exists() else [])


KERNEL_EXT = "edgeconv.kernels._native"
setup(ext_modules=[Extension(KERNEL_EXT, sources=[])],
      cmdclass={"build_ext": BuildKernels})
