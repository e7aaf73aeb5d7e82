// Scalar reference path: plain C++ over 8-float arrays. The SIMD paths are tested against it.
// No multiply-add contraction (GCC contracts by default where the ISA has FMA, e.g. aarch64):
// the reference rounds every product and sum on its own, independently of the SIMD paths.
#pragma GCC optimize("fp-contract=off")
#include "tvconv_impl.h"
#include "tvconv_nhwc_impl.h"
#define EDGECONV_TRAIN_NS train_scalar_ns
#include "tvconv_train_impl.h"

namespace {

inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal half: normalise
      exp = 127 - 15 + 1;
      while ((man & 0x400u) == 0) { man <<= 1; --exp; }
      man &= 0x3ffu;
      bits = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

struct Scalar8 {
  static constexpr int L = 8;
  static constexpr bool kPairRows = false;
  struct R { float v[8]; };
  static R zero() { return set1(0.0f); }
  static R set1(float f) { R r; for (int l = 0; l < L; ++l) r.v[l] = f; return r; }
  static R load(const float* p) { R r; for (int l = 0; l < L; ++l) r.v[l] = p[l]; return r; }
  static R load_f32(const float* p) { return load(p); }
  static R load_n(const float* p, int n) { R r = zero(); for (int l = 0; l < n; ++l) r.v[l] = p[l]; return r; }
  static R load_f16(const uint16_t* p) {
    R r; for (int l = 0; l < L; ++l) r.v[l] = half_to_float(p[l]); return r;
  }
  static R load_i8(const int8_t* p) {
    R r; for (int l = 0; l < L; ++l) r.v[l] = static_cast<float>(p[l]); return r;
  }
  static R fma(R a, R b, R c) { for (int l = 0; l < L; ++l) c.v[l] += a.v[l] * b.v[l]; return c; }
  static R mul(R a, R b) { for (int l = 0; l < L; ++l) a.v[l] *= b.v[l]; return a; }
  static R add(R a, R b) { for (int l = 0; l < L; ++l) a.v[l] += b.v[l]; return a; }
  static R max(R a, R b) { for (int l = 0; l < L; ++l) a.v[l] = a.v[l] > b.v[l] ? a.v[l] : b.v[l]; return a; }
  static R min(R a, R b) { for (int l = 0; l < L; ++l) a.v[l] = a.v[l] < b.v[l] ? a.v[l] : b.v[l]; return a; }
  static void store(float* p, R r) { for (int l = 0; l < L; ++l) p[l] = r.v[l]; }
  static void store_n(float* p, R r, int n) { for (int l = 0; l < n; ++l) p[l] = r.v[l]; }
  static void deint2(const float* s, float* e, float* o) {
    for (int l = 0; l < L; ++l) { e[l] = s[2 * l]; o[l] = s[2 * l + 1]; }
  }
};

}  // namespace

namespace edgeconv {

void run_scalar(const TVConvArgs& a, int64_t c0, int64_t c1, float* scratch) {
  run_any<Scalar8, Scalar8>(a, c0, c1, scratch);
}

void run_nhwc_scalar(const NhwcArgs& a, int64_t i0, int64_t i1) {
  run_nhwc_any<Scalar8, Scalar8>(a, i0, i1);
}

void train_scalar(int mode, const TrainGeo& g, const float* a, const float* b, float* out,
                  int64_t c0, int64_t c1) {
  train_scalar_ns::train_range(mode, g, a, b, out, c0, c1);
}

}  // namespace edgeconv
