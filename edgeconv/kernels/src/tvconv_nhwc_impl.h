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

// L floats at p, or (TAIL) the first nc of them and zeros.
template <class V, bool TAIL>
inline typename V::R nhwc_load(const float* p, int nc) {
  if (!TAIL) return V::load(p);
  float t[V::L] = {};
  std::memcpy(t, p, sizeof(float) * static_cast<size_t>(nc));
  return V::load(t);
}

// The dequantised weight vector at element idx of W: times the scales at sidx where the call
// has scales (required for int8, optional for float weights).
template <class V, bool TAIL>
inline typename V::R nhwc_weight(const NhwcArgs& a, int64_t idx, int64_t sidx, int nc) {
  typename V::R r;
  switch (a.wtype) {
    case edgeconv::kF16: {
      const uint16_t* p = static_cast<const uint16_t*>(a.w) + idx;
      if (!TAIL) {
        r = V::load_f16(p);
      } else {
        uint16_t t[V::L] = {};
        std::memcpy(t, p, sizeof(uint16_t) * static_cast<size_t>(nc));
        r = V::load_f16(t);
      }
      break;
    }
    case edgeconv::kI8: {
      const int8_t* p = static_cast<const int8_t*>(a.w) + idx;
      if (!TAIL) {
        r = V::load_i8(p);
      } else {
        int8_t t[V::L] = {};
        std::memcpy(t, p, static_cast<size_t>(nc));
        r = V::load_i8(t);
      }
      break;
    }
    default:
      r = nhwc_load<V, TAIL>(static_cast<const float*>(a.w) + idx, nc);
  }
  return a.scales ? V::mul(r, nhwc_load<V, TAIL>(a.scales + sidx, nc)) : r;
}

template <class V, bool TAIL>
inline void nhwc_store(float* p, typename V::R r, int nc) {
  if (TAIL) V::store_n(p, r, nc);
  else V::store(p, r);
}

// Channels [c, c + nc) of output pixel (i, j), images [n0, n1). BORDER: some taps fall outside.
template <class V, int K, int S, bool TAIL, bool BORDER>
inline void nhwc_block(const NhwcArgs& a, int64_t i, int64_t j, int64_t c, int nc, int64_t n0,
                       int64_t n1) {
  using R = typename V::R;
  constexpr int KK = K * K;
  constexpr int64_t p = K / 2;
  const int64_t C = a.C;
  const int64_t r0 = i * S - p, q0 = j * S - p;  // input pixel of tap (0, 0)
  bool ok[KK];
  int64_t off[KK];  // tap t's offset in an image (valid taps only)
#pragma GCC unroll 25
  for (int t = 0; t < KK; ++t) {
    const int64_t r = r0 + t / K, q = q0 + t % K;
    ok[t] = !BORDER || (r >= 0 && r < a.H && q >= 0 && q < a.W);
    off[t] = ok[t] ? (r * a.W + q) * C + c : 0;
  }
  const int64_t pix = i * a.w_out + j;
  const int64_t wbase = pix * KK * C + c;
  R wv[KK];
#pragma GCC unroll 25
  for (int t = 0; t < KK; ++t)
    wv[t] = ok[t] ? nhwc_weight<V, TAIL>(a, wbase + t * C, t * C + c, nc) : V::zero();
  R b = V::zero();
  if (a.bias_mode == edgeconv::kBiasChannel) b = nhwc_load<V, TAIL>(a.bias + c, nc);
  else if (a.bias_mode == edgeconv::kBiasPixel) b = nhwc_load<V, TAIL>(a.bias + pix * C + c, nc);

  // Image m of a group at [tap + m * xs]: one pointer per tap and three image strides, the
  // form x86 addressing takes as base + index (recomputing n * xs + off[t] for every load
  // cost ~10 integer instructions per FMA).
  const int64_t xs = a.H * a.W * C, ys = a.h * a.w_out * C;
  const int64_t xs2 = 2 * xs, xs3 = 3 * xs;
  const float* xb = a.x + n0 * xs;
  float* yb = a.y + n0 * ys + pix * C + c;
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4, xb += 4 * xs, yb += 4 * ys) {
    R a0 = b, a1 = b, a2 = b, a3 = b;
#pragma GCC unroll 25
    for (int t = 0; t < KK; ++t) {
      if (BORDER && !ok[t]) continue;
      const float* q = xb + off[t];
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
      if (BORDER && !ok[t]) continue;
      a0 = V::fma(wv[t], nhwc_load<V, TAIL>(xb + off[t], nc), a0);
    }
    nhwc_store<V, TAIL>(yb, activate<V>(a0, a.act), nc);
  }
}

// All channels of output pixel (i, j), images [n0, n1): wide blocks, narrow blocks, then a
// masked tail.
template <class VW, class VN, int K, int S, bool BORDER>
inline void nhwc_pixel(const NhwcArgs& a, int64_t i, int64_t j, int64_t n0, int64_t n1) {
  const int64_t c1 = a.C;
  int64_t c = 0;
  for (; c + VW::L <= c1; c += VW::L)
    nhwc_block<VW, K, S, false, BORDER>(a, i, j, c, VW::L, n0, n1);
  for (; c + VN::L <= c1; c += VN::L)
    nhwc_block<VN, K, S, false, BORDER>(a, i, j, c, VN::L, n0, n1);
  if (c < c1) nhwc_block<VN, K, S, true, BORDER>(a, i, j, c, static_cast<int>(c1 - c), n0, n1);
}

// Traversal, chosen for the caches (data NHWC, weights (h, w, k*k, C)): output rows, then
// images in groups of kNhwcGroup, then the row's pixels, then channels. A row's weights
// (w * k*k * C) are fetched from memory once and stay in L2 while the image groups pass over
// them; a group touches only its own few image rows. Measured on the AVX2 build machine
// (benchmarks/default_export_speed.py, docs/): pixel-major with every image inner was 1.6x
// slower per image at batch 16 than at batch 4 (16 images' rows outgrow L2, and images a
// multiple of 4 KiB apart alias in L1); channel chunks of one cache line as the outer loop were
// slower still (strided DRAM access); groups of 8 slower than 4.
constexpr int64_t kNhwcGroup = 4;

template <class VW, class VN, int K, int S>
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
        for (int64_t j = 0; j < a.w_out; ++j) nhwc_pixel<VW, VN, K, S, true>(a, i, j, n0, n1);
        continue;
      }
      for (int64_t j = 0; j < jlo; ++j) nhwc_pixel<VW, VN, K, S, true>(a, i, j, n0, n1);
      for (int64_t j = jlo; j < jhi; ++j) nhwc_pixel<VW, VN, K, S, false>(a, i, j, n0, n1);
      for (int64_t j = jhi; j < a.w_out; ++j) nhwc_pixel<VW, VN, K, S, true>(a, i, j, n0, n1);
    }
  }
}

template <class VW, class VN>
void run_nhwc_any(const NhwcArgs& a, int64_t i0, int64_t i1) {
  if (i0 < 0) i0 = 0;
  if (i1 > a.h) i1 = a.h;
  if (i0 >= i1 || a.N <= 0) return;
  if (a.k == 3 && a.s == 1) nhwc_rows<VW, VN, 3, 1>(a, i0, i1);
  else if (a.k == 3 && a.s == 2) nhwc_rows<VW, VN, 3, 2>(a, i0, i1);
  else if (a.k == 5 && a.s == 1) nhwc_rows<VW, VN, 5, 1>(a, i0, i1);
  else if (a.k == 5 && a.s == 2) nhwc_rows<VW, VN, 5, 2>(a, i0, i1);
}

}  // namespace
