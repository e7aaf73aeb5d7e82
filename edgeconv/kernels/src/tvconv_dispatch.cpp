// Argument checks and run-time ISA dispatch (compiled for the build's baseline target).
#include <cstdint>
#include <cstring>
#include <string>

#include "tvconv_kernel.h"

namespace edgeconv {

const char* check_args(const TVConvArgs& a) {
  if (!a.x || !a.y || !a.w) return "null tensor";
  if (a.k != 3 && a.k != 5) return "kernel_size must be 3 or 5";
  if (a.s != 1 && a.s != 2) return "stride must be 1 or 2";
  if (a.N < 0 || a.C <= 0 || a.H <= 0 || a.W <= 0) return "bad input shape";
  const int64_t p = a.k / 2;
  if (a.h != (a.H + 2 * p - a.k) / a.s + 1 || a.w_out != (a.W + 2 * p - a.k) / a.s + 1)
    return "output size does not match the input size, kernel size and stride";
  if (a.wpad != round_up(a.w_out, kWidthAlign)) return "weight width is not round_up(w, 8)";
  if (a.layout != kLayoutRows && a.layout != kLayoutFlat) return "unknown weight layout";
  if (a.layout == kLayoutFlat && a.s != 1) return "the flat weight layout is for stride 1 only";
  if (a.layout == kLayoutFlat && a.h * a.w_out < kWidthAlign)
    return "the flat weight layout needs at least 8 output pixels per plane";
  if (a.wtype != kF32 && a.wtype != kF16 && a.wtype != kI8) return "unsupported weight type";
  if (a.wtype == kI8 && !a.scales) return "int8 weights need per-(channel, tap) scales";
  if (a.bias_mode != kNoBias && !a.bias) return "missing bias";
  if (a.act < kActNone || a.act > kActRelu6) return "unknown activation";
  return nullptr;
}

const char* prepare_nhwc_args(NhwcArgs& a) {
  if (!a.x || !a.y || !a.w) return "null tensor";
  if (a.k != 3 && a.k != 5) return "kernel_size must be 3 or 5";
  if (a.s != 1 && a.s != 2) return "stride must be 1 or 2";
  constexpr int64_t kMaxDim = int64_t{1} << 31;
  if (a.N < 0 || a.C <= 0 || a.H <= 0 || a.W <= 0) return "bad input shape";
  if (a.N >= kMaxDim || a.C >= kMaxDim || a.H >= kMaxDim || a.W >= kMaxDim)
    return "input shape too large";
  const int64_t p = a.k / 2;
  a.h = (a.H + 2 * p - a.k) / a.s + 1;
  a.w_out = (a.W + 2 * p - a.k) / a.s + 1;
  // every element count (and its size in bytes) must fit an int64
  constexpr int64_t kMaxElems = INT64_MAX / 16;
  int64_t e = 0;
  const int64_t kk = int64_t{a.k} * a.k;
  if (__builtin_mul_overflow(a.H, a.W, &e) || __builtin_mul_overflow(e, a.C, &e) ||
      __builtin_mul_overflow(e, a.N > 0 ? a.N : 1, &e) || e > kMaxElems)
    return "input shape too large (element count overflows)";
  if (__builtin_mul_overflow(a.h, a.w_out, &e) || __builtin_mul_overflow(e, kk, &e) ||
      __builtin_mul_overflow(e, a.C, &e) || e > kMaxElems)
    return "weight shape too large (element count overflows)";
  if (a.wtype != kF32 && a.wtype != kF16 && a.wtype != kI8) return "unsupported weight type";
  if (a.wtype == kI8 && !a.scales) return "int8 weights need per-(tap, channel) scales";
  if (a.bias_mode != kNoBias && a.bias_mode != kBiasChannel && a.bias_mode != kBiasPixel)
    return "unknown bias mode";
  if (a.bias_mode != kNoBias && !a.bias) return "missing bias";
  if (a.act < kActNone || a.act > kActRelu6) return "unknown activation";
  return nullptr;
}

namespace {

bool cpu_any() { return true; }
#if defined(__x86_64__) || defined(_M_X64)
bool cpu_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}
bool cpu_avx512() { return __builtin_cpu_supports("avx512f") && cpu_avx2(); }
#endif

// THE list of ISAs this build has, best last: id, name, CPU check, and the three kernels.
struct IsaEntry {
  int id;
  const char* name;
  bool (*cpu)();
  ChannelFn run;
  NhwcFn nhwc;
  TrainFn train;
};

const IsaEntry kIsas[] = {
    {kScalar, "scalar", cpu_any, run_scalar, run_nhwc_scalar, train_scalar},
#if defined(__x86_64__) || defined(_M_X64)
    {kAvx2, "avx2", cpu_avx2, run_avx2, run_nhwc_avx2, train_avx2},
    {kAvx512, "avx512", cpu_avx512, run_avx512, run_nhwc_avx512, train_avx512},
#endif
#if defined(__aarch64__)
    // Advanced SIMD (with FP16 conversions) is mandatory in ARMv8-A
    {kNeon, "neon", cpu_any, run_neon, run_nhwc_neon, train_neon},
#endif
};

// The entry of a built ISA id; the scalar one for any other id.
const IsaEntry& entry(int isa) {
  for (const IsaEntry& e : kIsas)
    if (e.id == isa) return e;
  return kIsas[0];
}

}  // namespace

const char* isa_name(int isa) {
  for (const IsaEntry& e : kIsas)
    if (e.id == isa) return e.name;
  return "unknown";
}

int select_isa(const char* requested) {
  if (requested == nullptr || *requested == '\0' || std::strcmp(requested, "auto") == 0) {
    int best = kScalar;
    for (const IsaEntry& e : kIsas)
      if (e.cpu()) best = e.id;
    return best;
  }
  for (const IsaEntry& e : kIsas)
    if (std::strcmp(requested, e.name) == 0) return e.cpu() ? e.id : -1;
  return -1;
}

ChannelFn channel_fn(int isa) { return entry(isa).run; }
NhwcFn nhwc_fn(int isa) { return entry(isa).nhwc; }
TrainFn train_fn(int isa) { return entry(isa).train; }

const char* available_isas() {
  static const std::string names = [] {
    std::string s;
    for (const IsaEntry& e : kIsas)
      if (e.cpu()) s += (s.empty() ? "" : ",") + std::string(e.name);
    return s;
  }();
  return names.c_str();
}

}  // namespace edgeconv
