// Argument checks and run-time ISA dispatch (compiled for the build's baseline target).
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
  if (a.wtype != kF32 && a.wtype != kF16 && a.wtype != kI8) return "unsupported weight type";
  if (a.wtype == kI8 && !a.scales) return "int8 weights need per-(channel, tap) scales";
  if (a.bias_mode != kNoBias && !a.bias) return "missing bias";
  if (a.act < kActNone || a.act > kActRelu6) return "unknown activation";
  return nullptr;
}

namespace {

bool cpu_has(int isa) {
  switch (isa) {
    case kScalar:
      return true;
#if defined(__x86_64__) || defined(_M_X64)
    case kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case kAvx512:
      return __builtin_cpu_supports("avx512f") && cpu_has(kAvx2);
#endif
#if defined(__aarch64__)
    case kNeon:
      return true;  // Advanced SIMD (with FP16 conversions) is mandatory in ARMv8-A
#endif
    default:
      return false;
  }
}

const int kAll[] = {kScalar, kAvx2, kAvx512, kNeon};

}  // namespace

const char* isa_name(int isa) {
  switch (isa) {
    case kScalar: return "scalar";
    case kAvx2: return "avx2";
    case kAvx512: return "avx512";
    case kNeon: return "neon";
    default: return "unknown";
  }
}

int select_isa(const char* requested) {
  if (requested == nullptr || *requested == '\0' || std::strcmp(requested, "auto") == 0) {
    int best = kScalar;
    for (int isa : kAll)
      if (cpu_has(isa)) best = isa;
    return best;
  }
  for (int isa : kAll)
    if (std::strcmp(requested, isa_name(isa)) == 0) return cpu_has(isa) ? isa : -1;
  return -1;
}

ChannelFn channel_fn(int isa) {
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case kAvx2: return run_avx2;
    case kAvx512: return run_avx512;
#endif
#if defined(__aarch64__)
    case kNeon: return run_neon;
#endif
    default: return run_scalar;
  }
}

TrainFn train_fn(int isa) {
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case kAvx2: return train_avx2;
    case kAvx512: return train_avx512;
#endif
#if defined(__aarch64__)
    case kNeon: return train_neon;
#endif
    default: return train_scalar;
  }
}

const char* available_isas() {
  static const std::string names = [] {
    std::string s;
    for (int isa : kAll)
      if (cpu_has(isa)) s += (s.empty() ? "" : ",") + std::string(isa_name(isa));
    return s;
  }();
  return names.c_str();
}

}  // namespace edgeconv
