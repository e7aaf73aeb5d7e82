// AVX-512F path (x86_64): 16-float blocks, an 8-float AVX2 block for a width-8 tail.
#if defined(__x86_64__) || defined(_M_X64)
#pragma GCC target("avx512f,avx2,fma,f16c")
#include <immintrin.h>

#include "tvconv_impl.h"
#include "tvconv_nhwc_impl.h"
#define EDGECONV_TRAIN_NS train_avx512_ns
#include "tvconv_train_impl.h"
#include "vec_avx2.h"

namespace {

struct Avx512x16 {
  static constexpr int L = 16;
  static constexpr bool kPairRows = true;
  using R = __m512;
  static R zero() { return _mm512_setzero_ps(); }
  static R set1(float f) { return _mm512_set1_ps(f); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static R load_f32(const float* p) { return _mm512_loadu_ps(p); }
  static R load_n(const float* p, int n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
  }
  static R load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static R load_i8(const int8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  static R min(R a, R b) { return _mm512_min_ps(a, b); }
  static void store(float* p, R r) { _mm512_storeu_ps(p, r); }
  static void store_n(float* p, R r, int n) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), r);
  }
  static void deint2(const float* s, float* e, float* o) {
    const __m512 a = _mm512_loadu_ps(s), b = _mm512_loadu_ps(s + 16);
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    _mm512_storeu_ps(e, _mm512_permutex2var_ps(a, ie, b));
    _mm512_storeu_ps(o, _mm512_permutex2var_ps(a, io, b));
  }
};

}  // namespace

namespace edgeconv {

void run_avx512(const TVConvArgs& a, int64_t c0, int64_t c1, float* scratch) {
  run_any<Avx512x16, Avx2x8>(a, c0, c1, scratch);
}

void run_nhwc_avx512(const NhwcArgs& a, int64_t i0, int64_t i1) {
  run_nhwc_any<Avx512x16, Avx2x8>(a, i0, i1);
}

void train_avx512(int mode, const TrainGeo& g, const float* a, const float* b, float* out,
                  int64_t c0, int64_t c1) {
  train_avx512_ns::train_range(mode, g, a, b, out, c0, c1);
}

}  // namespace edgeconv
#endif
