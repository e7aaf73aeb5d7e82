// edgeconv fused per-pixel (TVConv) kernel: the math, independent of any runtime.
//
//   y[n,c,i,j] = act( sum_{u,v} pad(x)[n,c,i*s+u,j*s+v] * W[c,i,u*k+v,j] + b )
//
// x: NCHW float32 (N, C, H, W); y: NCHW float32 (N, C, h, w), h = (H + 2p - k)/s + 1, p = k/2.
// W: the packed weight layout written at export, one of
//    rows (kLayoutRows, "c_h_kk_w8"): (C, h, k*k, wpad), wpad = round_up(w, 8), columns j >= w
//      zero; any stride;
//    flat (kLayoutFlat, "c_kk_hw"): (C, k*k, h, w), stride 1 with h*w >= 8;
//    the weights of taps that fall outside the input are zero in both; stored as float32,
//    float16 (IEEE half) or int8 with one float32 scale per (channel, tap) (dequantised
//    value = q * scale[c*k*k + t]).
// b: none, per channel (C) or per pixel (C, h, wpad) (rows) / (C, h, w) (flat).
//
// One ISA implementation per translation unit (scalar reference, AVX2, AVX-512, NEON), all
// instantiated from tvconv_impl.h; tvconv_dispatch.cpp picks one at run time.
#pragma once

#include <cstddef>
#include <cstdint>

namespace edgeconv {

enum WeightType : int { kF32 = 0, kF16 = 1, kI8 = 2 };
enum BiasMode : int { kNoBias = 0, kBiasChannel = 1, kBiasPixel = 2 };
enum Activation : int { kActNone = 0, kActRelu = 1, kActRelu6 = 2 };
enum Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kNeon = 3 };
enum Layout : int { kLayoutRows = 0, kLayoutFlat = 1 };

constexpr int kWidthAlign = 8;      // wpad = round_up(w, kWidthAlign): part of the file format
constexpr int64_t kImageGroup = 4;  // images that share each block's weight registers

struct TVConvArgs {
  const float* x = nullptr;
  float* y = nullptr;
  const void* w = nullptr;
  const float* scales = nullptr;    // int8 only: (C, k*k)
  const float* bias = nullptr;
  int wtype = kF32;
  int bias_mode = kNoBias;
  int act = kActNone;
  int layout = kLayoutRows;
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t h = 0, w_out = 0, wpad = 0;  // output rows, columns, padded columns (rows layout)
  int k = 3, s = 1;
};

static inline int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

// Bytes of one stored weight of type ``wtype`` (WeightType).
static inline int64_t weight_bytes(int wtype) { return wtype == kF16 ? 2 : wtype == kI8 ? 1 : 4; }

// The output geometry (h, w_out, wpad) that a.H, a.W, a.k and a.s give (k, s > 0).
static inline void set_output_geometry(TVConvArgs& a) {
  const int64_t p = a.k / 2;
  a.h = (a.H + 2 * p - a.k) / a.s + 1;
  a.w_out = (a.W + 2 * p - a.k) / a.s + 1;
  a.wpad = round_up(a.w_out, kWidthAlign);
}

// Scratch geometry. Stride-1 layers with rows of >= 16 columns read interior output rows
// straight from the input (the weights of taps that fall outside the image are zero, part of
// the layout, so a read that wraps into the neighbouring row contributes nothing) and copy
// only the k input rows of each border row, zero-padded, into the scratch: (group, k, 1, rs).
// Every other layer (strided, or narrow rows) copies the whole zero-padded input plane of one
// channel of each image of a group once: (group, H + 2p, s, rs), each padded row split into s phases
// (phase q holds its columns q, q+s, q+2s, ...) so that every tap reads a contiguous run.
struct ScratchGeom {
  bool direct;                        // stride-1 interior rows read the input directly
  int64_t rows, row_stride, image_stride;
};

static inline ScratchGeom scratch_geom(const TVConvArgs& a) {
  const int64_t p = a.k / 2;
  const int64_t wp = a.W + 2 * p;
  int64_t need = (wp + a.s - 1) / a.s;
  const int64_t reach = a.wpad + (a.k - 1) / a.s;  // widest block read: [jb, jb+L) + taps
  if (reach > need) need = reach;
  ScratchGeom g;
  g.direct = a.s == 1 && a.W >= 16;
  g.rows = g.direct ? a.k : a.H + 2 * p;
  g.row_stride = round_up(need, 4);
  g.image_stride = g.rows * a.s * g.row_stride;
  return g;
}

// Flat layout: how far (in floats) a tap reads before or after the output pixel's own input.
static inline int64_t flat_reach(const TVConvArgs& a) { return (a.k / 2) * a.W + a.k / 2; }

// The scratch holds one group of images (kImageGroup) at a time: in the flat layout one copied
// plane per image with room for the taps' reach on both sides.
static inline size_t scratch_floats(const TVConvArgs& a) {
  const int64_t n = a.N < kImageGroup ? a.N : kImageGroup;
  if (a.layout == kLayoutFlat) return static_cast<size_t>(n * (a.h * a.w_out + 2 * flat_reach(a)));
  return static_cast<size_t>(scratch_geom(a).image_stride * n);
}

// In direct mode: the output rows that may read the input plane directly (all k rows inside,
// and every vector read, which can run up to wpad - w + p columns past a row's end, inside).
static inline bool direct_row(const TVConvArgs& a, int64_t i) {
  const int64_t p = a.k / 2;
  return i >= p + 1 && i + p + 2 <= a.h;
}

// Loop order of a call: channels in chunks, each chunk's images group by group. Planes of
// <= 24x24 with more than one group of 4 images take chunks whose packed weights fill about
// kChunkBytes (they stay in L2 while the chunk's groups pass); larger planes or a single
// group take chunks of one channel (channels outer: a channel's weights are reused by every
// group straight away). Measured on the AVX2 build machine (docs/default_export_speed.md):
// at batch 16, channels outer read 576 bytes (12x12) of each of 16 images C*H*W floats
// apart per channel and left the 12x12 s2 layer at 2.7x ORT's depthwise conv; images outer
// (sequential streams) took it to 1.2x.
constexpr int64_t kSmallPlane = 24 * 24;
constexpr int64_t kChunkBytes = 64 * 1024;
static inline int64_t channel_chunk(const TVConvArgs& a) {
  if (a.H * a.W > kSmallPlane || a.N <= kImageGroup) return 1;
  const int64_t cols = a.layout == kLayoutFlat ? a.w_out : a.wpad;
  const int64_t per_channel = a.h * a.k * a.k * cols * weight_bytes(a.wtype);
  const int64_t chunk = kChunkBytes / (per_channel > 0 ? per_channel : 1);
  return chunk < 1 ? 1 : chunk;
}

// Returns nullptr if the arguments are consistent, else a static message.
const char* check_args(const TVConvArgs& a);

// Computes channels [c0, c1) of every image; ``scratch`` holds scratch_floats(a) floats and
// belongs to the calling thread.
using ChannelFn = void (*)(const TVConvArgs&, int64_t c0, int64_t c1, float* scratch);

void run_scalar(const TVConvArgs&, int64_t, int64_t, float*);
#if defined(__x86_64__) || defined(_M_X64)
void run_avx2(const TVConvArgs&, int64_t, int64_t, float*);
void run_avx512(const TVConvArgs&, int64_t, int64_t, float*);
#endif
#if defined(__aarch64__)
void run_neon(const TVConvArgs&, int64_t, int64_t, float*);
#endif

// --- NHWC variant (tvconv_nhwc_impl.h; the LiteRT delegate's kernel) ----------------------
//
//   y[n,i,j,c] = act( sum_{u,v} pad(x)[n, i*s+u, j*s+v, c] * W[i, j, u*k+v, c] + b )
//
// x: NHWC float32 (N, H, W, C); y: NHWC float32 (N, h, w, C). W: layout "h_w_kk_c",
// (h, w, k*k, C), C contiguous, float32 / float16 / int8, times float32 scales (k*k, C)
// (dequantised = q * scales[t*C + c], computed in float32) where given: required for int8,
// optional for float weights (the LiteRT composite always passes them, ones there). b: none, per channel (C) or per pixel (h, w, C).
// Taps that fall outside the input are skipped (zero padding): the packed weights of those
// taps are zero anyway, but they are never read.
struct NhwcArgs {
  const float* x = nullptr;
  float* y = nullptr;
  const void* w = nullptr;
  const float* scales = nullptr;    // (k*k, C); required for int8, optional otherwise
  const float* bias = nullptr;
  int wtype = kF32;
  int bias_mode = kNoBias;
  int act = kActNone;
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t h = 0, w_out = 0;            // output
  int k = 3, s = 1;
};

// Fills a.h, a.w_out from the input size, k and s; checks everything (sizes, overflow of the
// element counts, pointers). Returns nullptr if the call is valid, else a static message.
const char* prepare_nhwc_args(NhwcArgs& a);

// Computes output rows [i0, i1) of every image. Every output element is computed the same
// way whatever the row range, so splitting rows over threads gives identical results.
using NhwcFn = void (*)(const NhwcArgs&, int64_t i0, int64_t i1);
void run_nhwc_scalar(const NhwcArgs&, int64_t, int64_t);
#if defined(__x86_64__) || defined(_M_X64)
void run_nhwc_avx2(const NhwcArgs&, int64_t, int64_t);
void run_nhwc_avx512(const NhwcArgs&, int64_t, int64_t);
#endif
#if defined(__aarch64__)
void run_nhwc_neon(const NhwcArgs&, int64_t, int64_t);
#endif
NhwcFn nhwc_fn(int isa);

// Run-time dispatch. ``requested``: "auto" (or nullptr) = best the CPU supports; or one of
// "scalar", "avx2", "avx512", "neon". Returns the ISA chosen, or -1 when the requested one
// is unavailable on this CPU / build.
int select_isa(const char* requested);
ChannelFn channel_fn(int isa);

// Training kernels (tvconv_train_impl.h): natural layouts, float32, channel range [c0, c1).
struct TrainGeo {
  int64_t N = 0, C = 0, H = 0, W = 0, h = 0, w = 0;
  int k = 3, s = 1;
};
using TrainFn = void (*)(int mode, const TrainGeo& g, const float* a, const float* b,
                         float* out, int64_t c0, int64_t c1);
void train_scalar(int, const TrainGeo&, const float*, const float*, float*, int64_t, int64_t);
void train_avx2(int, const TrainGeo&, const float*, const float*, float*, int64_t, int64_t);
void train_avx512(int, const TrainGeo&, const float*, const float*, float*, int64_t, int64_t);
void train_neon(int, const TrainGeo&, const float*, const float*, float*, int64_t, int64_t);
TrainFn train_fn(int isa);
const char* isa_name(int isa);
// Comma-separated ISAs this build has and this CPU runs, best last.
const char* available_isas();

}  // namespace edgeconv
