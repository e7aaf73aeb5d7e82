"""Building the kernel library: never fatal to the install, and the kernel tests skip with the
reason where it is missing (an environment without ONNX Runtime headers or a compiler)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_build_without_headers_does_not_fail_the_install(tmp_path):
    env = dict(os.environ, ORT_INCLUDE_DIR=str(tmp_path / "no-headers-here"),
               EDGECONV_BUILD_LITERT="0")  # (the delegate needs no headers: a slow build here)
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib",
                           str(tmp_path / "lib"), "--build-temp", str(tmp_path / "tmp")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "edgeconv kernels: NOT built" in proc.stderr and "has no onnxruntime_c_api.h" in proc.stderr
    assert not list((tmp_path / "lib").rglob("libedgeconv_kernels.so"))


def test_failed_delegate_build_does_not_fail_the_install(tmp_path):
    env = dict(os.environ, ORT_INCLUDE_DIR=str(tmp_path / "no-headers-here"),
               CXX="no-such-compiler-g++")
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib",
                           str(tmp_path / "lib"), "--build-temp", str(tmp_path / "tmp")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "edgeconv litert delegate: NOT built" in proc.stderr
    assert "no C++ compiler 'no-such-compiler-g++'" in proc.stderr
    assert not list((tmp_path / "lib").rglob("libedgeconv_litert.so"))


def test_build_without_a_compiler_says_so(tmp_path, monkeypatch):
    from edgeconv.kernels import build

    monkeypatch.setenv("CXX", "no-such-compiler-g++")
    with pytest.raises(build.BuildError, match="no C\\+\\+ compiler 'no-such-compiler-g\\+\\+'"):
        build.build(tmp_path / "lib.so", include=tmp_path)
    monkeypatch.setenv("ORT_INCLUDE_DIR", str(tmp_path))
    with pytest.raises(build.BuildError, match="has no onnxruntime_c_api.h"):
        build.find_ort_include()


def test_kernel_tests_skip_with_the_reason_when_the_library_is_missing(tmp_path):
    env = dict(os.environ, EDGECONV_KERNELS_LIB=str(tmp_path / "missing.so"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "tests/test_kernels.py"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert " passed" not in proc.stdout and "skipped" in proc.stdout
    assert "edgeconv kernels: the edgeconv kernels are not built" in proc.stdout


def test_domain_scan_reads_opset_imports_only():
    """The torch-free scan that decides whether a model needs the library."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from edgeconv.kernels import model_uses_kernels
    from edgeconv.kernels.onnx_domains import imports_domain

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    plain = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    helper.set_model_props(plain, {"edgeconv": "{}"})  # the metadata key every export has
    fused = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18),
                                                helper.make_opsetid("edgeconv", 1)])
    assert not model_uses_kernels(plain.SerializeToString())
    assert model_uses_kernels(fused.SerializeToString())
    assert imports_domain(fused.SerializeToString(), "") and not imports_domain(plain.SerializeToString(), "x")
    data = fused.SerializeToString()
    assert not model_uses_kernels(b"not a model") and not model_uses_kernels(data[:5])
