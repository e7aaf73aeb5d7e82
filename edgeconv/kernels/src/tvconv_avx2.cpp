// AVX2 + FMA + F16C path (x86_64), compiled for that target whatever the build's -march.
#if defined(__x86_64__) || defined(_M_X64)
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

#include "tvconv_impl.h"
#include "tvconv_nhwc_impl.h"
#define EDGECONV_TRAIN_NS train_avx2_ns
#include "tvconv_train_impl.h"
#include "vec_avx2.h"

namespace edgeconv {

void run_avx2(const TVConvArgs& a, int64_t c0, int64_t c1, float* scratch) {
  run_any<Avx2x8, Avx2x8>(a, c0, c1, scratch);
}

void run_nhwc_avx2(const NhwcArgs& a, int64_t i0, int64_t i1) {
  run_nhwc_any<Avx2x8, Avx2x8>(a, i0, i1);
}

void train_avx2(int mode, const TrainGeo& g, const float* a, const float* b, float* out,
                  int64_t c0, int64_t c1) {
  train_avx2_ns::train_range(mode, g, a, b, out, c0, c1);
}

}  // namespace edgeconv
#endif
