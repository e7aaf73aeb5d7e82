// NEON path (aarch64, e.g. the Raspberry Pi 4's Cortex-A72): two 4-float registers per block.
#if defined(__aarch64__)
#include <arm_neon.h>

#include "tvconv_impl.h"
#include "tvconv_nhwc_impl.h"
#define EDGECONV_TRAIN_NS train_neon_ns
#include "tvconv_train_impl.h"

namespace {

struct Neon8 {
  static constexpr int L = 8;
  static constexpr bool kPairRows = false;
  struct R { float32x4_t lo, hi; };
  static R zero() { return {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; }
  static R set1(float f) { return {vdupq_n_f32(f), vdupq_n_f32(f)}; }
  static R load(const float* p) { return {vld1q_f32(p), vld1q_f32(p + 4)}; }
  static R load_f32(const float* p) { return load(p); }
  static R load_n(const float* p, int n) {
    float tmp[8] = {};
    std::memcpy(tmp, p, sizeof(float) * n);
    return load(tmp);
  }
  static R load_f16(const uint16_t* p) {
    const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(p));
    return {vcvt_f32_f16(vget_low_f16(h)), vcvt_high_f32_f16(h)};
  }
  static R load_i8(const int8_t* p) {
    const int16x8_t s = vmovl_s8(vld1_s8(p));
    return {vcvtq_f32_s32(vmovl_s16(vget_low_s16(s))), vcvtq_f32_s32(vmovl_high_s16(s))};
  }
  static R fma(R a, R b, R c) { return {vfmaq_f32(c.lo, a.lo, b.lo), vfmaq_f32(c.hi, a.hi, b.hi)}; }
  static R mul(R a, R b) { return {vmulq_f32(a.lo, b.lo), vmulq_f32(a.hi, b.hi)}; }
  static R add(R a, R b) { return {vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi)}; }
  static R max(R a, R b) { return {vmaxq_f32(a.lo, b.lo), vmaxq_f32(a.hi, b.hi)}; }
  static R min(R a, R b) { return {vminq_f32(a.lo, b.lo), vminq_f32(a.hi, b.hi)}; }
  static void store(float* p, R r) { vst1q_f32(p, r.lo); vst1q_f32(p + 4, r.hi); }
  static void store_n(float* p, R r, int n) {
    float tmp[8];
    store(tmp, r);
    std::memcpy(p, tmp, sizeof(float) * n);
  }
  static void deint2(const float* s, float* e, float* o) {
    const float32x4x2_t lo = vld2q_f32(s), hi = vld2q_f32(s + 8);
    vst1q_f32(e, lo.val[0]); vst1q_f32(e + 4, hi.val[0]);
    vst1q_f32(o, lo.val[1]); vst1q_f32(o + 4, hi.val[1]);
  }
};

}  // namespace

namespace edgeconv {

void run_neon(const TVConvArgs& a, int64_t c0, int64_t c1, float* scratch) {
  run_any<Neon8, Neon8>(a, c0, c1, scratch);
}

void run_nhwc_neon(const NhwcArgs& a, int64_t i0, int64_t i1) {
  run_nhwc_any<Neon8, Neon8>(a, i0, i1);
}

void train_neon(int mode, const TrainGeo& g, const float* a, const float* b, float* out,
                  int64_t c0, int64_t c1) {
  train_neon_ns::train_range(mode, g, a, b, out, c0, c1);
}

}  // namespace edgeconv
#endif
