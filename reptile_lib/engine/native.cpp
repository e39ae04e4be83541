// The paper's two networks, forward and backward, in one call per inner step (CPU, float32 or float64).
//
// Why: on a CPU the inner step of these small networks (a few million multiply-adds per image) is
// dominated by the fixed cost of some 60 framework calls, not by arithmetic. Here a step is one call:
// the convolutions are im2col + one BLAS matrix product each (the BLAS torch itself links, passed in
// at load time), in NHWC order so that a convolution row is the (kh, kw, in) kernel order the flat
// parameter vector stores; BatchNorm (batch statistics, two passes, sums in double), ReLU, max-pool,
// the dense layer and the summed or mean cross-entropy are plain loops.
//
// Layouts (see engine/sequential.py, FlatNet): activations NHWC; conv kernels (out, kh, kw, in);
// the dense layer (ways, h, w, channels); gradients are written to a flat vector of the same layout.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

extern "C" {
typedef void (*sgemm_fn)(const char*, const char*, const int*, const int*, const int*, const float*,
                         const float*, const int*, const float*, const int*, const float*, float*, const int*);
typedef void (*dgemm_fn)(const char*, const char*, const int*, const int*, const int*, const double*,
                         const double*, const int*, const double*, const int*, const double*, double*, const int*);
}

static sgemm_fn g_sgemm = nullptr;
static dgemm_fn g_dgemm = nullptr;

// Column-major BLAS (Fortran interface); row-major products are written as their transposes.
static inline void gemm(char ta, char tb, int m, int n, int k, float alpha, const float* a, int lda,
                        const float* b, int ldb, float beta, float* c, int ldc) {
  g_sgemm(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
static inline void gemm(char ta, char tb, int m, int n, int k, double alpha, const double* a, int lda,
                        const double* b, int ldb, double beta, double* c, int ldc) {
  g_dgemm(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

enum Kind { CONV = 0, NORM = 1, RELU = 2, POOL = 3 };
static const int SPEC = 12;     // ints per layer in the description handed to rn_create
static const int64_t BLOCK = 64;  // rows per partial sum of the BatchNorm statistics
// values of a convolution's input gradient in columns (dcol) handled per block: a few images' worth, which
// stays in a core's cache between being written and being read
static const int64_t DCOL_BLOCK = 64 * 1024;

struct Layer {
  int kind, cin, cout, k, stride, pt, pl, hin, win, hout, wout, off;  // off: weight offset (conv, norm)
  double eps;
  int64_t in_row() const { return (int64_t)hin * win * cin; }     // per image, input
  int64_t out_row() const { return (int64_t)hout * wout * cout; }  // per image, output
};

template <typename T>
struct Net {
  std::vector<Layer> layers;
  int ways = 0, feat = 0, dense_off = 0;
  int batch = 0;
  std::vector<std::vector<T>> acts;        // acts[i]: input of layer i; acts[L]: the features
  std::vector<std::vector<T>> cols;        // im2col of each convolution
  std::vector<std::vector<int32_t>> where;  // max-pool: index of the max, per output
  std::vector<std::vector<T>> xat;          // BatchNorm -> max-pool: the BatchNorm's input at each max
  std::vector<std::vector<double>> stats;  // BatchNorm: mean (C), then 1/sqrt(var + eps) (C)
  std::vector<T> logits, dlogits, ga, gb, dcol, dwt, mu, scale;   // dwt: a convolution's weight gradient, transposed

  void reserve(int B) {
    if (B <= batch) return;
    size_t L = layers.size();
    acts.resize(L + 1); cols.resize(L); where.resize(L); xat.resize(L); stats.resize(L);
    size_t widest = 0, widest_col = 0, widest_w = 0;
    for (size_t i = 0; i < L; ++i) {
      const Layer& l = layers[i];
      acts[i].assign((size_t)B * l.in_row(), T(0));
      widest = std::max(widest, (size_t)B * std::max(l.in_row(), l.out_row()));
      if (l.kind == CONV) {
        size_t c = (size_t)B * l.hout * l.wout * l.k * l.k * l.cin;
        cols[i].assign(c, T(0));
        widest_col = std::max(widest_col, c);
        widest_w = std::max(widest_w, (size_t)l.cout * l.k * l.k * l.cin);
      }
      if (l.kind == POOL) {
        where[i].assign((size_t)B * l.out_row(), 0);
        xat[i].assign((size_t)B * l.out_row(), T(0));
      }
      if (l.kind == NORM) stats[i].assign(2 * (size_t)l.cin, 0.0);
    }
    acts[L].assign((size_t)B * feat, T(0));
    logits.assign((size_t)B * ways, T(0));
    dlogits.assign((size_t)B * ways, T(0));
    ga.assign(std::max(widest, (size_t)B * feat), T(0));
    gb.assign(ga.size(), T(0));
    dcol.assign(widest_col, T(0));
    dwt.assign(widest_w, T(0));
    batch = B;
  }
};

// ------------------------------------------------------------------ layers, forward
template <typename T>
__attribute__((noinline)) static void conv_forward(const Layer& l, int B, const T* x, T* col, const T* w, const T* bias, T* y) {
  const int K = l.k * l.k * l.cin;
  const int M = B * l.hout * l.wout;
  // a kernel row (kw = 0..k-1) reads k consecutive input pixels: k * cin contiguous values, zeros past an edge
  const int span = l.k * l.cin;
  T* row = col;
  for (int n = 0; n < B; ++n) {
    const T* img = x + (int64_t)n * l.in_row();
    for (int oh = 0; oh < l.hout; ++oh)
      for (int ow = 0; ow < l.wout; ++ow, row += K) {
        const int iw0 = ow * l.stride - l.pl;
        const int lo = std::max(0, -iw0) * l.cin, hi = std::min(l.k, l.win - iw0) * l.cin;
        for (int kh = 0; kh < l.k; ++kh) {
          T* dst = row + kh * span;
          const int ih = oh * l.stride - l.pt + kh;
          if (ih < 0 || ih >= l.hin) {
            for (int j = 0; j < span; ++j) dst[j] = T(0);
            continue;
          }
          const T* src = img + ((int64_t)ih * l.win + iw0) * l.cin;
          for (int j = 0; j < lo; ++j) dst[j] = T(0);
          for (int j = lo; j < hi; ++j) dst[j] = src[j];
          for (int j = hi; j < span; ++j) dst[j] = T(0);
        }
      }
  }
  for (int m = 0; m < M; ++m) std::memcpy(y + (int64_t)m * l.cout, bias, sizeof(T) * l.cout);
  // y (M x out) += col (M x K) @ w^T (K x out)
  gemm('T', 'N', l.cout, M, K, T(1), w, K, col, K, T(1), y, l.cout);
}

// BatchNorm statistics of each of `groups` equal consecutive parts of the batch: mu and scale = gamma /
// sqrt(var + eps) per group and channel (T); with one group also the mean and 1/sqrt(var + eps) in double
// (`stats`), which the backward pass reads.
template <typename T>
__attribute__((noinline)) static void norm_stats(const Layer& l, int B, int groups, const T* x, const T* gamma,
                                                 double* stats, T* mu, T* scale) {
  const int C = l.cin;
  const int64_t rows = (int64_t)B * l.hin * l.win / groups;
  std::vector<double> mean(C), var(C);
  std::vector<T> acc(C);
  for (int g = 0; g < groups; ++g) {
    const T* xg = x + g * rows * C;
    T* m = mu + (int64_t)g * C;
    std::fill(mean.begin(), mean.end(), 0.0);
    std::fill(var.begin(), var.end(), 0.0);
    // sums in blocks of T (vectorised over channels), the blocks' sums in double
    for (int64_t r0 = 0; r0 < rows; r0 += BLOCK) {
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t r = r0; r < std::min(rows, r0 + BLOCK); ++r)
        for (int c = 0; c < C; ++c) acc[c] += xg[r * C + c];
      for (int c = 0; c < C; ++c) mean[c] += acc[c];
    }
    for (int c = 0; c < C; ++c) {
      mean[c] /= (double)rows;
      m[c] = (T)mean[c];
    }
    for (int64_t r0 = 0; r0 < rows; r0 += BLOCK) {
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t r = r0; r < std::min(rows, r0 + BLOCK); ++r)
        for (int c = 0; c < C; ++c) {
          const T d = xg[r * C + c] - m[c];
          acc[c] += d * d;
        }
      for (int c = 0; c < C; ++c) var[c] += acc[c];
    }
    for (int c = 0; c < C; ++c) {
      const double invstd = 1.0 / std::sqrt(var[c] / (double)rows + l.eps);
      if (groups == 1) { stats[c] = mean[c]; stats[C + c] = invstd; }
      scale[(int64_t)g * C + c] = (T)(invstd * (double)gamma[c]);
    }
  }
}

// y = (x - mean) * scale + beta ((x - mean) first: a batch whose mean is far from 0 keeps its precision),
// then ReLU if `relu` (BatchNorm -> ReLU, the Omniglot network's order, in one pass).
template <typename T>
__attribute__((noinline)) static void norm_apply(const Layer& l, int B, int groups, const T* x, const T* mu,
                                                 const T* scale, const T* beta, bool relu, T* y) {
  const int C = l.cin;
  const int64_t rows = (int64_t)B * l.hin * l.win / groups;
  for (int g = 0; g < groups; ++g) {
    const T* m = mu + (int64_t)g * C;
    const T* s = scale + (int64_t)g * C;
    const T* xg = x + g * rows * C;
    T* yg = y + g * rows * C;
    if (relu) {
      for (int64_t r = 0; r < rows; ++r)
        for (int c = 0; c < C; ++c) {
          const T v = (xg[r * C + c] - m[c]) * s[c] + beta[c];
          yg[r * C + c] = v < T(0) ? T(0) : v;   // NaN stays NaN
        }
    } else {
      for (int64_t r = 0; r < rows; ++r)
        for (int c = 0; c < C; ++c) yg[r * C + c] = (xg[r * C + c] - m[c]) * s[c] + beta[c];
    }
  }
}

// Max-pool 2x2 of value(n, c, x) over the map x (B, hin, win, C), then ReLU if `relu`; `where` receives, per
// output, the index in x of its maximum: the first in (row, column) scan order, as PyTorch's kernel picks
// it; NaN wins. With KEEP, `xat` receives x itself at each maximum (for BatchNorm's backward pass).
template <bool KEEP, typename T, typename Value>
static void pool_of(const Layer& pl, int B, const T* x, Value value, bool relu, T* y, int32_t* where, T* xat) {
  const int C = pl.cin;
  for (int n = 0; n < B; ++n)
    for (int oh = 0; oh < pl.hout; ++oh)
      for (int ow = 0; ow < pl.wout; ++ow) {
        const int64_t o = (((int64_t)n * pl.hout + oh) * pl.wout + ow) * C;
        T* yo = y + o;
        int32_t* wo = where + o;
        T* xo = KEEP ? xat + o : nullptr;
        if (2 * oh + 2 <= pl.hin && 2 * ow + 2 <= pl.win) {
          // a whole window (all but a clipped last row or column): its four values in scan order, compared in
          // registers, each output written once
          const int32_t at0 = (int32_t)((((int64_t)n * pl.hin + 2 * oh) * pl.win + 2 * ow) * C);
          const int32_t ats[4] = {at0, at0 + C, at0 + pl.win * C, at0 + pl.win * C + C};
#pragma GCC ivdep
          for (int c = 0; c < C; ++c) {
            T best = value(n, c, x[ats[0] + c]), xb = x[ats[0] + c];
            int32_t arg = ats[0] + c;
            for (int q = 1; q < 4; ++q) {
              const T xv = x[ats[q] + c];
              const T v = value(n, c, xv);
              const bool take = v > best || v != v;
              best = take ? v : best;
              arg = take ? ats[q] + c : arg;
              xb = take ? xv : xb;
            }
            yo[c] = relu && best < T(0) ? T(0) : best;
            wo[c] = arg;
            if (KEEP) xo[c] = xb;
          }
          continue;
        }
        bool first = true;
        for (int ih = 2 * oh; ih < std::min(2 * oh + 2, pl.hin); ++ih)
          for (int iw = 2 * ow; iw < std::min(2 * ow + 2, pl.win); ++iw) {
            const int32_t at = (int32_t)((((int64_t)n * pl.hin + ih) * pl.win + iw) * C);
            const T* xi = x + at;
            if (first) {
              for (int c = 0; c < C; ++c) { yo[c] = value(n, c, xi[c]); wo[c] = at + c; }
              if (KEEP)
                for (int c = 0; c < C; ++c) xo[c] = xi[c];
              first = false;
              continue;
            }
            // no overlap between the maps read and written: said, because with a third store the compiler
            // would need more run-time overlap checks than it makes and would leave the loop scalar (7x slower)
#pragma GCC ivdep
            for (int c = 0; c < C; ++c) {
              const T v = value(n, c, xi[c]);
              const bool take = v > yo[c] || v != v;
              yo[c] = take ? v : yo[c];
              wo[c] = take ? at + c : wo[c];
              if (KEEP) xo[c] = take ? xi[c] : xo[c];
            }
          }
        if (relu)
          for (int c = 0; c < C; ++c) yo[c] = yo[c] < T(0) ? T(0) : yo[c];
      }
}

// BatchNorm -> max-pool 2x2 -> ReLU (the Mini-ImageNet network's order) in one pass: the normalised map
// is never stored; `where` indexes the (normalised) map, `xat` holds the input x at each maximum.
template <typename T>
__attribute__((noinline)) static void norm_pool_relu_forward(const Layer& l, const Layer& pl, int B, int groups,
                                                             const T* x, const T* mu, const T* scale,
                                                             const T* beta, T* y, int32_t* where, T* xat) {
  const int C = l.cin;
  const int per = B / groups;
  pool_of<true>(pl, B, x, [&](int n, int c, T v) {
    const int64_t g = (int64_t)(n / per) * C;
    return (v - mu[g + c]) * scale[g + c] + beta[c];
  }, true, y, where, xat);
}

template <typename T>
__attribute__((noinline)) static void pool_forward(const Layer& l, int B, const T* x, T* y, int32_t* where) {
  pool_of<false>(l, B, x, [](int, int, T v) { return v; }, false, y, where, (T*)nullptr);
}

// How many layers from a BatchNorm at i run as one pass: 2 for BatchNorm -> ReLU, 3 for BatchNorm ->
// max-pool -> ReLU, else 1. The maps in between are never stored.
static int fused(const std::vector<Layer>& layers, size_t i) {
  if (i + 1 < layers.size() && layers[i + 1].kind == RELU) return 2;
  if (i + 2 < layers.size() && layers[i + 1].kind == POOL && layers[i + 2].kind == RELU) return 3;
  return 1;
}

template <typename T>
static void forward(Net<T>& net, const T* p, const T* x, int B, int groups) {
  net.reserve(B);
  std::memcpy(net.acts[0].data(), x, sizeof(T) * B * net.layers[0].in_row());
  const size_t L = net.layers.size();
  for (size_t i = 0; i < L;) {
    const Layer& l = net.layers[i];
    const T* in = net.acts[i].data();
    T* out = net.acts[i + 1].data();
    const int64_t n = (int64_t)B * l.out_row();
    if (l.kind == NORM) {   // fused with what follows: see fused() (the backward pass undoes the same groups)
      net.mu.resize((size_t)groups * l.cin);
      net.scale.resize((size_t)groups * l.cin);
      const T* gamma = p + l.off;
      const T* beta = gamma + l.cin;
      norm_stats(l, B, groups, in, gamma, net.stats[i].data(), net.mu.data(), net.scale.data());
      const int span = fused(net.layers, i);
      if (span == 3)
        norm_pool_relu_forward(l, net.layers[i + 1], B, groups, in, net.mu.data(), net.scale.data(), beta,
                               net.acts[i + 3].data(), net.where[i + 1].data(), net.xat[i + 1].data());
      else
        norm_apply(l, B, groups, in, net.mu.data(), net.scale.data(), beta, span == 2, net.acts[i + span].data());
      i += span;
      continue;
    }
    switch (l.kind) {
      case CONV:
        conv_forward(l, B, in, net.cols[i].data(), p + l.off, p + l.off + (int64_t)l.cout * l.k * l.k * l.cin, out);
        break;
      case RELU:
        for (int64_t j = 0; j < n; ++j) out[j] = in[j] < T(0) ? T(0) : in[j];   // NaN stays NaN
        break;
      case POOL:
        pool_forward(l, B, in, out, net.where[i].data());
        break;
    }
    ++i;
  }
  // logits (B x ways) = features (B x feat) @ dense^T + bias
  const T* w = p + net.dense_off;
  const T* bias = w + (int64_t)net.ways * net.feat;
  for (int b = 0; b < B; ++b) std::memcpy(net.logits.data() + (int64_t)b * net.ways, bias, sizeof(T) * net.ways);
  gemm('T', 'N', net.ways, B, net.feat, T(1), w, net.feat, net.acts.back().data(), net.feat, T(1),
       net.logits.data(), net.ways);
}

// ------------------------------------------------------------------ layers, backward
template <typename T>
__attribute__((noinline)) static void conv_backward(const Layer& l, int B, const T* col, const T* w, const T* dy, T* dw, T* db,
                                                    T* dwt, T* dcol, T* dx) {
  const int K = l.k * l.k * l.cin;
  const int M = B * l.hout * l.wout;
  std::vector<double> sum(l.cout, 0.0);
  for (int m = 0; m < M; ++m)
    for (int o = 0; o < l.cout; ++o) sum[o] += dy[(int64_t)m * l.cout + o];
  for (int o = 0; o < l.cout; ++o) db[o] = (T)sum[o];
  // dw (out x K) = dy^T (out x M) @ col (M x K). With fewer kernel entries than filters (a first layer: 9 or
  // 27 entries) the BLAS is several times slower writing dw in this order than its transpose (measured: 7
  // against 47 GFLOP/s for Omniglot's first layer), so then dw^T is computed and transposed.
  if (K < l.cout) {
    gemm('N', 'T', l.cout, K, M, T(1), dy, l.cout, col, K, T(0), dwt, l.cout);
    for (int o = 0; o < l.cout; ++o)
      for (int j = 0; j < K; ++j) dw[(int64_t)o * K + j] = dwt[(int64_t)j * l.cout + o];
  } else {
    gemm('N', 'T', K, l.cout, M, T(1), col, K, dy, l.cout, T(0), dw, K);
  }
  if (dx == nullptr) return;
  // dcol = dy (M x out) @ w (out x K), then scattered back onto the input positions; a few images at a time,
  // so that the block of dcol is written, cleared and read while it sits in the core's cache (in one piece,
  // a CIFAR-FS layer's dcol is 3 MB, and the three passes over it went to memory)
  const int per_img = l.hout * l.wout;
  const int imgs = (int)std::max<int64_t>(1, std::min<int64_t>(B, DCOL_BLOCK / ((int64_t)per_img * K)));
  const int span = l.k * l.cin;
  for (int n0 = 0; n0 < B; n0 += imgs) {
    const int nb = std::min(imgs, B - n0);
    gemm('N', 'N', K, nb * per_img, l.cout, T(1), w, K, dy + (int64_t)n0 * per_img * l.cout, l.cout, T(0), dcol, K);
    const T* row = dcol;
    for (int n = n0; n < n0 + nb; ++n) {
      T* img = dx + (int64_t)n * l.in_row();
      std::memset(img, 0, sizeof(T) * l.in_row());
      for (int oh = 0; oh < l.hout; ++oh)
        for (int ow = 0; ow < l.wout; ++ow, row += K) {
          const int iw0 = ow * l.stride - l.pl;
          const int lo = std::max(0, -iw0) * l.cin, hi = std::min(l.k, l.win - iw0) * l.cin;
          for (int kh = 0; kh < l.k; ++kh) {
            const int ih = oh * l.stride - l.pt + kh;
            if (ih < 0 || ih >= l.hin) continue;
            T* dst = img + ((int64_t)ih * l.win + iw0) * l.cin;
            const T* src = row + kh * span;
            for (int j = lo; j < hi; ++j) dst[j] += src[j];
          }
        }
    }
  }
}

// BatchNorm's backward pass (batch statistics) for an upstream gradient dy given in one of three forms:
// dense (ReLU-free), masked by the ReLU that followed (dy where out > 0), or pooled: dy and out on the
// max-pooled map (`pl` the pooling layer), `where` the index of each pooled value's maximum (then dy is zero
// elsewhere) and `xat` the input x there.
// dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)), xhat = (x - mean) * invstd.
enum Upstream { DENSE = 0, MASKED = 1, POOLED = 2 };

// `take ? yes : no` on the values' bits: both are computed before, so the loop has no branch and vectorises
// (exactly the value the branch would give, a negative zero included).
template <typename T> struct Bits;
template <> struct Bits<float> { typedef uint32_t U; };
template <> struct Bits<double> { typedef uint64_t U; };
template <typename T>
static inline T pick(bool take, T yes, T no) {
  typedef typename Bits<T>::U U;
  const U m = (U)0 - (U)take;
  return __builtin_bit_cast(T, (U)((__builtin_bit_cast(U, yes) & m) | (__builtin_bit_cast(U, no) & ~m)));
}

template <typename T, int FORM>
__attribute__((noinline)) static void norm_backward(const Layer& l, const Layer* pl, const T* x, const T* gamma,
                                                    const double* stats, const T* dy, const T* out,
                                                    const int32_t* where, const T* xat, int B, T* dgamma,
                                                    T* dbeta, T* dx) {
  const int C = l.cin;
  const int64_t rows = (int64_t)B * l.hin * l.win;
  const int64_t grows = FORM == POOLED ? (int64_t)B * pl->hout * pl->wout : rows;   // rows of the upstream gradient
  const double* mean = stats;
  const double* invstd = stats + C;
  std::vector<double> sdy(C, 0.0), sdyx(C, 0.0);
  std::vector<T> mu(C), acc1(C), acc2(C);
  for (int c = 0; c < C; ++c) mu[c] = (T)mean[c];
  for (int64_t r0 = 0; r0 < grows; r0 += BLOCK) {   // block sums in T, as in norm_stats
    std::fill(acc1.begin(), acc1.end(), T(0));
    std::fill(acc2.begin(), acc2.end(), T(0));
    for (int64_t r = r0; r < std::min(grows, r0 + BLOCK); ++r)
      for (int c = 0; c < C; ++c) {
        const int64_t j = r * C + c;
        const T g = FORM == DENSE ? dy[j] : (out[j] > T(0) ? dy[j] : T(0));
        const T xv = FORM == POOLED ? xat[j] : x[j];
        acc1[c] += g;
        acc2[c] += g * (xv - mu[c]);
      }
    for (int c = 0; c < C; ++c) { sdy[c] += acc1[c]; sdyx[c] += acc2[c]; }
  }
  std::vector<T> a(C), k(C), b(C);
  for (int c = 0; c < C; ++c) {
    sdyx[c] *= invstd[c];   // the sum of dy * xhat
    dgamma[c] = (T)sdyx[c];
    dbeta[c] = (T)sdy[c];
    const double s = (double)gamma[c] * invstd[c];
    a[c] = (T)s;
    k[c] = (T)(-s * sdyx[c] / rows * invstd[c]);
    b[c] = (T)(-s * sdy[c] / rows);
  }
  if (dx == nullptr) return;
  if (FORM == POOLED) {
    // window by window: each input value gets the dense part, and the upstream gradient too where it is its
    // window's maximum (once: the 2x2 windows do not overlap); no scattered writes, so it vectorises
    const int hin = l.hin, win = l.win;
    if (2 * pl->hout < hin || 2 * pl->wout < win)   // rows or columns in no window: the dense part alone
      for (int64_t j = 0; j < rows * C; ++j) dx[j] = k[j % C] * (x[j] - mu[j % C]) + b[j % C];
    for (int n = 0; n < B; ++n)
      for (int oh = 0; oh < pl->hout; ++oh)
        for (int ow = 0; ow < pl->wout; ++ow) {
          const int64_t o = (((int64_t)n * pl->hout + oh) * pl->wout + ow) * C;
          for (int ih = 2 * oh; ih < std::min(2 * oh + 2, hin); ++ih)
            for (int iw = 2 * ow; iw < std::min(2 * ow + 2, win); ++iw) {
              const int32_t at = (int32_t)((((int64_t)n * hin + ih) * win + iw) * C);
              const T* xa = x + at;
              T* da = dx + at;
              // both values computed and one picked by a bit mask: a branch on the maximum's (random) place
              // was mispredicted a quarter of the time, and a `?:` between two computed values is left
              // scalar by the compiler (it could raise a floating-point exception the branch avoided);
              // measured, this loop was a third of a CIFAR-FS meta-iteration. No overlap between maps: ivdep.
#pragma GCC ivdep
              for (int c = 0; c < C; ++c) {
                const T dense = k[c] * (xa[c] - mu[c]) + b[c];
                const T both = dense + a[c] * dy[o + c];
                da[c] = pick((where[o + c] == at + c) & (out[o + c] > T(0)), both, dense);
              }
            }
        }
    return;
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int c = 0; c < C; ++c) {
      const int64_t j = r * C + c;
      const T g = FORM == DENSE ? dy[j] : (out[j] > T(0) ? dy[j] : T(0));
      dx[j] = a[c] * g + k[c] * (x[j] - mu[c]) + b[c];
    }
}

template <typename T>
static double backward(Net<T>& net, const T* p, const int64_t* y, int B, bool mean_loss, T* g) {
  // cross-entropy, summed (the released code) or averaged over the batch; d/dlogits = softmax - onehot
  double loss = 0.0;
  const double scale = mean_loss ? 1.0 / B : 1.0;
  for (int b = 0; b < B; ++b) {
    const T* z = net.logits.data() + (int64_t)b * net.ways;
    T* dz = net.dlogits.data() + (int64_t)b * net.ways;
    double top = z[0];
    for (int j = 1; j < net.ways; ++j) top = std::max(top, (double)z[j]);
    double sum = 0.0;
    for (int j = 0; j < net.ways; ++j) sum += std::exp((double)z[j] - top);
    const double lse = top + std::log(sum);
    loss += lse - (double)z[y[b]];
    for (int j = 0; j < net.ways; ++j)
      dz[j] = (T)((std::exp((double)z[j] - lse) - (j == y[b] ? 1.0 : 0.0)) * scale);
  }
  // dense: dW = dz^T @ features, db = sum dz, dfeatures = dz @ W
  const T* w = p + net.dense_off;
  T* gw = g + net.dense_off;
  T* gbias = gw + (int64_t)net.ways * net.feat;
  const T* feats = net.acts.back().data();
  gemm('N', 'T', net.feat, net.ways, B, T(1), feats, net.feat, net.dlogits.data(), net.ways, T(0), gw, net.feat);
  for (int j = 0; j < net.ways; ++j) {
    double s = 0.0;
    for (int b = 0; b < B; ++b) s += net.dlogits[(int64_t)b * net.ways + j];
    gbias[j] = (T)s;
  }
  T* d = net.ga.data();
  T* d_next = net.gb.data();
  gemm('N', 'N', net.feat, B, net.ways, T(1), w, net.feat, net.dlogits.data(), net.ways, T(0), d, net.feat);
  for (size_t end = net.layers.size(); end-- > 0;) {
    // a fused group (BatchNorm -> ReLU, BatchNorm -> max-pool -> ReLU) ends at its ReLU: undo it at once
    size_t i = end;
    int span = 1;
    for (int s = 3; s >= 2; --s)
      if (end + 1 >= (size_t)s && net.layers[end + 1 - s].kind == NORM && fused(net.layers, end + 1 - s) == s) {
        i = end + 1 - s;
        span = s;
        break;
      }
    const Layer& l = net.layers[i];
    const int64_t n_in = (int64_t)B * l.in_row();
    T* dx = (i == 0) ? nullptr : d_next;
    if (l.kind == NORM) {
      T* dg = g + l.off;
      const T* x = net.acts[i].data();
      const T* gamma = p + l.off;
      if (span == 1)
        norm_backward<T, DENSE>(l, nullptr, x, gamma, net.stats[i].data(), d, nullptr, nullptr, nullptr, B, dg,
                                dg + l.cin, dx);
      else if (span == 2)
        norm_backward<T, MASKED>(l, nullptr, x, gamma, net.stats[i].data(), d, net.acts[i + 2].data(), nullptr,
                                 nullptr, B, dg, dg + l.cin, dx);
      else
        norm_backward<T, POOLED>(l, &net.layers[i + 1], x, gamma, net.stats[i].data(), d, net.acts[i + 3].data(),
                                 net.where[i + 1].data(), net.xat[i + 1].data(), B, dg, dg + l.cin, dx);
      end = i;
      std::swap(d, d_next);
      continue;
    }
    switch (l.kind) {
      case CONV: {
        const int64_t wn = (int64_t)l.cout * l.k * l.k * l.cin;
        conv_backward(l, B, net.cols[i].data(), p + l.off, d, g + l.off, g + l.off + wn, net.dwt.data(),
                      net.dcol.data(), dx);
        break;
      }
      case RELU: {
        const T* out = net.acts[i + 1].data();
        for (int64_t j = 0; j < n_in; ++j) d_next[j] = out[j] > T(0) ? d[j] : T(0);
        break;
      }
      case POOL: {
        std::memset(d_next, 0, sizeof(T) * n_in);
        const int32_t* where = net.where[i].data();
        const int64_t n_out = (int64_t)B * l.out_row();
        for (int64_t j = 0; j < n_out; ++j) d_next[where[j]] += d[j];
        break;
      }
    }
    std::swap(d, d_next);
  }
  return loss * scale;
}

template <typename T>
static void update(T* p, T* v, const T* g, int64_t n, T lr_t, T b2, T eps, T* upd) {
  if (v != nullptr) {
    const T a = T(1) - b2;
    for (int64_t j = 0; j < n; ++j) {
      v[j] = b2 * v[j] + a * g[j] * g[j];
      const T step = -(lr_t * g[j] / (std::sqrt(v[j]) + eps));
      if (upd != nullptr) upd[j] = step;
      p[j] += step;
    }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      const T step = -(lr_t * g[j]);
      if (upd != nullptr) upd[j] = step;
      p[j] += step;
    }
  }
}

// ------------------------------------------------------------------ the C interface (ctypes)
struct Handle {
  int dtype;  // 0 float32, 1 float64
  Net<float> f;
  Net<double> d;
};

template <typename T>
static void setup(Net<T>& net, int n_layers, const int* spec, const double* eps, int ways, int feat, int dense_off) {
  for (int i = 0; i < n_layers; ++i) {
    const int* s = spec + i * SPEC;
    Layer l{s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11], eps[i]};
    net.layers.push_back(l);
  }
  net.ways = ways;
  net.feat = feat;
  net.dense_off = dense_off;
}

extern "C" {

int rn_set_blas(void* sgemm, void* dgemm) {
  g_sgemm = (sgemm_fn)sgemm;
  g_dgemm = (dgemm_fn)dgemm;
  return SPEC;
}

void* rn_create(int dtype, int n_layers, const int* spec, const double* eps, int ways, int feat, int dense_off) {
  Handle* h = new Handle();
  h->dtype = dtype;
  if (dtype == 0) setup(h->f, n_layers, spec, eps, ways, feat, dense_off);
  else setup(h->d, n_layers, spec, eps, ways, feat, dense_off);
  return h;
}

void rn_free(void* h) { delete (Handle*)h; }

// The loss of one batch at parameters p and its gradient, written to g. x: (B, H, W, C); y: (B,) labels.
double rn_grad(void* hp, const void* p, const void* x, const int64_t* y, int B, int mean_loss, void* g) {
  Handle* h = (Handle*)hp;
  if (h->dtype == 0) {
    forward(h->f, (const float*)p, (const float*)x, B, 1);
    return backward(h->f, (const float*)p, y, B, mean_loss != 0, (float*)g);
  }
  forward(h->d, (const double*)p, (const double*)x, B, 1);
  return backward(h->d, (const double*)p, y, B, mean_loss != 0, (double*)g);
}

// Logits (B, ways) with BatchNorm statistics per group of B / groups consecutive images.
void rn_logits(void* hp, const void* p, const void* x, int B, int groups, void* out) {
  Handle* h = (Handle*)hp;
  if (h->dtype == 0) {
    forward(h->f, (const float*)p, (const float*)x, B, groups);
    std::memcpy(out, h->f.logits.data(), sizeof(float) * B * h->f.ways);
  } else {
    forward(h->d, (const double*)p, (const double*)x, B, groups);
    std::memcpy(out, h->d.logits.data(), sizeof(double) * B * h->d.ways);
  }
}

// One optimiser step in place, in one pass: Adam with beta1 = 0 (v given) or SGD (v null):
// v <- b2 v + (1 - b2) g^2;  p <- p - lr_t g / (sqrt(v) + eps)   (SGD: p <- p - lr_t g).
// upd, if not null, receives the step itself (p_new - p_old), for the step weights.
void rn_update(int dtype, int64_t n, void* p, void* v, const void* g, double lr_t, double b2, double eps, void* upd) {
  if (dtype == 0) update((float*)p, (float*)v, (const float*)g, n, (float)lr_t, (float)b2, (float)eps, (float*)upd);
  else update((double*)p, (double*)v, (const double*)g, n, lr_t, b2, eps, (double*)upd);
}

}  // extern "C"
