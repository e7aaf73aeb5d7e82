// The one implementation of the NHWC fused per-pixel kernel (the LiteRT delegate's layout),
// written against the same vector interface ``V`` as tvconv_impl.h and included by each ISA
// TU after it. Vectorised over channels: for output pixel (i, j) and a block of V::L channels
// the k*k weight vectors are loaded (and dequantised) once, then reused for a group of four
// images (four independent FMA chains). Interior pixels read their taps straight
// from x (each tap is a contiguous run of channels); border pixels skip the taps that fall
// outside the input (zero padding), so nothing outside x is ever read. A channel tail shorter
// than the narrow vector goes through zero-filled local copies (masked store).
//
// Every output element is computed by the same sequence of operations whatever the row range
// a call gets (bias, then the in-bounds taps in order t = 0..k*k-1, one fused multiply-add
// each): splitting rows over threads gives bit-identical results.
#pragma once

#include <cstring>

#include "tvconv_impl.h"
#include "tvconv_kernel.h"


namespace {

using edgeconv::NhwcArgs;

// L floats at p, or (TAIL) the first nc of them and zeros (a masked load: reads nothing past
// p[nc - 1]).
template <class V, bool TAIL>
inline typename V::R nhwc_load(const float* p, int nc) {
  return TAIL ? V::load_n(p, nc) : V::load(p);
}

// The dequantised weight vector at element idx of W (storage WT): times the scales at sidx
// where the call has them (SC; required for int8, optional for float weights).
template <class V, bool TAIL, int WT, bool SC>
inline typename V::R nhwc_weight(const void* w, const float* scales, int64_t idx, int64_t sidx,
                                 int nc) {
  typename V::R r;
  if (WT == edgeconv::kF16) {
    const uint16_t* p = static_cast<const uint16_t*>(w) + idx;
    if (!TAIL) {
      r = V::load_f16(p);
    } else {
      uint16_t t[V::L] = {};
      std::memcpy(t, p, sizeof(uint16_t) * static_cast<size_t>(nc));
      r = V::load_f16(t);
    }
  } else if (WT == edgeconv::kI8) {
    const int8_t* p = static_cast<const int8_t*>(w) + idx;
    if (!TAIL) {
      r = V::load_i8(p);
    } else {
      int8_t t[V::L] = {};
      std::memcpy(t, p, static_cast<size_t>(nc));
      r = V::load_i8(t);
    }
  } else {
    r = nhwc_load<V, TAIL>(static_cast<const float*>(w) + idx, nc);
  }
  return SC ? V::mul(r, nhwc_load<V, TAIL>(scales + sidx, nc)) : r;
}

template <class V, bool TAIL>
inline void nhwc_store(float* p, typename V::R r, int nc) {
  if (TAIL) V::store_n(p, r, nc);
  else V::store(p, r);
}

// What every channel block of one output pixel shares: which taps are inside the input, each
// tap's element offset in an image at channel 0, and the pixel's weight/bias/output offsets.
template <int K>
struct NhwcPixel {
  bool ok[K * K];
  int64_t off[K * K];
  int64_t pix;  // i * w_out + j
};

// Channels [c, c + nc) of output pixel P, images [n0, n1). BORDER: some taps fall outside.
// WT / SC: the weight storage and whether scales are applied (template parameters: the choice
// is made once per call, not per weight vector).
template <class V, int K, int S, bool TAIL, bool BORDER, int WT, bool SC>
inline void nhwc_block(const NhwcArgs& a, const NhwcPixel<K>& P, int64_t c, int nc, int64_t n0,
                       int64_t n1) {
  using R = typename V::R;
  constexpr int KK = K * K;
  const int64_t C = a.C;
  const int64_t wbase = P.pix * KK * C + c;
  R wv[KK];
#pragma GCC unroll 25
  for (int t = 0; t < KK; ++t)
    wv[t] = !BORDER || P.ok[t] ? nhwc_weight<V, TAIL, WT, SC>(a.w, a.scales, wbase + t * C,
                                                               t * C + c, nc)
                               : V::zero();
  R b = V::zero();
  if (a.bias_mode == edgeconv::kBiasChannel) b = nhwc_load<V, TAIL>(a.bias + c, nc);
  else if (a.bias_mode == edgeconv::kBiasPixel) b = nhwc_load<V, TAIL>(a.bias + P.pix * C + c, nc);

  // Image m of a group at [tap + m * xs]: one pointer per tap and three image strides, the
  // form x86 addressing takes as base + index (recomputing n * xs + off[t] for every load
  // cost ~10 integer instructions per FMA).
  const int64_t xs = a.H * a.W * C, ys = a.h * a.w_out * C;
  const int64_t xs2 = 2 * xs, xs3 = 3 * xs;
  const float* xb = a.x + n0 * xs + c;
  float* yb = a.y + n0 * ys + P.pix * C + c;
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4, xb += 4 * xs, yb += 4 * ys) {
    R a0 = b, a1 = b, a2 = b, a3 = b;
#pragma GCC unroll 25
    for (int t = 0; t < KK; ++t) {
      if (BORDER && !P.ok[t]) continue;
      const float* q = xb + P.off[t];
      a0 = V::fma(wv[t], nhwc_load<V, TAIL>(q, nc), a0);
      a1 = V::fma(wv[t], nhwc_load<V, TAIL>(q + xs, nc), a1);
      a2 = V::fma(wv[t], nhwc_load<V, TAIL>(q + xs2, nc), a2);
      a3 = V::fma(wv[t], nhwc_load<V, TAIL>(q + xs3, nc), a3);
    }
    nhwc_store<V, TAIL>(yb, activate<V>(a0, a.act), nc);
    nhwc_store<V, TAIL>(yb + ys, activate<V>(a1, a.act), nc);
    nhwc_store<V, TAIL>(yb + 2 * ys, activate<V>(a2, a.act), nc);
    nhwc_store<V, TAIL>(yb + 3 * ys, activate<V>(a3, a.act), nc);
  }
  for (; n < n1; ++n, xb += xs, yb += ys) {  // the same chain, one image at a time
    R a0 = b;
#pragma GCC unroll 25
    for (int t = 0; t < KK; ++t) {
      if (BORDER && !P.ok[t]) continue;
      a0 = V::fma(wv[t], nhwc_load<V, TAIL>(xb + P.off[t], nc), a0);
    }
    nhwc_store<V, TAIL>(yb, activate<V>(a0, a.act), nc);
  }
}

// All channels of output pixel (i, j), images [n0, n1): wide blocks, narrow blocks, then a
// masked tail.
template <class VW, class VN, int K, int S, bool BORDER, int WT, bool SC>
inline void nhwc_pixel(const NhwcArgs& a, int64_t i, int64_t j, int64_t n0, int64_t n1) {
  constexpr int KK = K * K;
  constexpr int64_t p = K / 2;
  const int64_t r0 = i * S - p, q0 = j * S - p;  // input pixel of tap (0, 0)
  NhwcPixel<K> P;
#pragma GCC unroll 25
  for (int t = 0; t < KK; ++t) {
    const int64_t r = r0 + t / K, q = q0 + t % K;
    P.ok[t] = !BORDER || (r >= 0 && r < a.H && q >= 0 && q < a.W);
    P.off[t] = P.ok[t] ? (r * a.W + q) * a.C : 0;
  }
  P.pix = i * a.w_out + j;
  const int64_t C = a.C;
  int64_t c = 0;
  for (; c + VW::L <= C; c += VW::L)
    nhwc_block<VW, K, S, false, BORDER, WT, SC>(a, P, c, VW::L, n0, n1);
  for (; c + VN::L <= C; c += VN::L)
    nhwc_block<VN, K, S, false, BORDER, WT, SC>(a, P, c, VN::L, n0, n1);
  if (c < C)
    nhwc_block<VN, K, S, true, BORDER, WT, SC>(a, P, c, static_cast<int>(C - c), n0, n1);
}

// Traversal, chosen for the caches (data NHWC, weights (h, w, k*k, C)): output rows, then
// images in groups of kNhwcGroup, then the row's pixels, then channels. A row's weights
// (w * k*k * C) are fetched from memory once and stay in L2 while the image groups pass over
// them; a group touches only its own few image rows. Measured on the AVX2 build machine
// (benchmarks/default_export_speed.py, docs/): pixel-major with every image inner was 1.6x
// slower per image at batch 16 than at batch 4 (16 images' rows outgrow L2, and images a
// multiple of 4 KiB apart alias in L1); channel chunks of one cache line as the outer loop were
// slower still (strided DRAM access); groups of 8 slower than 4; images outer (rows inner) the
// same within noise.
constexpr int64_t kNhwcGroup = 4;

template <class VW, class VN, int K, int S, int WT, bool SC>
void nhwc_rows(const NhwcArgs& a, int64_t i0, int64_t i1) {
  constexpr int64_t p = K / 2;
  // interior columns: j*S - p >= 0 and j*S - p + K - 1 <= W - 1
  int64_t jhi = a.W - K + p >= 0 ? (a.W - K + p) / S + 1 : 0;
  if (jhi > a.w_out) jhi = a.w_out;
  int64_t jlo = (p + S - 1) / S;
  if (jlo > jhi) jlo = jhi;
  for (int64_t i = i0; i < i1; ++i) {
    const bool row_in = i * S - p >= 0 && i * S - p + K - 1 < a.H;
    for (int64_t n0 = 0; n0 < a.N; n0 += kNhwcGroup) {
      const int64_t n1 = n0 + kNhwcGroup < a.N ? n0 + kNhwcGroup : a.N;
      if (!row_in) {
        for (int64_t j = 0; j < a.w_out; ++j) nhwc_pixel<VW, VN, K, S, true, WT, SC>(a, i, j, n0, n1);
        continue;
      }
      for (int64_t j = 0; j < jlo; ++j) nhwc_pixel<VW, VN, K, S, true, WT, SC>(a, i, j, n0, n1);
      for (int64_t j = jlo; j < jhi; ++j) nhwc_pixel<VW, VN, K, S, false, WT, SC>(a, i, j, n0, n1);
      for (int64_t j = jhi; j < a.w_out; ++j) nhwc_pixel<VW, VN, K, S, true, WT, SC>(a, i, j, n0, n1);
    }
  }
}

template <class VW, class VN, int WT, bool SC>
void nhwc_rows_any(const NhwcArgs& a, int64_t i0, int64_t i1) {
  if (a.k == 3 && a.s == 1) nhwc_rows<VW, VN, 3, 1, WT, SC>(a, i0, i1);
  else if (a.k == 3 && a.s == 2) nhwc_rows<VW, VN, 3, 2, WT, SC>(a, i0, i1);
  else if (a.k == 5 && a.s == 1) nhwc_rows<VW, VN, 5, 1, WT, SC>(a, i0, i1);
  else if (a.k == 5 && a.s == 2) nhwc_rows<VW, VN, 5, 2, WT, SC>(a, i0, i1);
}

template <class VW, class VN>
void run_nhwc_any(const NhwcArgs& a, int64_t i0, int64_t i1) {
  if (i0 < 0) i0 = 0;
  if (i1 > a.h) i1 = a.h;
  if (i0 >= i1 || a.N <= 0) return;
  const bool sc = a.scales != nullptr;
  if (a.wtype == edgeconv::kF16) {
    if (sc) nhwc_rows_any<VW, VN, edgeconv::kF16, true>(a, i0, i1);
    else nhwc_rows_any<VW, VN, edgeconv::kF16, false>(a, i0, i1);
  } else if (a.wtype == edgeconv::kI8) {
    if (sc) nhwc_rows_any<VW, VN, edgeconv::kI8, true>(a, i0, i1);  // int8 always has scales
  } else {
    if (sc) nhwc_rows_any<VW, VN, edgeconv::kF32, true>(a, i0, i1);
    else nhwc_rows_any<VW, VN, edgeconv::kF32, false>(a, i0, i1);
  }
}

}  // namespace
