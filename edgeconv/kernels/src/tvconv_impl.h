// The one implementation of the fused per-pixel kernel, written against a small vector
// interface ``V`` that each ISA translation unit defines before including this file:
//
//   V::R               register type holding V::L floats
//   V::zero(), V::set1(f), V::load(const float*), V::fma(a, b, c) = a*b + c,
//   V::max(a, b), V::min(a, b), V::store(float*, r), V::store_n(float*, r, n < L),
//   V::load_f32(const float*), V::load_f16(const uint16_t*), V::load_i8(const int8_t*),
//   V::load_n(const float* p, int n): p[0..n) (0 <= n <= L) and zeros, reading nothing after
//   p[n - 1],
//   V::deint2(const float* src, float* even, float* odd): src[0..2L) -> its L even- and
//   L odd-indexed floats (the stride-2 scratch fill),
//   V::kPairRows: enough registers (32) for two output rows' 2 x 9 weight vectors
//
// Everything here has internal linkage (anonymous namespace): each ISA TU gets its own copy
// compiled for its own target, with no symbol the linker could mix up between them.
#pragma once

#include <cstring>

#include "tvconv_kernel.h"

// The per-vector helpers are forced inline: left to the inliner's budget they stopped being
// inlined after an unrelated change to run_channels (load_weight became a call per weight
// vector: 37% more instructions, ~3x the time at batch 1, counted with callgrind).
#define EDGECONV_INLINE inline __attribute__((always_inline))

namespace {

using edgeconv::TVConvArgs;

// src[0..n) (n < 2L) deinterleaved into L even- and L odd-indexed floats, zeros after.
template <class V>
inline void deint2_tail(const float* src, int64_t n, float* even, float* odd) {
  alignas(64) float t[2 * V::L];
  const int lo = n < V::L ? static_cast<int>(n) : V::L;
  V::store(t, V::load_n(src, lo));
  V::store(t + V::L, V::load_n(src + V::L, static_cast<int>(n) - lo));
  V::deint2(t, even, odd);
}

// Writes padded input row r (r in [0, H + 2p)) of one image's plane into its s phases at dst.
// ZERO: also write the zero padding (else the caller guarantees those floats are zero).
// A row's last partial vector is written whole, zeros after the input's last column: the
// scratch row has room for it (row_stride >= wpad + k - 1) and those floats are padding.
template <class VW, class VN, int K, int S, bool ZERO>
inline void fill_row(const float* plane, int64_t r, int64_t H, int64_t W, int64_t rs, float* dst) {
  constexpr int64_t p = K / 2;
  const int64_t ir = r - p;
  if (ir < 0 || ir >= H) {
    if (ZERO) std::memset(dst, 0, sizeof(float) * S * rs);
    return;
  }
  const float* row = plane + ir * W;
  if (S == 1) {
    if (ZERO) std::memset(dst, 0, sizeof(float) * p);
    int64_t j = 0;
    for (; j + VW::L <= W; j += VW::L) VW::store(dst + p + j, VW::load(row + j));
    for (; j + VN::L <= W; j += VN::L) VN::store(dst + p + j, VN::load(row + j));
    if (j < W) {
      VN::store(dst + p + j, VN::load_n(row + j, static_cast<int>(W - j)));
      j += VN::L;
    }
    if (ZERO && p + j < rs) std::memset(dst + p + j, 0, sizeof(float) * (rs - p - j));
    return;
  }
  // S == 2: input column col goes to padded column col + p = 2*idx + q, phase q, index idx.
  // Even input columns land in phase qe at m + de, odd ones in phase qo at m + dq.
  constexpr int qe = p % 2, qo = 1 - qe;
  constexpr int64_t de = (p - qe) / 2, dq = (p + 1 - qo) / 2;
  float* pe = dst + qe * rs;
  float* po = dst + qo * rs;
  if (ZERO) std::memset(dst, 0, sizeof(float) * 2 * rs);
  const int64_t pairs = W / 2;
  int64_t m = 0;
  for (; m + VW::L <= pairs; m += VW::L) VW::deint2(row + 2 * m, pe + m + de, po + m + dq);
  for (; m + VN::L <= pairs; m += VN::L) VN::deint2(row + 2 * m, pe + m + de, po + m + dq);
  if (m < pairs) deint2_tail<VN>(row + 2 * m, 2 * (pairs - m), pe + m + de, po + m + dq);
  if (W % 2) pe[pairs + de] = row[W - 1];
}

// Direct mode: the k input rows that output row i of channel c reads, of images [n0, n1).
template <class VW, class VN, int K, int S>
void fill_rows(const TVConvArgs& a, int64_t c, int64_t i, int64_t n0, int64_t n1, float* scratch,
               const edgeconv::ScratchGeom& g) {
  for (int64_t n = n0; n < n1; ++n) {
    const float* plane = a.x + (n * a.C + c) * a.H * a.W;
    float* img = scratch + (n - n0) * g.image_stride;  // slot 0 holds image n0
    for (int u = 0; u < K; ++u)
      fill_row<VW, VN, K, S, true>(plane, i * S + u, a.H, a.W, g.row_stride, img + u * S * g.row_stride);
  }
}

// Plane mode: every padded input row of channel c of every image. The zero padding sits at the
// same places for every channel of a call: run_channels zeroes the scratch once.
template <class VW, class VN, int K, int S>
void fill_plane(const TVConvArgs& a, int64_t c, int64_t n0, int64_t n1, float* scratch,
                const edgeconv::ScratchGeom& g) {
  for (int64_t n = n0; n < n1; ++n) {
    const float* plane = a.x + (n * a.C + c) * a.H * a.W;
    float* img = scratch + (n - n0) * g.image_stride;
    for (int64_t r = 0; r < g.rows; ++r)
      fill_row<VW, VN, K, S, false>(plane, r, a.H, a.W, g.row_stride, img + r * S * g.row_stride);
  }
}

template <class V>
EDGECONV_INLINE typename V::R activate(typename V::R r, int act) {
  if (act == edgeconv::kActRelu) return V::max(r, V::zero());
  if (act == edgeconv::kActRelu6) return V::min(V::max(r, V::zero()), V::set1(6.0f));
  return r;
}

template <class V>
EDGECONV_INLINE typename V::R load_weight(const TVConvArgs& a, int64_t idx, float scale) {
  switch (a.wtype) {
    case edgeconv::kF16:
      return V::load_f16(static_cast<const uint16_t*>(a.w) + idx);
    case edgeconv::kI8:
      return V::mul(V::load_i8(static_cast<const int8_t*>(a.w) + idx), V::set1(scale));
    default:
      return V::load_f32(static_cast<const float*>(a.w) + idx);
  }
}

// A block's last vector holds `valid` < L real columns. Where the floats after them belong to
// the next output row of the same plane, not yet written (``spill``), the whole vector is
// stored: that row overwrites them later. Partial stores are slow on some CPUs (AVX2's
// vmaskmovps is microcoded on AMD Zen), and only a plane's last row (or a row whose successor
// is already written) needs one.
template <class V>
EDGECONV_INLINE void store_out(float* dst, typename V::R r, int64_t valid, bool spill) {
  if (valid >= V::L || spill) V::store(dst, r);
  else V::store_n(dst, r, static_cast<int>(valid));
}

// One block of V::L output columns [jb, jb + L) of output row i of channel c, for images
// [n0, n1): the k*k weight vectors are loaded (and dequantised) once and reused for each.
// Image n's tap (u, v) reads src + (n - nsrc)*istride + (u*S + v%S)*rs + v/S + jb.
template <class V, int K, int S>
inline void block(const TVConvArgs& a, int64_t c, int64_t i, int64_t jb, const float* src,
                  int64_t istride, int64_t rs, int64_t nsrc, int64_t n0, int64_t n1, bool spill) {
  using R = typename V::R;
  constexpr int KK = K * K;
  const int64_t wrow = ((c * a.h + i) * KK) * a.wpad + jb;
  R wv[KK];
#pragma GCC unroll 25
  for (int t = 0; t < KK; ++t)
    wv[t] = load_weight<V>(a, wrow + t * a.wpad, a.scales ? a.scales[c * KK + t] : 1.0f);
  R b = V::zero();
  if (a.bias_mode == edgeconv::kBiasChannel) b = V::set1(a.bias[c]);
  else if (a.bias_mode == edgeconv::kBiasPixel) b = V::load(a.bias + (c * a.h + i) * a.wpad + jb);

  const int64_t valid = a.w_out - jb;
  const int64_t plane = a.h * a.w_out;
  const int64_t ystride = a.C * plane;
  float* yb = a.y + c * plane + i * a.w_out + jb;
  const float* sb = src + jb;
  int64_t n = n0;
  // four images at a time: four independent FMA chains
  for (; n + 4 <= n1; n += 4) {
    const float* s0 = sb + (n - nsrc) * istride;
    const float* s1 = s0 + istride;
    const float* s2 = s1 + istride;
    const float* s3 = s2 + istride;
    R a0 = b, a1 = b, a2 = b, a3 = b;
#pragma GCC unroll 25
    for (int t = 0; t < KK; ++t) {
      const int u = t / K, v = t % K;
      const int64_t off = (u * S + v % S) * rs + v / S;
      a0 = V::fma(wv[t], V::load(s0 + off), a0);
      a1 = V::fma(wv[t], V::load(s1 + off), a1);
      a2 = V::fma(wv[t], V::load(s2 + off), a2);
      a3 = V::fma(wv[t], V::load(s3 + off), a3);
    }
    store_out<V>(yb + n * ystride, activate<V>(a0, a.act), valid, spill);
    store_out<V>(yb + (n + 1) * ystride, activate<V>(a1, a.act), valid, spill);
    store_out<V>(yb + (n + 2) * ystride, activate<V>(a2, a.act), valid, spill);
    store_out<V>(yb + (n + 3) * ystride, activate<V>(a3, a.act), valid, spill);
  }
  // remaining images: one kernel row per accumulator (shorter dependency chains)
  for (; n < n1; ++n) {
    const float* s0 = sb + (n - nsrc) * istride;
    R acc[K];
#pragma GCC unroll 5
    for (int u = 0; u < K; ++u) acc[u] = V::zero();
#pragma GCC unroll 25
    for (int t = 0; t < KK; ++t) {
      const int u = t / K, v = t % K;
      acc[u] = V::fma(wv[t], V::load(s0 + (u * S + v % S) * rs + v / S), acc[u]);
    }
    R sum = b;
#pragma GCC unroll 5
    for (int u = 0; u < K; ++u) sum = V::add(sum, acc[u]);
    store_out<V>(yb + n * ystride, activate<V>(sum, a.act), valid, spill);
  }
}

// Stride 1, k = 3, ISAs with 32 vector registers: output rows i and i+1 of one block at once.
// They share k - 1 of their k + 1 input rows, so each image needs 12 loads for 18 FMAs instead
// of 9 for 9: the loads, not the FMAs, bound the single-row block.
template <class V>
inline void block_pair(const TVConvArgs& a, int64_t c, int64_t i, int64_t jb, const float* src,
                       int64_t istride, int64_t rs, int64_t nsrc, int64_t n0, int64_t n1) {
  using R = typename V::R;
  constexpr int K = 3, KK = 9;
  const int64_t wrow0 = ((c * a.h + i) * KK) * a.wpad + jb;
  const int64_t wrow1 = wrow0 + KK * a.wpad;
  R w0[KK], w1[KK];
#pragma GCC unroll 9
  for (int t = 0; t < KK; ++t) {
    const float sc = a.scales ? a.scales[c * KK + t] : 1.0f;
    w0[t] = load_weight<V>(a, wrow0 + t * a.wpad, sc);
    w1[t] = load_weight<V>(a, wrow1 + t * a.wpad, sc);
  }
  R b0 = V::zero(), b1 = V::zero();
  if (a.bias_mode == edgeconv::kBiasChannel) {
    b0 = b1 = V::set1(a.bias[c]);
  } else if (a.bias_mode == edgeconv::kBiasPixel) {
    b0 = V::load(a.bias + (c * a.h + i) * a.wpad + jb);
    b1 = V::load(a.bias + (c * a.h + i + 1) * a.wpad + jb);
  }
  const int64_t valid = a.w_out - jb;
  const int64_t ystride = a.C * a.h * a.w_out;
  float* y0 = a.y + c * a.h * a.w_out + i * a.w_out + jb;
  const float* sb = src + jb;
  int64_t n = n0;
  for (; n + 2 <= n1; n += 2) {
    const float* s0 = sb + (n - nsrc) * istride;
    const float* s1 = s0 + istride;
    R a00 = b0, a01 = b1, a10 = b0, a11 = b1;
#pragma GCC unroll 4
    for (int r = 0; r <= K; ++r) {
#pragma GCC unroll 3
      for (int v = 0; v < K; ++v) {
        const R x0 = V::load(s0 + r * rs + v), x1 = V::load(s1 + r * rs + v);
        if (r < K) {
          a00 = V::fma(w0[r * K + v], x0, a00);
          a10 = V::fma(w0[r * K + v], x1, a10);
        }
        if (r >= 1) {
          a01 = V::fma(w1[(r - 1) * K + v], x0, a01);
          a11 = V::fma(w1[(r - 1) * K + v], x1, a11);
        }
      }
    }
    store_out<V>(y0 + n * ystride, activate<V>(a00, a.act), valid, false);
    store_out<V>(y0 + n * ystride + a.w_out, activate<V>(a01, a.act), valid, false);
    store_out<V>(y0 + (n + 1) * ystride, activate<V>(a10, a.act), valid, false);
    store_out<V>(y0 + (n + 1) * ystride + a.w_out, activate<V>(a11, a.act), valid, false);
  }
  for (; n < n1; ++n) {
    const float* s0 = sb + (n - nsrc) * istride;
    R a00 = b0, a01 = b1;
#pragma GCC unroll 4
    for (int r = 0; r <= K; ++r) {
#pragma GCC unroll 3
      for (int v = 0; v < K; ++v) {
        const R x0 = V::load(s0 + r * rs + v);
        if (r < K) a00 = V::fma(w0[r * K + v], x0, a00);
        if (r >= 1) a01 = V::fma(w1[(r - 1) * K + v], x0, a01);
      }
    }
    store_out<V>(y0 + n * ystride, activate<V>(a00, a.act), valid, false);
    store_out<V>(y0 + n * ystride + a.w_out, activate<V>(a01, a.act), valid, false);
  }
}

// Channel c of images [n0, n1) (at most kImageGroup): every output row. In plane mode the
// scratch holds the group's zero-padded planes of channel c after fill_plane.
// One call site (run_channels): inlined there once, like the loop body it was. Written out
// in two loop nests (one per loop order) it was inlined twice, and GCC stopped inlining
// load_weight: 1.6-3x slower at batch 1 on the AVX2 build machine.
template <class VW, class VN, int K, int S>
inline void run_group(const TVConvArgs& a, int64_t c, int64_t n0, int64_t n1, float* scratch,
                      const edgeconv::ScratchGeom& g) {
  constexpr int64_t p = K / 2;
  if (!g.direct) fill_plane<VW, VN, K, S>(a, c, n0, n1, scratch, g);
  for (int64_t i = 0; i < a.h; ++i) {
    const float* src;
    int64_t istride, rs, nsrc = n0;  // the scratch's slot 0 holds image n0
    bool pairable = false;  // rows i and i+1 read consecutive rows of one source
    if (!g.direct) {
      src = scratch + i * S * S * g.row_stride;  // padded row i*S, phase 0
      istride = g.image_stride;
      rs = g.row_stride;
      pairable = i + 1 < a.h;
    } else if (edgeconv::direct_row(a, i)) {
      src = a.x + c * a.H * a.W + (i - p) * a.W - p;
      istride = a.C * a.H * a.W;
      rs = a.W;
      nsrc = 0;
      pairable = i + 1 < a.h && edgeconv::direct_row(a, i + 1);
    } else {
      fill_rows<VW, VN, K, S>(a, c, i, n0, n1, scratch, g);
      src = scratch;
      istride = g.image_stride;
      rs = g.row_stride;
    }
    int64_t jb = 0;
    if (VW::kPairRows && K == 3 && S == 1 && pairable) {
      for (; jb + VW::L <= a.wpad; jb += VW::L)
        block_pair<VW>(a, c, i, jb, src, istride, rs, nsrc, n0, n1);
      for (int64_t r = 0; r < 2; ++r)  // the narrow tail, one row at a time
        for (int64_t j = jb; j < a.wpad; j += VN::L)  // row i + 1 already has its start
          block<VN, K, S>(a, c, i + r, j, src + r * rs, istride, rs, nsrc, n0, n1,
                          r == 0 ? false : (i + 1) * a.w_out + a.wpad <= a.h * a.w_out);
      ++i;  // row i + 1 is done too
      continue;
    }
    // the rows after row i (of this plane) are written after it
    const bool spill = i * a.w_out + a.wpad <= a.h * a.w_out;
    for (; jb + VW::L <= a.wpad; jb += VW::L)
      block<VW, K, S>(a, c, i, jb, src, istride, rs, nsrc, n0, n1, spill);
    for (; jb < a.wpad; jb += VN::L)
      block<VN, K, S>(a, c, i, jb, src, istride, rs, nsrc, n0, n1, spill);
  }
}

// Wide vector type VW for the main blocks, narrow VN (8 floats) for a width-8 tail.
template <class VW, class VN, int K, int S>
void run_channels(const TVConvArgs& a, int64_t c0, int64_t c1, float* scratch) {
  const edgeconv::ScratchGeom g = edgeconv::scratch_geom(a);
  const int64_t slots = a.N < edgeconv::kImageGroup ? a.N : edgeconv::kImageGroup;
  if (!g.direct) std::memset(scratch, 0, sizeof(float) * g.image_stride * slots);
  // Images in groups of kImageGroup: a group shares each block's weight vectors (registers)
  // and touches few enough rows at once for the hardware prefetchers and L1 sets (planes of
  // 96x96 floats are 4 KiB-aligned apart, so a whole batch's rows would fight over L1 sets).
  constexpr int64_t kGroup = edgeconv::kImageGroup;
  // Channels in chunks (edgeconv::channel_chunk): each chunk's images go through it group by
  // group. Small planes: chunks of many channels, so that a group reads consecutive planes
  // of each of its images (sequential streams) instead of a few hundred bytes of each image
  // (C*H*W floats apart) per channel, while the chunk's weights stay in cache from one group
  // to the next. Large planes: chunks of one channel (channels outer).
  const int64_t chunk = edgeconv::channel_chunk(a);
  for (int64_t cb = c0; cb < c1; cb += chunk) {
    const int64_t ce = cb + chunk < c1 ? cb + chunk : c1;
    for (int64_t n0 = 0; n0 < a.N; n0 += kGroup) {
      const int64_t n1 = n0 + kGroup < a.N ? n0 + kGroup : a.N;
      for (int64_t c = cb; c < ce; ++c) run_group<VW, VN, K, S>(a, c, n0, n1, scratch, g);
    }
  }
}

// ---- flat layout (edgeconv::kLayoutFlat: stride 1, W (C, k*k, h*w)) -------------------------
//
// Output pixel q of a plane (q = i*w + j) reads the input plane at q + off[t], off[t] =
// (u - p)*W + (v - p): one contiguous run per tap, so a vector covers L consecutive outputs
// across row ends (every lane used whatever the width) and reads the input where it is. A tap
// that falls outside the image reads the neighbouring row or plane there; its packed weight is
// zero (part of the layout). The last vector of a plane overlaps its predecessor instead of
// storing partially (needs h*w >= 8).

// Outputs [q, q + L) of channel c of G images: each tap's weight vector is loaded (and
// dequantised) once and used for the G images (G accumulators, one weight register).
template <class V, int K, int G>
EDGECONV_INLINE void flat_block(const TVConvArgs& a, int64_t c, int64_t q, int64_t P,
                                const float* const* src, float* const* dst, const int64_t* off) {
  using R = typename V::R;
  constexpr int KK = K * K;
  R b = V::zero();
  if (a.bias_mode == edgeconv::kBiasChannel) b = V::set1(a.bias[c]);
  else if (a.bias_mode == edgeconv::kBiasPixel) b = V::load(a.bias + c * P + q);
  R acc[G];
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g) acc[g] = b;
  const int64_t widx = c * KK * P + q;
#pragma GCC unroll 25
  for (int t = 0; t < KK; ++t) {
    const R w = load_weight<V>(a, widx + t * P, a.scales ? a.scales[c * KK + t] : 1.0f);
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) acc[g] = V::fma(w, V::load(src[g] + q + off[t]), acc[g]);
  }
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g) V::store(dst[g] + q, activate<V>(acc[g], a.act));
}

// Every output of channel c of G images: wide vectors, then narrow ones, the last overlapping.
template <class VW, class VN, int K, int G>
inline void flat_plane(const TVConvArgs& a, int64_t c, int64_t P, const float* const* src,
                       float* const* dst, const int64_t* off) {
  int64_t q = 0;
  for (; q + VW::L <= P; q += VW::L) flat_block<VW, K, G>(a, c, q, P, src, dst, off);
  for (; q < P; q += VN::L)
    flat_block<VN, K, G>(a, c, q + VN::L <= P ? q : P - VN::L, P, src, dst, off);
}

// The flat layout's loop order is the rows layout's (channel_chunk): chunks of channels, each
// chunk's images group by group. A plane is read in place unless its taps would reach
// past its image's first or last channel: such planes are copied into the scratch between
// zeros first, so that no read reaches another image (a non-finite value in one image never
// meets another image's zero weight) or leaves the tensor.
template <class VW, class VN, int K>
void run_flat(const TVConvArgs& a, int64_t c0, int64_t c1, float* scratch) {
  constexpr int KK = K * K;
  constexpr int64_t kGroup = edgeconv::kImageGroup;
  const int64_t P = a.h * a.w_out, reach = edgeconv::flat_reach(a);
  const int64_t slot = P + 2 * reach;
  int64_t off[KK];
  for (int t = 0; t < KK; ++t) off[t] = (t / K - K / 2) * a.W + (t % K - K / 2);
  const int64_t chunk = edgeconv::channel_chunk(a);
  for (int64_t cb = c0; cb < c1; cb += chunk) {
    const int64_t ce = cb + chunk < c1 ? cb + chunk : c1;
    for (int64_t n0 = 0; n0 < a.N; n0 += kGroup) {
      const int64_t n1 = n0 + kGroup < a.N ? n0 + kGroup : a.N;
      for (int64_t c = cb; c < ce; ++c) {
        const float* src[kGroup];
        float* dst[kGroup];
        const bool copy = c * P < reach || (a.C - 1 - c) * P < reach;  // reads leave the image
        for (int64_t n = n0; n < n1; ++n) {
          const float* plane = a.x + (n * a.C + c) * P;  // H*W = h*w at stride 1
          if (copy) {
            float* s = scratch + (n - n0) * slot;
            std::memset(s, 0, sizeof(float) * reach);
            std::memcpy(s + reach, plane, sizeof(float) * P);
            std::memset(s + reach + P, 0, sizeof(float) * reach);
            plane = s + reach;
          }
          src[n - n0] = plane;
          dst[n - n0] = a.y + (n * a.C + c) * P;
        }
        if (n1 - n0 == kGroup) {
          flat_plane<VW, VN, K, kGroup>(a, c, P, src, dst, off);
        } else {
          for (int64_t g = 0; g < n1 - n0; ++g)
            flat_plane<VW, VN, K, 1>(a, c, P, src + g, dst + g, off);
        }
      }
    }
  }
}

template <class VW, class VN>
void run_any(const TVConvArgs& a, int64_t c0, int64_t c1, float* scratch) {
  if (a.layout == edgeconv::kLayoutFlat) {  // stride 1 (check_args)
    if (a.k == 3) run_flat<VW, VN, 3>(a, c0, c1, scratch);
    else if (a.k == 5) run_flat<VW, VN, 5>(a, c0, c1, scratch);
    return;
  }
  if (a.k == 3 && a.s == 1) run_channels<VW, VN, 3, 1>(a, c0, c1, scratch);
  else if (a.k == 3 && a.s == 2) run_channels<VW, VN, 3, 2>(a, c0, c1, scratch);
  else if (a.k == 5 && a.s == 1) run_channels<VW, VN, 5, 1>(a, c0, c1, scratch);
  else if (a.k == 5 && a.s == 2) run_channels<VW, VN, 5, 2>(a, c0, c1, scratch);
}

}  // namespace
