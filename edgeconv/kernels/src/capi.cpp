// A small C ABI next to the ORT binding: build information for `edgeconv kernels`, and a
// direct single-threaded entry to the math so that every ISA path can be tested from Python
// (ctypes) against the torch reference without going through a runtime.
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "onnxruntime_c_api.h"
#include "tvconv_kernel.h"
#include "version.h"

extern "C" {

__attribute__((visibility("default"))) const char* edgeconv_kernels_version() {
  return EDGECONV_KERNELS_VERSION;
}
__attribute__((visibility("default"))) const char* edgeconv_kernels_layout() { return EDGECONV_LAYOUT; }
__attribute__((visibility("default"))) int edgeconv_kernels_ort_api_version() { return ORT_API_VERSION; }
__attribute__((visibility("default"))) const char* edgeconv_kernels_available_isas() {
  return edgeconv::available_isas();
}
// The ISA a session would use now: EDGECONV_KERNEL_ISA if set (and runnable), else the best.
__attribute__((visibility("default"))) const char* edgeconv_kernels_selected_isa() {
  const int isa = edgeconv::select_isa(std::getenv("EDGECONV_KERNEL_ISA"));
  return isa < 0 ? "unavailable" : edgeconv::isa_name(isa);
}

__attribute__((visibility("default"))) int edgeconv_tvconv_run(
    const char* isa_name, const float* x, float* y, const void* w, int wtype,
    const float* scales, const float* bias, int bias_mode, int act, int64_t N, int64_t C,
    int64_t H, int64_t W, int k, int s, char* err, int errlen) {
  auto fail = [&](const char* msg) {
    if (err && errlen > 0) {
      std::strncpy(err, msg, static_cast<size_t>(errlen) - 1);
      err[errlen - 1] = '\0';
    }
    return 1;
  };
  const int isa = edgeconv::select_isa(isa_name);
  if (isa < 0) return fail("requested ISA is not available on this CPU/build");
  edgeconv::TVConvArgs a;
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

}  // extern "C"
