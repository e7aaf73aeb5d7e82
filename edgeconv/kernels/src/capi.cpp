// A small C ABI next to the ORT binding: build information for `edgeconv kernels`, and a
// direct single-threaded entry to the math so that every ISA path can be tested from Python
// (ctypes) against the torch reference without going through a runtime.
#include <cstdlib>
#include <cstring>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

#include "onnxruntime_c_api.h"
#include "tvconv_kernel.h"
#include "version.h"

namespace {

// The C entries' error report: `msg` into the caller's buffer (truncated), status 1.
int fail_with(char* err, int errlen, const char* msg) {
  if (err && errlen > 0) {
    std::strncpy(err, msg, static_cast<size_t>(errlen) - 1);
    err[errlen - 1] = '\0';
  }
  return 1;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) const char* edgeconv_kernels_version() {
  return EDGECONV_KERNELS_VERSION;
}
__attribute__((visibility("default"))) const char* edgeconv_kernels_layout() { return EDGECONV_LAYOUT; }
// Every packed layout this library reads, comma-separated.
__attribute__((visibility("default"))) const char* edgeconv_kernels_layouts() {
  return EDGECONV_LAYOUT "," EDGECONV_FLAT_LAYOUT;
}
__attribute__((visibility("default"))) int edgeconv_kernels_ort_api_version() { return ORT_API_VERSION; }
// The `edgeconv` opset versions (= weight-layout versions) this library's TVConv reads.
__attribute__((visibility("default"))) int edgeconv_kernels_op_version_min() { return EDGECONV_OP_VERSION_MIN; }
__attribute__((visibility("default"))) int edgeconv_kernels_op_version_max() { return EDGECONV_OP_VERSION; }
__attribute__((visibility("default"))) const char* edgeconv_kernels_available_isas() {
  return edgeconv::available_isas();
}
// The ISA a session would use now: EDGECONV_KERNEL_ISA if set (and runnable), else the best.
__attribute__((visibility("default"))) const char* edgeconv_kernels_selected_isa() {
  const int isa = edgeconv::select_isa(std::getenv("EDGECONV_KERNEL_ISA"));
  return isa < 0 ? "unavailable" : edgeconv::isa_name(isa);
}

// One call of the kernel on one thread. ``layout``: 0 rows ("c_h_kk_w8"), 1 flat ("c_kk_hw").
__attribute__((visibility("default"))) int edgeconv_tvconv_run_layout(
    const char* isa_name, int layout, const float* x, float* y, const void* w, int wtype,
    const float* scales, const float* bias, int bias_mode, int act, int64_t N, int64_t C,
    int64_t H, int64_t W, int k, int s, char* err, int errlen) {
  auto fail = [&](const char* msg) { return fail_with(err, errlen, msg); };
  const int isa = edgeconv::select_isa(isa_name);
  if (isa < 0) return fail("requested ISA is not available on this CPU/build");
  edgeconv::TVConvArgs a;
  a.layout = layout;
  a.x = x; a.y = y; a.w = w; a.wtype = wtype; a.scales = scales; a.bias = bias;
  a.bias_mode = bias_mode; a.act = act; a.N = N; a.C = C; a.H = H; a.W = W; a.k = k; a.s = s;
  if (k > 0 && s > 0) {
    edgeconv::set_output_geometry(a);
  }
  if (const char* msg = edgeconv::check_args(a)) return fail(msg);
  if (N == 0) return 0;
  std::vector<float> scratch;
  try {
    scratch.resize(edgeconv::scratch_floats(a) + 16);
  } catch (const std::bad_alloc&) {
    return fail("out of memory for the scratch buffer");
  }
  edgeconv::channel_fn(isa)(a, 0, C, scratch.data());
  return 0;
}

// The rows layout (library 1.0's entry point).
__attribute__((visibility("default"))) int edgeconv_tvconv_run(
    const char* isa_name, const float* x, float* y, const void* w, int wtype,
    const float* scales, const float* bias, int bias_mode, int act, int64_t N, int64_t C,
    int64_t H, int64_t W, int k, int s, char* err, int errlen) {
  return edgeconv_tvconv_run_layout(isa_name, edgeconv::kLayoutRows, x, y, w, wtype, scales,
                                    bias, bias_mode, act, N, C, H, W, k, s, err, errlen);
}

// Training kernels (see tvconv_train_impl.h): mode 0 forward y = x (*) W, 1 input gradient
// gx = g (*)^T W, 2 weight gradient gW = sum_n x * g. a/b: (x, W), (g, W), (x, g). Natural
// layouts, float32, contiguous; `out` is overwritten. Channels are split over `threads`
// std::threads (1: the calling thread only).
__attribute__((visibility("default"))) int edgeconv_tvconv_train(
    const char* isa_name, int mode, const float* a, const float* b, float* out, int64_t N,
    int64_t C, int64_t H, int64_t W, int k, int s, int threads, char* err, int errlen) {
  auto fail = [&](const char* msg) { return fail_with(err, errlen, msg); };
  const int isa = edgeconv::select_isa(isa_name);
  if (isa < 0) return fail("requested ISA is not available on this CPU/build");
  if (!a || !b || !out) return fail("null tensor");
  if (mode < 0 || mode > 2) return fail("mode must be 0 (forward), 1 (input grad) or 2 (weight grad)");
  if (k != 3 && k != 5) return fail("kernel_size must be 3 or 5");
  if (s != 1 && s != 2) return fail("stride must be 1 or 2");
  if (N < 0 || C <= 0 || H <= 0 || W <= 0) return fail("bad input shape");
  edgeconv::TrainGeo g;
  g.N = N; g.C = C; g.H = H; g.W = W; g.k = k; g.s = s;
  g.h = (H + 2 * (k / 2) - k) / s + 1;
  g.w = (W + 2 * (k / 2) - k) / s + 1;
  if (N == 0 && mode != 2) return 0;  // (mode 2 with N = 0 writes zeros)
  const edgeconv::TrainFn fn = edgeconv::train_fn(isa);
  int64_t nt = threads < 1 ? 1 : threads;
  if (nt > C) nt = C;
  if (nt <= 1) {
    fn(mode, g, a, b, out, 0, C);
    return 0;
  }
  try {
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(nt - 1));
    for (int64_t t = 1; t < nt; ++t)
      pool.emplace_back(fn, mode, std::cref(g), a, b, out, C * t / nt, C * (t + 1) / nt);
    fn(mode, g, a, b, out, 0, C / nt);
    for (auto& th : pool) th.join();
  } catch (const std::system_error&) {
    return fail("could not start worker threads");
  }
  return 0;
}

}  // extern "C"
