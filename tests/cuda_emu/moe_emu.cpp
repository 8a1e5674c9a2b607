// Host test of the CUDA MoE kernels (csrc/cuda/grouped_mm.cu, moe_permute.cu) through the
// emulator (emu.h): their real source, compiled by the host compiler, against float64 loops
// written from nemocore/moe.h, with sentinels after every output. The bf16/fp16 grouped GEMMs
// run through the emulated m16n8k16 (tests/cuda_emu/cuda/common/mma.cuh), which rebuilds the
// tiles from the PTX fragment layout, so a mis-packed fragment fails here. Shapes cover every
// load path (vectors along k or along rows, strided and misaligned element loads), tails of
// every tile, empty experts, one expert and zero rows. Build: see tests/test_cuda_emulated.py.
#include "emu.h"  // first: it stands in for the CUDA runtime

#include "cuda/grouped_mm.cu"
#include "cuda/moe_permute.cu"

#define EMU_SEED 1234
#include "emu_suite.h"

using namespace nemocore;

template <typename T>
const char* name_of() {
  if constexpr (std::is_same_v<T, double>) return "f64";
  if constexpr (std::is_same_v<T, __half>) return "f16";
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return "bf16";
  return "f32";
}

static std::string where;  // the case being run, printed with a failure
static void expect_close(double got, double want, double tol, const char* what, int64_t i) {
  ++checks;
  if (std::fabs(got - want) <= tol * (1.0 + std::fabs(want))) return;
  if (++failures <= 20)
    printf("FAIL %s %s[%ld]: got %.9g want %.9g\n", where.c_str(), what, long(i), got, want);
}

// `count` values followed by sentinels (which must survive); `shift` elements of padding before
// the data make the data pointer 16-byte misaligned when wanted.
template <typename T>
struct Buf {
  std::vector<T> v;
  int64_t n, shift;
  explicit Buf(int64_t count, int64_t shift_ = 0, double fill = 777.0)
      : v(count + shift_ + 16, from_d<T>(fill)), n(count), shift(shift_) {}
  T* data() { return v.data() + shift; }
  T& operator[](int64_t i) { return v[shift + i]; }
  void randomize() {
    for (int64_t i = 0; i < n; ++i) (*this)[i] = from_d<T>(randn());
  }
  void check_sentinels(const char* what) {
    const double want = to_d(from_d<T>(777.0));  // 776 in bfloat16
    for (size_t i = shift + n; i < v.size(); ++i) expect_close(to_d(v[i]), want, 0.0, what, i);
  }
};

static std::vector<int64_t> offsets_of(const std::vector<int64_t>& counts) {
  std::vector<int64_t> off(1, 0);
  for (const int64_t c : counts) off.push_back(off.back() + c);
  return off;
}

// ---- grouped_mm -------------------------------------------------------------------------------

// a layouts: contiguous, rows padded (row stride k + 4), column-major, contiguous but misaligned.
enum ALayout { kContig, kPadded, kColMajor, kMisaligned };

struct GmmCase {
  std::vector<int64_t> counts;
  int64_t k, n;
  bool trans_b;
  ALayout a_layout;
  bool gather = false;  // rows of a through an index into a larger a (the fused permute)
};

template <typename T>
void test_grouped_mm(const GmmCase& c, double tol) {
  const std::vector<int64_t> off = offsets_of(c.counts);
  const int64_t E = c.counts.size(), T_ = off.back(), K = c.k, N = c.n;
  where = std::string("grouped_mm ") + name_of<T>() + " T=" + std::to_string(T_) +
          " K=" + std::to_string(K) + " N=" + std::to_string(N) + (c.trans_b ? " trans_b" : "") +
          " layout=" + std::to_string(c.a_layout) + (c.gather ? " gather" : "");
  const int64_t src_rows = c.gather ? T_ + 3 : T_;
  const int64_t a_rs = c.a_layout == kColMajor ? 1 : c.a_layout == kPadded ? K + 4 : K;
  const int64_t a_cs = c.a_layout == kColMajor ? src_rows : 1;
  Buf<T> a(c.a_layout == kColMajor ? K * src_rows : src_rows * a_rs,
           c.a_layout == kMisaligned ? 1 : 0);
  a.randomize();
  std::vector<int64_t> a_rows(T_);
  for (int64_t r = 0; r < T_; ++r) a_rows[r] = c.gather ? int64_t(rng() % src_rows) : r;
  // b is (E, K, N), or (E, N, K) with trans_b; padded layouts also pad the expert stride.
  const int64_t b_es = K * N + (c.a_layout == kPadded ? 8 : 0);
  Buf<T> b(E * b_es);
  b.randomize();
  Buf<T> out(T_ * N);

  GroupedMmParams p;
  p.rows = T_, p.k = K, p.n = N, p.num_experts = E, p.io_dtype = dtype_of<T>();
  p.a = a.data(), p.a_row_stride = a_rs, p.a_col_stride = a_cs;
  p.a_rows = c.gather ? a_rows.data() : nullptr;
  p.b = b.data(), p.b_expert_stride = b_es;
  p.b_k_stride = c.trans_b ? 1 : N, p.b_n_stride = c.trans_b ? K : 1;
  p.offsets = off.data(), p.out = out.data();
  nemocore::cuda::grouped_mm(p);

  for (int64_t e = 0; e < E; ++e) {
    for (int64_t r = off[e]; r < off[e + 1]; ++r) {
      for (int64_t j = 0; j < N; ++j) {
        double want = 0;
        for (int64_t q = 0; q < K; ++q)
          want += to_d(a[a_rows[r] * a_rs + q * a_cs]) *
                  to_d(b[e * b_es + q * p.b_k_stride + j * p.b_n_stride]);
        expect_close(to_d(out[r * N + j]), want, tol, "out", r * N + j);
      }
    }
  }
  out.check_sentinels("out sentinel");
}

// ---- grouped_mm_wgrad -------------------------------------------------------------------------

struct WgradCase {
  std::vector<int64_t> counts;
  int64_t m, n;
  ALayout x_layout;  // kContig, kColMajor or kMisaligned; y is always contiguous
};

template <typename T>
void test_wgrad(const WgradCase& c, double tol) {
  const std::vector<int64_t> off = offsets_of(c.counts);
  const int64_t E = c.counts.size(), T_ = off.back(), M = c.m, N = c.n;
  where = std::string("grouped_mm_wgrad ") + name_of<T>() + " T=" + std::to_string(T_) +
          " M=" + std::to_string(M) + " N=" + std::to_string(N) +
          " layout=" + std::to_string(c.x_layout);
  const bool cm = c.x_layout == kColMajor;
  const int64_t x_rs = cm ? 1 : M, x_cs = cm ? T_ : 1;
  Buf<T> x(T_ * M, c.x_layout == kMisaligned ? 1 : 0), y(T_ * N);
  x.randomize(), y.randomize();
  Buf<T> out(E * M * N);

  GroupedMmWgradParams p;
  p.rows = T_, p.m = M, p.n = N, p.num_experts = E, p.io_dtype = dtype_of<T>();
  p.x = x.data(), p.x_row_stride = x_rs, p.x_col_stride = x_cs;
  p.y = y.data(), p.y_row_stride = N, p.y_col_stride = 1;
  p.offsets = off.data(), p.out = out.data();
  nemocore::cuda::grouped_mm_wgrad(p);

  for (int64_t e = 0; e < E; ++e) {
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t j = 0; j < N; ++j) {
        double want = 0;
        for (int64_t r = off[e]; r < off[e + 1]; ++r)
          want += to_d(x[r * x_rs + i * x_cs]) * to_d(y[r * N + j]);
        const int64_t o = (e * M + i) * N + j;
        expect_close(to_d(out[o]), want, tol, "dw", o);
      }
    }
  }
  out.check_sentinels("dw sentinel");
}

// ---- permute kernels --------------------------------------------------------------------------

// src (src_rows, cols) with column stride col_stride (2: strided reads) and row stride
// cols * col_stride + pad.
template <typename T>
struct Src {
  int64_t rows, cols, cs, rs;
  Buf<T> buf;
  Src(int64_t rows_, int64_t cols_, int64_t cs_, int64_t pad, int64_t shift)
      : rows(rows_), cols(cols_), cs(cs_), rs(cols_ * cs_ + pad), buf(rows_ * rs, shift) {
    buf.randomize();
  }
  double at(int64_t r, int64_t c) { return to_d(buf[r * rs + c * cs]); }
};

template <typename T>
void test_gather(int64_t rows, int64_t cols, int64_t cs, int64_t shift, bool scaled, double tol) {
  using A = acc_t<T>;
  where = std::string("moe_gather ") + name_of<T>() + " rows=" + std::to_string(rows) +
          " cols=" + std::to_string(cols) + " cs=" + std::to_string(cs) +
          (shift ? " misaligned" : "") + (scaled ? " scaled" : "");
  Src<T> src(23, cols, cs, cs == 1 ? 8 : 1, shift);
  std::vector<int64_t> index(rows);
  std::vector<A> scale(rows);
  for (int64_t r = 0; r < rows; ++r) index[r] = rng() % src.rows, scale[r] = A(randn());
  Buf<T> out(rows * cols);
  MoeGatherParams p;
  p.rows = rows, p.cols = cols, p.src_rows = src.rows, p.io_dtype = dtype_of<T>();
  p.src = src.buf.data(), p.src_row_stride = src.rs, p.src_col_stride = cs;
  p.index = index.data(), p.scale = scaled ? scale.data() : nullptr, p.out = out.data();
  nemocore::cuda::moe_gather(p);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const double want = (scaled ? double(scale[r]) : 1.0) * src.at(index[r], c);
      expect_close(to_d(out[r * cols + c]), want, scaled ? tol : 0.0, "out", r * cols + c);
    }
  }
  out.check_sentinels("out sentinel");
}

template <typename T>
void test_combine(int64_t tokens, int64_t topk, int64_t cols, int64_t cs, bool weighted,
                  double tol) {
  using A = acc_t<T>;
  where = std::string("moe_combine ") + name_of<T>() + " tokens=" + std::to_string(tokens) +
          " k=" + std::to_string(topk) + " cols=" + std::to_string(cols) +
          " cs=" + std::to_string(cs) + (weighted ? " weighted" : "");
  Src<T> src(tokens * topk + 3, cols, cs, cs == 1 ? 8 : 3, 0);
  std::vector<int64_t> row_map(tokens * topk);
  std::vector<A> w(tokens * topk);
  for (size_t i = 0; i < row_map.size(); ++i) row_map[i] = rng() % src.rows, w[i] = A(randn());
  Buf<T> out(tokens * cols);
  MoeCombineParams p;
  p.tokens = tokens, p.topk = topk, p.cols = cols, p.src_rows = src.rows;
  p.io_dtype = dtype_of<T>();
  p.src = src.buf.data(), p.src_row_stride = src.rs, p.src_col_stride = cs;
  p.row_map = row_map.data(), p.weights = weighted ? w.data() : nullptr, p.out = out.data();
  nemocore::cuda::moe_combine(p);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t c = 0; c < cols; ++c) {
      double want = 0;
      for (int64_t j = 0; j < topk; ++j)
        want += (weighted ? double(w[t * topk + j]) : 1.0) * src.at(row_map[t * topk + j], c);
      expect_close(to_d(out[t * cols + c]), want, tol, "out", t * cols + c);
    }
  }
  out.check_sentinels("out sentinel");
}

template <typename T>
void test_combine_wgrad(int64_t tokens, int64_t topk, int64_t cols, int64_t cs, double tol) {
  using A = acc_t<T>;
  where = std::string("moe_combine_wgrad ") + name_of<T>() + " tokens=" + std::to_string(tokens) +
          " k=" + std::to_string(topk) + " cols=" + std::to_string(cols) +
          " cs=" + std::to_string(cs);
  Src<T> src(tokens * topk + 2, cols, cs, cs == 1 ? 8 : 1, 0);
  Src<T> dy(tokens, cols, cs, cs == 1 ? 0 : 2, 0);
  std::vector<int64_t> row_map(tokens * topk);
  for (auto& r : row_map) r = rng() % src.rows;
  Buf<A> dw(tokens * topk);
  MoeCombineWgradParams p;
  p.tokens = tokens, p.topk = topk, p.cols = cols, p.src_rows = src.rows;
  p.io_dtype = dtype_of<T>();
  p.dy = dy.buf.data(), p.dy_row_stride = dy.rs, p.dy_col_stride = cs;
  p.src = src.buf.data(), p.src_row_stride = src.rs, p.src_col_stride = cs;
  p.row_map = row_map.data(), p.dweights = dw.data();
  nemocore::cuda::moe_combine_wgrad(p);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < topk; ++j) {
      double want = 0;
      for (int64_t c = 0; c < cols; ++c) want += dy.at(t, c) * src.at(row_map[t * topk + j], c);
      expect_close(to_d(dw[t * topk + j]), want, tol, "dweights", t * topk + j);
    }
  }
  dw.check_sentinels("dweights sentinel");
}

// ---- driver -----------------------------------------------------------------------------------

template <typename T>
void run_all(bool quick, double tol) {
  // Uneven experts with an empty one and one over a 128-row tile; k and n not tile multiples.
  const std::vector<int64_t> uneven = {37, 0, 130, 5};
  std::vector<GmmCase> gmm = {
      {uneven, 40, 24, false, kContig},                // vectors along k (a) and along n (b)
      {uneven, 40, 24, true, kContig},                 // trans_b: vectors along k for both
      {uneven, 44, 20, false, kPadded},                // padded rows, a k tail inside a vector
      {uneven, 24, 17, true, kColMajor},               // column-major a: strided element loads
      {{0, 9, 0, 14, 0}, 40, 24, false, kMisaligned},  // misaligned a: element loads
      {{70}, 72, 136, false, kContig},      // E = 1, several k slices, two n tiles (bf16)
      {{0, 0, 0}, 40, 24, false, kContig},  // rows = 0
      {{3, 0, 2}, 0, 24, true, kContig},    // k = 0: zeros
      {uneven, 40, 24, true, kContig, true},     // gathered rows (the fused permute), vectors
      {uneven, 24, 17, false, kColMajor, true},  // gathered rows of a column-major a
  };
  if (!quick) gmm.push_back({{200, 3, 0, 129, 64}, 100, 150, true, kPadded});
  for (const GmmCase& c : gmm) test_grouped_mm<T>(c, tol);

  std::vector<WgradCase> wg = {
      {uneven, 40, 24, kContig},                // vectors along m and n, empty expert -> zeros
      {uneven, 24, 17, kColMajor},              // tokens contiguous in x: element loads
      {{0, 9, 0, 14, 0}, 40, 24, kMisaligned},  // misaligned x: element loads along m
      {{70}, 136, 20, kContig},                 // E = 1, two m tiles (bf16)
      {{0, 0}, 16, 8, kContig},                 // rows = 0: all zeros
  };
  if (!quick) wg.push_back({{200, 3, 0, 129, 64}, 150, 100, kContig});
  for (const WgradCase& c : wg) test_wgrad<T>(c, tol);

  for (const bool scaled : {false, true}) {
    test_gather<T>(37, 40, 1, 0, scaled, tol);  // vectors
    test_gather<T>(37, 13, 1, 0, scaled, tol);  // cols not a vector multiple
    test_gather<T>(21, 24, 2, 0, scaled, tol);  // strided columns
    test_gather<T>(21, 24, 1, 1, scaled, tol);  // misaligned
  }
  test_gather<T>(0, 24, 1, 0, true, tol);
  for (const bool weighted : {false, true}) {
    test_combine<T>(19, 3, 40, 1, weighted, tol);
    test_combine<T>(19, 1, 13, 1, weighted, tol);
    test_combine<T>(11, 8, 24, 2, weighted, tol);
  }
  test_combine<T>(5, 0, 24, 1, true, tol);  // k = 0: zeros
  test_combine_wgrad<T>(19, 3, 40, 1, tol);
  test_combine_wgrad<T>(19, 2, 13, 1, tol);
  test_combine_wgrad<T>(11, 8, 24, 2, tol);
  test_combine_wgrad<T>(7, 3, 0, 1, tol);  // cols = 0: zeros
}

int main(int argc, char**) {
  const bool quick = argc > 1;
  run_all<double>(quick, 1e-12);
  run_all<float>(quick, 2e-5);
  run_all<__nv_bfloat16>(quick, 1e-2);
  run_all<__half>(quick, 2e-3);
  printf("%ld emulated mma calls\n", nemocore::cuda::emu_mma_calls);
  printf("%s (%d failures in %d checks)\n", failures ? "FAILED" : "OK", failures, checks);
  return failures ? 1 : 0;
}
