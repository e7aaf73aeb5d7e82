// The NHWC kernel's C ABI (ctypes tests; shared by libedgeconv_kernels.so and
// libedgeconv_litert.so, needs no runtime headers): one call, output rows split over threads.
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

#include "tvconv_kernel.h"
#include "version.h"

namespace {

int nhwc_fail(char* err, int errlen, const char* msg) {
  if (err && errlen > 0) {
    std::strncpy(err, msg, static_cast<size_t>(errlen) - 1);
    err[errlen - 1] = '\0';
  }
  return 1;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) const char* edgeconv_kernels_nhwc_layout() {
  return EDGECONV_NHWC_LAYOUT;
}

// x NHWC (N, H, W, C) float32 -> y NHWC (N, h, w, C); w packed (h, w, k*k, C), wtype 0 f32 /
// 1 f16 / 2 int8 (scales (k*k, C)); bias_mode 0 none / 1 (C) / 2 (h, w, C); act 0 none /
// 1 relu / 2 relu6. Output rows are split over `threads` std::threads (<= 1: the caller's).
// Returns 0, or 1 with a message in err.
__attribute__((visibility("default"))) int edgeconv_tvconv_nhwc_run(
    const char* isa_name, const float* x, float* y, const void* w, int wtype,
    const float* scales, const float* bias, int bias_mode, int act, int64_t N, int64_t C,
    int64_t H, int64_t W, int k, int s, int threads, char* err, int errlen) {
  const int isa = edgeconv::select_isa(isa_name);
  if (isa < 0) return nhwc_fail(err, errlen, "requested ISA is not available on this CPU/build");
  edgeconv::NhwcArgs a;
  a.x = x; a.y = y; a.w = w; a.wtype = wtype; a.scales = scales; a.bias = bias;
  a.bias_mode = bias_mode; a.act = act; a.N = N; a.C = C; a.H = H; a.W = W; a.k = k; a.s = s;
  if (const char* msg = edgeconv::prepare_nhwc_args(a)) return nhwc_fail(err, errlen, msg);
  if (N == 0) return 0;
  const edgeconv::NhwcFn fn = edgeconv::nhwc_fn(isa);
  int64_t nt = threads < 1 ? 1 : threads;
  if (nt > a.h) nt = a.h;
  if (nt > 256) nt = 256;
  if (nt <= 1) {
    fn(a, 0, a.h);
    return 0;
  }
  std::vector<std::thread> pool;
  try {
    pool.reserve(static_cast<size_t>(nt - 1));
    for (int64_t t = 1; t < nt; ++t)
      pool.emplace_back(fn, std::cref(a), a.h * t / nt, a.h * (t + 1) / nt);
  } catch (const std::system_error&) {
    for (auto& th : pool) th.join();
    return nhwc_fail(err, errlen, "could not start worker threads");
  }
  fn(a, 0, a.h / nt);
  for (auto& th : pool) th.join();
  return 0;
}

}  // extern "C"
