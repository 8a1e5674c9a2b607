// Host test of the CUDA SSD kernels (csrc/cuda/ssd_update.cu, ssd_fwd.cu) through the emulator
// (emu.h): their real source, compiled by the host compiler, against a token-by-token float64
// recurrence written from nemocore/ssd.h, with sentinels after every output. It checks
// indexing, tails, barriers and the warp sum; speed and real concurrency need a GPU
// (tests/ops/test_ssd.py). Build: see tests/test_cuda_emulated.py.
#include "emu.h"  // first: it stands in for the CUDA runtime

#include "cuda/common/mma.cuh"  // the emulated m16n8k16 (emu_mma_calls counts its uses)
#include "cuda/ssd_fwd.cu"
#include "cuda/ssd_update.cu"

#define EMU_SEED 99
#include "emu_suite.h"

using namespace nemocore;

static void expect_close(double got, double want, double tol, const char* what, int64_t i) {
  ++checks;
  if (std::fabs(got - want) <= tol * (1.0 + std::fabs(want))) return;
  if (++failures <= 20) printf("FAIL %s[%ld]: got %.9g want %.9g\n", what, long(i), got, want);
}

static double ref_dt(double raw, double bias, bool softplus, bool limit, double lo, double hi) {
  double v = raw + bias;
  if (softplus && v <= 20.0) v = std::log1p(std::exp(v));
  if (limit && (v < lo || v > hi)) v = v < lo ? lo : hi;
  return v;
}
static double silu_d(double v) { return v / (1.0 + std::exp(-v)); }

// A tensor of `n` io values followed by sentinels (which must survive).
template <typename T>
struct Buf {
  std::vector<T> v;
  int64_t n;
  explicit Buf(int64_t count, double fill = 777.0) : v(count + 16, from_d<T>(fill)), n(count) {}
  void randomize(double scale = 1.0) {
    for (int64_t i = 0; i < n; ++i) v[i] = from_d<T>(scale * randn());
  }
  void check_sentinels(const char* what) {
    const double want = to_d(from_d<T>(777.0));  // 776 in bfloat16
    for (size_t i = n; i < v.size(); ++i) expect_close(to_d(v[i]), want, 0.0, what, i);
  }
};

// ---- forward --------------------------------------------------------------------------------

struct FwdCase {
  int64_t b, L, H, P, G, N, Q;
  bool z, D_hdim, init, limit;
};

template <typename T>
void test_fwd(const FwdCase& k, double tol) {
  using A = acc_t<T>;
  const int64_t b = k.b, L = k.L, H = k.H, P = k.P, G = k.G, N = k.N, Q = k.Q;
  // Row 0 is two sequences [0, L/2) and [L/2, L); the other rows one sequence each.
  std::vector<int64_t> seqs;
  int64_t chunks = 0, nseq = 0;
  auto add = [&](int64_t row, int64_t s0, int64_t s1, int64_t init) {
    seqs.insert(seqs.end(), {row, s0, s1, init, chunks});
    chunks += (s1 - s0 + Q - 1) / Q;
    ++nseq;
  };
  add(0, 0, L / 2, k.init ? 1 : -1);
  add(0, L / 2, L, -1);
  for (int64_t r = 1; r < b; ++r) add(r, 0, L, k.init ? 0 : -1);
  // x is (b, L, H, P) stored with the head and dim axes swapped (strided reads).
  Buf<T> x(b * L * H * P), B(b * L * G * N), C(b * L * G * N), z(b * L * H * P);
  x.randomize(), B.randomize(), C.randomize(), z.randomize();
  Buf<A> dt(b * L * H), Av(H), D(H * P), bias(H), init(2 * H * P * N);
  for (int64_t i = 0; i < dt.n; ++i) dt.v[i] = A(rand01() - 1.5);
  for (int64_t i = 0; i < H; ++i) Av.v[i] = A(-0.5 - rand01()), bias.v[i] = A(0.3 * randn());
  D.randomize(), init.randomize();
  Buf<T> out(b * L * H * P);
  Buf<A> fin(nseq * H * P * N);
  std::vector<A> ws(ssd_cuda_fwd_workspace_elems(chunks, H, Q, P, N) + 1, A(0));

  SsdFwdParams p;
  p.batch = b, p.seqlen = L, p.nheads = H, p.headdim = P, p.ngroups = G, p.dstate = N;
  p.chunk_size = Q;
  p.io_dtype = dtype_of<T>();
  p.dt_softplus = true, p.has_dt_limit = k.limit, p.dt_min = 0.1, p.dt_max = 0.6;
  p.x = x.v.data();
  p.x_batch_stride = L * H * P, p.x_seq_stride = H * P, p.x_dim_stride = H, p.x_head_stride = 1;
  p.dt = dt.v.data(), p.dt_batch_stride = L * H, p.dt_seq_stride = H, p.dt_head_stride = 1;
  p.A = Av.v.data();
  p.B = B.v.data(), p.C = C.v.data();
  p.B_batch_stride = p.C_batch_stride = L * G * N;
  p.B_seq_stride = p.C_seq_stride = G * N;
  p.B_group_stride = p.C_group_stride = N;
  p.B_state_stride = p.C_state_stride = 1;
  p.D = D.v.data(), p.D_has_hdim = k.D_hdim;
  if (k.z) {
    p.z = z.v.data();
    p.z_batch_stride = L * H * P, p.z_seq_stride = H * P, p.z_head_stride = P, p.z_dim_stride = 1;
  }
  p.dt_bias = bias.v.data();
  p.num_seqs = nseq, p.num_chunks = chunks, p.seqs = seqs.data();
  if (k.init) {
    p.initial_states = init.v.data();
    p.init_row_stride = H * P * N, p.init_head_stride = P * N;
    p.init_dim_stride = N, p.init_state_stride = 1;
  }
  p.out = out.v.data(), p.final_states = fin.v.data(), p.workspace = ws.data();
  nemocore::cuda::ssd_fwd(p);

  // The recurrence, sequence by sequence.
  for (int64_t s = 0; s < nseq; ++s) {
    const int64_t* q = seqs.data() + s * 5;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / G);
      std::vector<double> S(P * N, 0.0);
      if (k.init && q[3] >= 0)
        for (int64_t e = 0; e < P * N; ++e) S[e] = to_d(init.v[(q[3] * H + h) * P * N + e]);
      for (int64_t t = q[1]; t < q[2]; ++t) {
        const double d =
            ref_dt(to_d(dt.v[(q[0] * L + t) * H + h]), to_d(bias.v[h]), true, k.limit, 0.1, 0.6);
        const double decay = std::exp(d * to_d(Av.v[h]));
        for (int64_t j = 0; j < P; ++j) {
          const double xj = to_d(x.v[((q[0] * L + t) * P + j) * H + h]);
          double y = 0;
          for (int64_t n = 0; n < N; ++n) {
            const int64_t bc = ((q[0] * L + t) * G + g) * N + n;
            double& e = S[j * N + n];
            e = e * decay + d * xj * to_d(B.v[bc]);
            y += e * to_d(C.v[bc]);
          }
          y += to_d(D.v[k.D_hdim ? h * P + j : h]) * xj;
          const int64_t o = ((q[0] * L + t) * H + h) * P + j;
          if (k.z) y *= silu_d(to_d(z.v[o]));
          expect_close(to_d(out.v[o]), y, tol, "fwd out", o);
        }
      }
      for (int64_t e = 0; e < P * N; ++e) {
        const int64_t o = (s * H + h) * P * N + e;
        expect_close(to_d(fin.v[o]), S[e], tol, "fwd final", o);
      }
    }
  }
  out.check_sentinels("fwd out sentinel");
  fin.check_sentinels("fwd final sentinel");
}

// ---- decode step ----------------------------------------------------------------------------

template <typename T, typename S>
void test_update(bool full_A, bool limit, double tol) {
  using A = acc_t<T>;
  const int64_t b = 4, H = 4, P = 20, G = 2, N = 40, pool = 6;
  const int32_t idx[b] = {5, -1, 0, 2};
  Buf<S> state(pool * H * P * N);
  state.randomize();
  const std::vector<S> before = state.v;
  Buf<T> x(b * H * P), B(b * G * N), C(b * G * N), z(b * H * P), out(b * H * P);
  x.randomize(), B.randomize(), C.randomize(), z.randomize();
  Buf<A> dt(b * H), Av(H * P * N), D(H * P), bias(H);
  for (int64_t i = 0; i < dt.n; ++i) dt.v[i] = A(rand01() - 1.0);
  for (int64_t i = 0; i < Av.n; ++i) Av.v[i] = A(-0.2 - rand01());
  D.randomize(), bias.randomize(0.3);

  SsdStateUpdateParams p;
  p.batch = b, p.nheads = H, p.headdim = P, p.ngroups = G, p.dstate = N;
  p.io_dtype = dtype_of<T>(), p.state_dtype = dtype_of<S>();
  p.dt_softplus = true, p.has_dt_limit = limit, p.dt_min = 0.2, p.dt_max = 0.5;
  p.state = state.v.data();
  p.state_batch_stride = H * P * N, p.state_head_stride = P * N;
  p.state_dim_stride = N, p.state_state_stride = 1;
  p.state_batch_indices = idx;
  p.x = x.v.data(), p.x_batch_stride = H * P, p.x_head_stride = P, p.x_dim_stride = 1;
  p.dt = dt.v.data(), p.dt_batch_stride = H, p.dt_head_stride = 1, p.dt_dim_stride = 0;
  p.A = Av.v.data();
  p.A_head_stride = full_A ? P * N : 1;
  p.A_dim_stride = full_A ? N : 0, p.A_state_stride = full_A ? 1 : 0;
  p.B = B.v.data(), p.C = C.v.data();
  p.B_batch_stride = p.C_batch_stride = G * N;
  p.B_group_stride = p.C_group_stride = N;
  p.B_state_stride = p.C_state_stride = 1;
  p.D = D.v.data(), p.D_head_stride = P, p.D_dim_stride = 1;
  p.z = z.v.data(), p.z_batch_stride = H * P, p.z_head_stride = P, p.z_dim_stride = 1;
  p.dt_bias = bias.v.data(), p.dt_bias_head_stride = 1, p.dt_bias_dim_stride = 0;
  p.out = out.v.data();
  nemocore::cuda::ssd_state_update(p);

  std::vector<bool> owned(pool, false);
  for (int64_t i = 0; i < b; ++i) {
    if (idx[i] >= 0) owned[idx[i]] = true;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / G);
      const double d = ref_dt(to_d(dt.v[i * H + h]), to_d(bias.v[h]), true, limit, 0.2, 0.5);
      for (int64_t j = 0; j < P; ++j) {
        const int64_t o = (i * H + h) * P + j;
        if (idx[i] < 0) {
          expect_close(to_d(out.v[o]), 0.0, 0.0, "update padded out", o);
          continue;
        }
        const double xj = to_d(x.v[o]);
        double y = 0;
        for (int64_t n = 0; n < N; ++n) {
          const double a = to_d(Av.v[full_A ? (h * P + j) * N + n : h]);
          const int64_t e = ((idx[i] * H + h) * P + j) * N + n;
          const double s =
              to_d(before[e]) * std::exp(d * a) + d * xj * to_d(B.v[(i * G + g) * N + n]);
          expect_close(to_d(state.v[e]), s, tol, "update state", e);
          y += s * to_d(C.v[(i * G + g) * N + n]);
        }
        y += to_d(D.v[h * P + j]) * xj;
        y *= silu_d(to_d(z.v[o]));
        expect_close(to_d(out.v[o]), y, tol, "update out", o);
      }
    }
  }
  for (int64_t r = 0; r < pool; ++r) {
    if (owned[r]) continue;
    for (int64_t e = r * H * P * N; e < (r + 1) * H * P * N; ++e)
      expect_close(to_d(state.v[e]), to_d(before[e]), 0.0, "update unowned state", e);
  }
  out.check_sentinels("update out sentinel");
  state.check_sentinels("update state sentinel");
}

int main(int argc, char**) {
  const bool quick = argc > 1;
  // (b, L, H, P, G, N, Q, z, D_hdim, init, limit): tails of every tile, chunks longer than a
  // 32-row tile, chunk > seqlen, ngroups 1 and = nheads.
  std::vector<FwdCase> cases = {
      {2, 37, 4, 5, 2, 7, 8, true, false, true, false},
      {2, 70, 2, 33, 1, 35, 64, true, true, true, true},
      {1, 5, 2, 3, 2, 4, 16, false, false, false, false},
  };
  if (!quick) cases.push_back({3, 130, 4, 40, 4, 70, 48, true, true, true, false});
  // The tensor-core path of bf16 / fp16 (m16n8k16 tiles over 32 x 32 block tiles): chunk sizes
  // that are (80: three row tiles, the last partial) and are not (24) multiples of 16, head
  // dims and state sizes that are not multiples of 8, across two P tiles and two N slices.
  cases.push_back({2, 45, 2, 13, 1, 19, 24, true, true, true, false});
  cases.push_back({1, 100, 2, 37, 2, 41, 80, true, false, true, true});
  for (const FwdCase& k : cases) {
    test_fwd<double>(k, 1e-9);
    test_fwd<float>(k, 2e-4);
    const long mma_before = nemocore::cuda::emu_mma_calls;
    test_fwd<__nv_bfloat16>(k, 5e-2);
    test_fwd<__half>(k, 1e-2);
    expect_close(nemocore::cuda::emu_mma_calls > mma_before, 1.0, 0.0, "fwd mma used", 0);
  }
  {
    const long mma_before = nemocore::cuda::emu_mma_calls;
    test_fwd<float>(cases[0], 2e-4);
    expect_close(nemocore::cuda::emu_mma_calls - mma_before, 0.0, 0.0, "fp32 fwd mma unused", 0);
  }
  for (bool full_A : {false, true}) {
    for (bool limit : {false, true}) {
      test_update<double, double>(full_A, limit, 1e-12);
      test_update<float, float>(full_A, limit, 1e-5);
      test_update<__nv_bfloat16, float>(full_A, limit, 2e-2);
      test_update<__half, __half>(full_A, limit, 2e-2);
    }
  }
  printf("%s (%d failures in %d checks)\n", failures ? "FAILED" : "OK", failures, checks);
  return failures ? 1 : 0;
}
