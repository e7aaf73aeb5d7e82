// Training kernels of the per-pixel product (the autograd pieces), one set per ISA.
//
// Natural (torch) layouts, float32, no packing: x (N, C, H, W); weights (C, k*k, h, w), shared
// by every image of the batch; g / y (N, C, h, w). With p = k/2 and (yy, xx) = (i*s+u-p, j*s+v-p):
//
//   mode 0, forward   y[n,c,i,j]      = sum_t x[n,c,yy,xx] * W[c,t,i,j]  (outside the image: 0)
//   mode 1, input     gx[n,c,yy,xx]  += g[n,c,i,j] * W[c,t,i,j]
//   mode 2, weights   gW[c,t,i,j]     = sum_n x[n,c,yy,xx] * g[n,c,i,j]
//
// "Wide grid": each (image, channel) plane is zero-padded and split into s*s phase planes
// (phase (a, b) holds padded rows a, a+s, ... and columns b, b+s, ...) of width Wq, and the
// output is computed on an (h, Wq) grid whose columns j >= w carry zero weights (and zero
// gradients). Tap (u, v) then reads phase ((u%s), (v%s)) at the flat offset (u/s)*Wq + v/s, so
// every tap is ONE contiguous run of h*Wq floats, for both strides: long, branch-free loops
// that the compiler vectorises for the ISA of the including translation unit. A read that
// runs past column Wq-1 lands in the next row only where the weight (or gradient) is zero.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tvconv_kernel.h"

#ifndef EDGECONV_TRAIN_NS
#error "define EDGECONV_TRAIN_NS before including tvconv_train_impl.h"
#endif

namespace edgeconv {
namespace EDGECONV_TRAIN_NS {

struct Wide {
  int64_t Hq, Wq, plane, L;  // phase-plane rows/cols, floats per phase plane (+1 row), h*Wq
  int s, k, p, kk;
  int phase[25];
  int64_t off[25];
};

static inline Wide make_wide(const TrainGeo& g) {
  Wide d;
  d.s = g.s; d.k = g.k; d.p = g.k / 2; d.kk = g.k * g.k;
  d.Hq = (g.H + 2 * d.p + g.s - 1) / g.s;
  d.Wq = (g.W + 2 * d.p + g.s - 1) / g.s;
  d.plane = (d.Hq + 1) * d.Wq;  // one spare zero row: the last taps read a few floats past Hq
  d.L = g.h * d.Wq;
  for (int u = 0; u < g.k; ++u)
    for (int v = 0; v < g.k; ++v) {
      d.phase[u * g.k + v] = (u % g.s) * g.s + (v % g.s);
      d.off[u * g.k + v] = (u / g.s) * d.Wq + (v / g.s);
    }
  return d;
}

// Zero-padded phase planes of one (H, W) plane: P[ph * plane + r * Wq + q].
template <int S>
static void to_phases(const TrainGeo& g, const Wide& d, const float* __restrict x,
                      float* __restrict P) {
  std::memset(P, 0, sizeof(float) * S * S * d.plane);
  for (int64_t yy = 0; yy < g.H; ++yy) {
    const int64_t py = yy + d.p;
    const float* __restrict xr = x + yy * g.W;
    if (S == 1) {
      std::memcpy(P + py * d.Wq + d.p, xr, sizeof(float) * g.W);
      continue;
    }
    const int64_t a = py % S, r = py / S;
    for (int b = 0; b < S; ++b) {  // padded columns px = xx + p with px % S == b
      const int64_t x0 = ((b - d.p) % S + S) % S;  // first xx with (xx + p) % S == b
      float* __restrict dst = P + (a * S + b) * d.plane + r * d.Wq + (x0 + d.p) / S;
      for (int64_t xx = x0, q = 0; xx < g.W; xx += S, ++q) dst[q] = xr[xx];
    }
  }
}

// The inverse for gradients: gx[yy, xx] = gP at the padded position (padding dropped).
template <int S>
static void from_phases(const TrainGeo& g, const Wide& d, const float* __restrict P,
                        float* __restrict x) {
  for (int64_t yy = 0; yy < g.H; ++yy) {
    const int64_t py = yy + d.p;
    float* __restrict xr = x + yy * g.W;
    if (S == 1) {
      std::memcpy(xr, P + py * d.Wq + d.p, sizeof(float) * g.W);
      continue;
    }
    const int64_t a = py % S, r = py / S;
    for (int b = 0; b < S; ++b) {
      const int64_t x0 = ((b - d.p) % S + S) % S;
      const float* __restrict src = P + (a * S + b) * d.plane + r * d.Wq + (x0 + d.p) / S;
      for (int64_t xx = x0, q = 0; xx < g.W; xx += S, ++q) xr[xx] = src[q];
    }
  }
}

// (h, w) -> (h, Wq) with zero columns j >= w, and back.
static void widen(const TrainGeo& g, const Wide& d, const float* __restrict a,
                  float* __restrict wide) {
  for (int64_t i = 0; i < g.h; ++i) {
    std::memcpy(wide + i * d.Wq, a + i * g.w, sizeof(float) * g.w);
    std::memset(wide + i * d.Wq + g.w, 0, sizeof(float) * (d.Wq - g.w));
  }
}
static void narrow(const TrainGeo& g, const Wide& d, const float* __restrict wide,
                   float* __restrict a) {
  for (int64_t i = 0; i < g.h; ++i) std::memcpy(a + i * g.w, wide + i * d.Wq, sizeof(float) * g.w);
}

// y[m] = sum_t P_t[m] * W_t[m] with every tap in one pass (K*K fixed: the tap loop unrolls).
template <int K>
static void fwd_wide(const Wide& d, const float* const* __restrict Pt,
                     const float* __restrict Ww, float* __restrict y) {
  constexpr int KK = K * K;
  const int64_t L = d.L;
  const float* pt[KK];
  for (int t = 0; t < KK; ++t) pt[t] = Pt[t];
  for (int64_t m = 0; m < L; ++m) {
    float acc = 0.0f;
#pragma GCC unroll 25
    for (int t = 0; t < KK; ++t) acc += pt[t][m] * Ww[t * L + m];
    y[m] = acc;
  }
}

template <int K, int S>
static void range_k(int mode, const TrainGeo& g, const float* __restrict a,
                    const float* __restrict b, float* __restrict out, int64_t c0, int64_t c1) {
  const Wide d = make_wide(g);
  const int kk = d.kk;
  const int64_t L = d.L, hw = g.h * g.w, HW = g.H * g.W;
  std::vector<float> P(static_cast<size_t>(d.s * d.s * d.plane));
  std::vector<float> Wt(static_cast<size_t>(kk * L));   // wide weights, or the wide gW
  std::vector<float> G(static_cast<size_t>(L));          // wide y or wide g
  const float* Pt[25];
  for (int t = 0; t < kk; ++t) Pt[t] = P.data() + d.phase[t] * d.plane + d.off[t];
  for (int64_t c = c0; c < c1; ++c) {
    if (mode == 2) {
      std::fill(Wt.begin(), Wt.end(), 0.0f);
    } else {
      for (int t = 0; t < kk; ++t) widen(g, d, b + (c * kk + t) * hw, Wt.data() + t * L);
    }
    for (int64_t n = 0; n < g.N; ++n) {
      const int64_t nc = n * g.C + c;
      if (mode == 0) {
        to_phases<S>(g, d, a + nc * HW, P.data());
        fwd_wide<K>(d, Pt, Wt.data(), G.data());
        narrow(g, d, G.data(), out + nc * hw);
      } else if (mode == 1) {
        widen(g, d, a + nc * hw, G.data());
        std::memset(P.data(), 0, sizeof(float) * P.size());
        const float* __restrict gw = G.data();
        for (int t = 0; t < kk; ++t) {
          float* __restrict dst = P.data() + d.phase[t] * d.plane + d.off[t];
          const float* __restrict wt = Wt.data() + t * L;
          for (int64_t m = 0; m < L; ++m) dst[m] += gw[m] * wt[m];
        }
        from_phases<S>(g, d, P.data(), out + nc * HW);
      } else {
        to_phases<S>(g, d, a + nc * HW, P.data());
        widen(g, d, b + nc * hw, G.data());
        const float* __restrict gw = G.data();
        for (int t = 0; t < kk; ++t) {
          const float* __restrict src = Pt[t];
          float* __restrict acc = Wt.data() + t * L;
          for (int64_t m = 0; m < L; ++m) acc[m] += src[m] * gw[m];
        }
      }
    }
    if (mode == 2)
      for (int t = 0; t < kk; ++t) narrow(g, d, Wt.data() + t * L, out + (c * kk + t) * hw);
  }
}

// The entry of one ISA: mode 0/1/2 as above over channels [c0, c1); every mode overwrites
// its output (for mode 1, the channels' gx planes).
static void train_range(int mode, const TrainGeo& g, const float* a, const float* b, float* out,
                        int64_t c0, int64_t c1) {
  if (g.k == 3)
    (g.s == 1 ? range_k<3, 1> : range_k<3, 2>)(mode, g, a, b, out, c0, c1);
  else
    (g.s == 1 ? range_k<5, 1> : range_k<5, 2>)(mode, g, a, b, out, c0, c1);
}

}  // namespace EDGECONV_TRAIN_NS
}  // namespace edgeconv
