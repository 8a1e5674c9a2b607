// Host test of the Hopper grouped GEMM (csrc/cuda/grouped_mm_sm90.cu) through the emulator: its
// real source against float64 loops written from nemocore/moe.h. The copies and wgmma MMAs run
// through tests/cuda_emu/cuda/common/sm90.cuh, which executes them as late as the hardware may
// and reads the tiles through the 128-byte swizzle of the real descriptors, so a wrong layout,
// a missing wait or a tile overwritten while an MMA reads it fails here. Shapes cover empty
// experts, one-row experts, row tails of the 128-row tile, column tails of the 128-column tile,
// k tails of the 64-wide slice (K a multiple of 8), more slices than pipeline stages, padded
// strides and the gathered rows of the fused permute. Build: see tests/test_cuda_emulated.py.
#include "emu.h"  // first: it stands in for the CUDA runtime

#include "cuda/grouped_mm_sm90.cu"

#define EMU_SEED 4242
#include "emu_suite.h"

using namespace nemocore;

static std::string where;  // the case being run, printed with a failure
static void expect_close(double got, double want, double tol, const char* what, int64_t i) {
  ++checks;
  if (std::fabs(got - want) <= tol * (1.0 + std::fabs(want))) return;
  if (++failures <= 20)
    printf("FAIL %s %s[%ld]: got %.9g want %.9g\n", where.c_str(), what, long(i), got, want);
}

struct Case {
  std::vector<int64_t> counts;
  int64_t k, n;
  int64_t pad;  // extra elements per row of a and of b (strides stay multiples of 8)
  bool gather;  // rows of a through an index into a larger source
};

template <typename T>
void run_case(const Case& c, double tol) {
  std::vector<int64_t> off(1, 0);
  for (const int64_t n : c.counts) off.push_back(off.back() + n);
  const int64_t E = c.counts.size(), rows = off.back(), K = c.k, N = c.n;
  where = std::string(std::is_same_v<T, __half> ? "f16" : "bf16") + " T=" +
          std::to_string(rows) + " K=" + std::to_string(K) + " N=" + std::to_string(N) +
          " pad=" + std::to_string(c.pad) + (c.gather ? " gather" : "");
  const int64_t lda = K + c.pad, ldb = K + c.pad, src_rows = c.gather ? rows + 5 : rows;
  std::vector<T> a(src_rows * lda + 8), b(E * N * ldb + 8);
  for (auto& v : a) v = from_d<T>(randn());
  for (auto& v : b) v = from_d<T>(randn());
  std::vector<int64_t> a_rows(rows);
  for (int64_t r = 0; r < rows; ++r) a_rows[r] = c.gather ? int64_t(rng() % src_rows) : r;
  std::vector<T> out(rows * N + 16, from_d<T>(777.0));

  GroupedMmParams p;
  p.rows = rows, p.k = K, p.n = N, p.num_experts = E, p.io_dtype = dtype_of<T>();
  p.a = a.data(), p.a_row_stride = lda, p.a_col_stride = 1;
  p.b = b.data(), p.b_expert_stride = N * ldb, p.b_n_stride = ldb, p.b_k_stride = 1;
  p.offsets = off.data(), p.out = out.data();
  if (!cuda::grouped_mm_sm90_supports(p)) {
    ++failures, printf("FAIL %s: not supported\n", where.c_str());
    return;
  }
  p.a_rows = c.gather ? a_rows.data() : nullptr;
  cuda::grouped_mm_sm90(p);

  for (int64_t e = 0; e < E; ++e) {
    for (int64_t r = off[e]; r < off[e + 1]; ++r) {
      for (int64_t j = 0; j < N; ++j) {
        double want = 0;
        for (int64_t q = 0; q < K; ++q)
          want += to_d(a[a_rows[r] * lda + q]) * to_d(b[(e * N + j) * ldb + q]);
        expect_close(to_d(out[r * N + j]), want, tol, "out", r * N + j);
      }
    }
  }
  const double sentinel = to_d(from_d<T>(777.0));
  for (size_t i = rows * N; i < out.size(); ++i)
    expect_close(to_d(out[i]), sentinel, 0.0, "sentinel", i);
}

static void check_rejects() {
  // Not K-major, K not a multiple of 8, fp32: the dispatcher must fall back, never launch.
  GroupedMmParams p;
  p.io_dtype = DType::kBFloat16, p.k = 64, p.n = 8, p.rows = 1, p.num_experts = 1;
  alignas(16) static __nv_bfloat16 buf[1024];
  p.a = buf, p.b = buf, p.a_row_stride = 64, p.a_col_stride = 1, p.b_n_stride = 64,
  p.b_k_stride = 1, p.b_expert_stride = 512;
  ++checks, failures += !cuda::grouped_mm_sm90_supports(p);
  GroupedMmParams q = p;
  q.b_k_stride = 8, q.b_n_stride = 1;
  ++checks, failures += cuda::grouped_mm_sm90_supports(q);
  q = p, q.k = 60;
  ++checks, failures += cuda::grouped_mm_sm90_supports(q);
  q = p, q.io_dtype = DType::kFloat32;
  ++checks, failures += cuda::grouped_mm_sm90_supports(q);
  q = p, q.a = buf + 1;
  ++checks, failures += cuda::grouped_mm_sm90_supports(q);
}

template <typename T>
void run_all(bool quick, double tol) {
  const std::vector<Case> cases = {
      {{3}, 8, 8, 0, false},                      // one tiny expert, one k chunk
      {{0, 1, 130, 0, 7}, 72, 136, 0, false},     // empty/one-row experts, row/col/k tails
      {{64, 129}, 264, 128, 8, false},            // five slices > four stages, padded strides
      {{5, 0, 140}, 136, 24, 0, true},            // gathered rows (the fused permute)
      {{0, 0, 0}, 64, 64, 0, false},              // no rows at all
  };
  for (const Case& c : cases) run_case<T>(c, tol);
  if (!quick) {
    run_case<T>({{300, 17, 0, 256}, 520, 260, 16, true}, tol);
    run_case<T>({{1, 2, 3, 4, 5, 6, 7, 8, 9}, 128, 136, 0, true}, tol);
  }
}

int main(int argc, char**) {
  const bool quick = argc > 1;
  check_rejects();
  run_all<__nv_bfloat16>(quick, 8e-3);  // one bf16 rounding of an fp32 sum
  run_all<__half>(quick, 2e-3);
  printf("%ld emulated wgmma calls, %ld cp.async copies\n", cuda::sm90::emu_wgmma_calls,
         cuda::sm90::emu_cp_async_calls);
  printf("%s (%d failures in %d checks)\n", failures ? "FAILED" : "OK", failures, checks);
  return failures ? 1 : 0;
}
