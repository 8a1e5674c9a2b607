// Host test of the CUDA SSD backward (csrc/cuda/ssd_bwd.cu) through the emulator (emu.h): its
// real source, compiled by the host compiler, against a token-by-token float64 reverse-mode
// recurrence written here from nemocore/ssd.h, itself checked against central finite
// differences of the float64 forward recurrence. Every gradient, with sentinels after every
// output; packed sequences with per-sequence initial states, chunk tails, seqlen 1, ngroups 1
// and = nheads, softplus and the dt clamp, all io dtypes, non-contiguous inputs.
// Build: see tests/test_cuda_emulated.py.
#include "emu.h"  // first: it stands in for the CUDA runtime

#include "cuda/ssd_bwd.cu"

#include <algorithm>
#define EMU_SEED 7
#include "emu_suite.h"

using namespace nemocore;

static void expect_close(double got, double want, double tol, double scale, const char* what,
                         int64_t i) {
  ++checks;
  if (std::fabs(got - want) <= tol * (std::fabs(want) + scale)) return;
  if (++failures <= 30) printf("FAIL %s[%ld]: got %.9g want %.9g\n", what, long(i), got, want);
}

struct Case {
  int64_t b, L, H, P, G, N, Q;
  bool z;
  int D;  // 0 none, 1 (H,), 2 (H, P)
  bool init, softplus, limit, bias, dfinal, packed;
};

// The problem in float64, logical contiguous layouts; io values already rounded to the io type.
struct Data {
  Case k;
  std::vector<int64_t> seqs;  // (S, 5), SsdSeqColumn
  int64_t nseq = 0, chunks = 0, init_rows = 0;
  std::vector<double> x, dt, A, B, C, D, z, bias, init, dout, dfin;
};
struct Grads {
  std::vector<double> dx, ddt, dA, dB, dC, dD, dz, dbias, dinit;
};

static double dt_of(const Case& k, double raw, double bias, double* slope) {
  double v = raw + bias, d = 1.0;
  if (k.softplus && v <= 20.0) d = 1.0 / (1.0 + std::exp(-v)), v = std::log1p(std::exp(v));
  if (k.limit && (v < 0.1 || v > 0.6)) d = 0.0, v = v < 0.1 ? 0.1 : 0.6;
  *slope = d;
  return v;
}

template <typename T>
Data make_data(const Case& k) {
  using A = acc_t<T>;
  Data d;
  d.k = k;
  auto io = [](double v) { return to_d(from_d<T>(v)); };
  auto acc = [](double v) { return double(A(v)); };
  auto add = [&](int64_t row, int64_t s0, int64_t s1, bool with_init) {
    d.seqs.insert(d.seqs.end(), {row, s0, s1, with_init ? d.init_rows++ : -1, d.chunks});
    d.chunks += (s1 - s0 + k.Q - 1) / k.Q;
    ++d.nseq;
  };
  for (int64_t r = 0; r < k.b; ++r) {
    if (k.packed && r == 0 && k.L >= 3) {  // three sequences, the middle one without a state
      const int64_t a = k.L / 3, c = k.L - k.L / 4;
      add(0, 0, a, k.init), add(0, a, c, false), add(0, c, k.L, k.init);
    } else {
      add(r, 0, k.L, k.init);
    }
  }
  const int64_t BL = k.b * k.L;
  auto fill = [&](std::vector<double>& v, int64_t n, auto f) {
    v.resize(n);
    for (auto& e : v) e = f();
  };
  fill(d.x, BL * k.H * k.P, [&] { return io(randn()); });
  fill(d.B, BL * k.G * k.N, [&] { return io(randn()); });
  fill(d.C, BL * k.G * k.N, [&] { return io(randn()); });
  fill(d.z, BL * k.H * k.P, [&] { return io(randn()); });
  fill(d.dout, BL * k.H * k.P, [&] { return io(randn()); });
  fill(d.dt, BL * k.H,
       [&] { return acc(k.softplus ? rand01() * 2.5 - 2.5 : 0.05 + 0.6 * rand01()); });
  fill(d.A, k.H, [&] { return acc(-0.5 - rand01()); });
  fill(d.bias, k.H, [&] { return acc(k.bias ? 0.2 * randn() : 0.0); });
  fill(d.D, k.D == 2 ? k.H * k.P : k.H, [&] { return acc(randn()); });
  fill(d.init, d.init_rows * k.H * k.P * k.N, [&] { return acc(randn()); });
  fill(d.dfin, d.nseq * k.H * k.P * k.N, [&] { return acc(k.dfinal ? randn() : 0.0); });
  return d;
}

// Per sequence and head: the forward recurrence, storing what the reverse sweep needs, then the
// reverse sweep. Returns sum(out * dout) + sum(final * dfinal) (for finite differences).
static double reference(const Data& d, Grads* g) {
  const Case& k = d.k;
  const int64_t H = k.H, P = k.P, G = k.G, N = k.N, L = k.L;
  if (g) {
    *g = Grads{};
    g->dx.assign(d.x.size(), 0), g->ddt.assign(d.dt.size(), 0), g->dA.assign(H, 0);
    g->dB.assign(d.B.size(), 0), g->dC.assign(d.C.size(), 0), g->dD.assign(d.D.size(), 0);
    g->dz.assign(d.z.size(), 0), g->dbias.assign(H, 0), g->dinit.assign(d.init.size(), 0);
  }
  double loss = 0;
  for (int64_t s = 0; s < d.nseq; ++s) {
    const int64_t* q = d.seqs.data() + s * 5;
    const int64_t row = q[0], t0 = q[1], t1 = q[2], ir = q[3];
    for (int64_t h = 0; h < H; ++h) {
      const int64_t grp = h / (H / G);
      std::vector<double> S(P * N, 0.0);
      if (k.init && ir >= 0)
        for (int64_t e = 0; e < P * N; ++e) S[e] = d.init[(ir * H + h) * P * N + e];
      const int64_t n = t1 - t0;
      std::vector<std::vector<double>> Sprev(n), ypre(n);
      std::vector<double> dts(n), slopes(n), decays(n);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t t = t0 + i, bl = row * L + t;
        dts[i] = dt_of(k, d.dt[bl * H + h], d.bias[h], &slopes[i]);
        decays[i] = std::exp(dts[i] * d.A[h]);
        Sprev[i] = S;
        ypre[i].assign(P, 0.0);
        for (int64_t j = 0; j < P; ++j) {
          const double xj = d.x[(bl * H + h) * P + j];
          double y = 0;
          for (int64_t m = 0; m < N; ++m) {
            double& e = S[j * N + m];
            e = e * decays[i] + dts[i] * xj * d.B[(bl * G + grp) * N + m];
            y += e * d.C[(bl * G + grp) * N + m];
          }
          if (k.D) y += d.D[k.D == 2 ? h * P + j : h] * xj;
          ypre[i][j] = y;
          const int64_t o = (bl * H + h) * P + j;
          const double out = k.z ? y * d.z[o] / (1.0 + std::exp(-d.z[o])) : y;
          loss += out * d.dout[o];
        }
      }
      for (int64_t e = 0; e < P * N; ++e) loss += S[e] * d.dfin[(s * H + h) * P * N + e];
      if (!g) continue;
      std::vector<double> GS(d.dfin.begin() + (s * H + h) * P * N,
                             d.dfin.begin() + (s * H + h + 1) * P * N);
      for (int64_t i = n - 1; i >= 0; --i) {
        const int64_t bl = row * L + t0 + i;
        const double* Bt = d.B.data() + (bl * G + grp) * N;
        const double* Ct = d.C.data() + (bl * G + grp) * N;
        std::vector<double> gy(P);
        for (int64_t j = 0; j < P; ++j) {
          const int64_t o = (bl * H + h) * P + j;
          gy[j] = d.dout[o];
          if (k.z) {
            const double zz = d.z[o], sg = 1.0 / (1.0 + std::exp(-zz));
            g->dz[o] = gy[j] * ypre[i][j] * sg * (1.0 + zz * (1.0 - sg));
            gy[j] *= zz * sg;
          }
          if (k.D) {
            const int64_t di = k.D == 2 ? h * P + j : h;
            g->dD[di] += gy[j] * d.x[o];
            g->dx[o] += d.D[di] * gy[j];
          }
        }
        double da = 0, dd = 0;
        for (int64_t j = 0; j < P; ++j) {
          const double xj = d.x[(bl * H + h) * P + j];
          double gxb = 0;
          for (int64_t m = 0; m < N; ++m) {
            const double St = decays[i] * Sprev[i][j * N + m] + dts[i] * xj * Bt[m];
            double& G1 = GS[j * N + m];
            G1 += gy[j] * Ct[m];
            g->dC[(bl * G + grp) * N + m] += gy[j] * St;
            da += G1 * Sprev[i][j * N + m];
            dd += G1 * xj * Bt[m];
            gxb += G1 * Bt[m];
            g->dB[(bl * G + grp) * N + m] += dts[i] * G1 * xj;
          }
          g->dx[(bl * H + h) * P + j] += dts[i] * gxb;
        }
        dd += da * decays[i] * d.A[h];
        g->dA[h] += da * decays[i] * dts[i];
        g->ddt[bl * H + h] = dd * slopes[i];
        g->dbias[h] += dd * slopes[i];
        for (double& e : GS) e *= decays[i];
      }
      if (k.init && ir >= 0)
        for (int64_t e = 0; e < P * N; ++e) g->dinit[(ir * H + h) * P * N + e] = GS[e];
    }
  }
  return loss;
}

// The reverse sweep against central differences of the forward, a few entries per input.
static void check_reference(const Case& k) {
  Data d = make_data<double>(k);
  Grads g;
  reference(d, &g);
  const std::pair<std::vector<double>*, const std::vector<double>*> pairs[] = {
      {&d.x, &g.dx}, {&d.dt, &g.ddt}, {&d.A, &g.dA},       {&d.B, &g.dB},      {&d.C, &g.dC},
      {&d.D, &g.dD}, {&d.z, &g.dz},   {&d.bias, &g.dbias}, {&d.init, &g.dinit}};
  for (const auto& [v, gv] : pairs) {
    for (int r = 0; r < 6 && !v->empty(); ++r) {
      const size_t i = rng() % v->size();
      const double keep = (*v)[i], eps = 1e-5;
      (*v)[i] = keep + eps;
      const double up = reference(d, nullptr);
      (*v)[i] = keep - eps;
      const double down = reference(d, nullptr);
      (*v)[i] = keep;
      expect_close((up - down) / (2 * eps), (*gv)[i], 1e-5, 1.0, "reference vs finite diff", i);
    }
  }
}

// A tensor of `n` values followed by sentinels (which must survive).
template <typename T>
struct Buf {
  std::vector<T> v;
  int64_t n;
  explicit Buf(int64_t count, double fill = 777.0) : v(count + 16, from_d<T>(fill)), n(count) {}
  void check_sentinels(const char* what) {
    const double want = to_d(from_d<T>(777.0));
    for (size_t i = n; i < v.size(); ++i) expect_close(to_d(v[i]), want, 0.0, 0.0, what, i);
  }
};

template <typename T>
void expect_grad(const Buf<T>& got, const std::vector<double>& want, double tol, const char* what) {
  double scale = 1e-30;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < want.size(); ++i)
    expect_close(to_d(got.v[i]), want[i], tol, scale, what, i);
}

template <typename T>
void test_bwd(const Case& k, double tol) {
  using A = acc_t<T>;
  const Data d = make_data<T>(k);
  Grads want;
  reference(d, &want);
  const int64_t b = k.b, L = k.L, H = k.H, P = k.P, G = k.G, N = k.N;
  // Non-contiguous inputs: x and dout with the head and dim axes swapped, dt as (b, H, L),
  // B and C with the group and state axes swapped, initial states as (I, H, N, P).
  Buf<T> x(b * L * H * P), dout(b * L * H * P), z(b * L * H * P), B(b * L * G * N),
      C(b * L * G * N);
  Buf<A> dt(b * L * H), Av(H), D(d.D.size()), bias(H), init(d.init.size()), dfin(d.dfin.size());
  for (int64_t r = 0; r < b * L; ++r) {
    for (int64_t h = 0; h < H; ++h) {
      dt.v[(r / L * H + h) * L + r % L] = A(d.dt[r * H + h]);
      for (int64_t j = 0; j < P; ++j) {
        x.v[(r * P + j) * H + h] = from_d<T>(d.x[(r * H + h) * P + j]);
        dout.v[(r * P + j) * H + h] = from_d<T>(d.dout[(r * H + h) * P + j]);
        z.v[(r * H + h) * P + j] = from_d<T>(d.z[(r * H + h) * P + j]);
      }
    }
    for (int64_t gg = 0; gg < G; ++gg) {
      for (int64_t n = 0; n < N; ++n) {
        B.v[(r * N + n) * G + gg] = from_d<T>(d.B[(r * G + gg) * N + n]);
        C.v[(r * N + n) * G + gg] = from_d<T>(d.C[(r * G + gg) * N + n]);
      }
    }
  }
  for (int64_t h = 0; h < H; ++h) Av.v[h] = A(d.A[h]), bias.v[h] = A(d.bias[h]);
  for (size_t i = 0; i < d.D.size(); ++i) D.v[i] = A(d.D[i]);
  for (size_t i = 0; i < d.dfin.size(); ++i) dfin.v[i] = A(d.dfin[i]);
  for (int64_t rh = 0; rh < d.init_rows * H; ++rh)
    for (int64_t j = 0; j < P; ++j)
      for (int64_t n = 0; n < N; ++n)
        init.v[(rh * N + n) * P + j] = A(d.init[(rh * P + j) * N + n]);

  Buf<T> dx(b * L * H * P), dz(b * L * H * P), dB(b * L * G * N), dC(b * L * G * N);
  Buf<A> ddt(b * L * H), dA(H), dD(d.D.size()), dbias(H), dinit(d.init.size());
  for (int64_t i = 0; i < dinit.n; ++i) dinit.v[i] = A(0);  // the binding zeroes it
  std::vector<A> ws(ssd_cuda_bwd_workspace_elems(d.chunks, H, G, k.Q, P, N) + 1, A(-1e30));

  SsdBwdParams bp;
  SsdFwdParams& p = bp.fwd;
  p.batch = b, p.seqlen = L, p.nheads = H, p.headdim = P, p.ngroups = G, p.dstate = N;
  p.chunk_size = k.Q;
  p.io_dtype = dtype_of<T>();
  p.dt_softplus = k.softplus, p.has_dt_limit = k.limit, p.dt_min = 0.1, p.dt_max = 0.6;
  p.x = x.v.data();
  p.x_batch_stride = L * H * P, p.x_seq_stride = H * P, p.x_dim_stride = H, p.x_head_stride = 1;
  p.dt = dt.v.data(), p.dt_batch_stride = H * L, p.dt_seq_stride = 1, p.dt_head_stride = L;
  p.A = Av.v.data();
  p.B = B.v.data(), p.C = C.v.data();
  p.B_batch_stride = p.C_batch_stride = L * G * N;
  p.B_seq_stride = p.C_seq_stride = G * N;
  p.B_group_stride = p.C_group_stride = 1;
  p.B_state_stride = p.C_state_stride = G;
  if (k.D) p.D = D.v.data(), p.D_has_hdim = k.D == 2;
  if (k.z) {
    p.z = z.v.data();
    p.z_batch_stride = L * H * P, p.z_seq_stride = H * P, p.z_head_stride = P, p.z_dim_stride = 1;
  }
  if (k.bias) p.dt_bias = bias.v.data();
  p.num_seqs = d.nseq, p.num_chunks = d.chunks, p.seqs = d.seqs.data();
  if (k.init) {
    p.initial_states = init.v.data();
    p.init_row_stride = H * P * N, p.init_head_stride = P * N;
    p.init_dim_stride = 1, p.init_state_stride = P;
  }
  bp.dout = dout.v.data();
  bp.dout_batch_stride = L * H * P, bp.dout_seq_stride = H * P;
  bp.dout_head_stride = 1, bp.dout_dim_stride = H;
  if (k.dfinal) bp.dfinal_states = dfin.v.data();
  bp.dx = dx.v.data(), bp.ddt = ddt.v.data(), bp.dA = dA.v.data();
  bp.dB = dB.v.data(), bp.dC = dC.v.data();
  if (k.D) bp.dD = dD.v.data();
  if (k.z) bp.dz = dz.v.data();
  if (k.bias) bp.ddt_bias = dbias.v.data();
  if (k.init) bp.dinitial_states = dinit.v.data();
  bp.workspace = ws.data();
  nemocore::cuda::ssd_bwd(bp);

  expect_grad(dx, want.dx, tol, "dx");
  expect_grad(ddt, want.ddt, tol, "ddt");
  expect_grad(dA, want.dA, tol, "dA");
  expect_grad(dB, want.dB, tol, "dB");
  expect_grad(dC, want.dC, tol, "dC");
  if (k.D) expect_grad(dD, want.dD, tol, "dD");
  if (k.z) expect_grad(dz, want.dz, tol, "dz");
  if (k.bias) expect_grad(dbias, want.dbias, tol, "ddt_bias");
  if (k.init) expect_grad(dinit, want.dinit, tol, "dinitial_states");
  for (auto* buf : {&dx, &dz, &dB, &dC}) buf->check_sentinels("io grad sentinel");
  for (auto* buf : {&ddt, &dA, &dD, &dbias, &dinit}) buf->check_sentinels("acc grad sentinel");
}

int main(int argc, char**) {
  const bool quick = argc > 1;
  // (b, L, H, P, G, N, Q, z, D, init, softplus, limit, bias, dfinal, packed)
  std::vector<Case> cases = {
      // packed row with per-sequence states, chunk tails, D (H,), clamp, ngroups < nheads
      {2, 37, 4, 5, 2, 7, 8, true, 1, true, true, true, true, true, true},
      // chunks longer than a 32-step tile, P and N past one tile, D (H, P), ngroups 1
      {1, 70, 2, 33, 1, 35, 64, true, 2, true, true, false, true, false, true},
      // seqlen 1, chunk > seqlen, no z, D, init, bias, softplus; ngroups = nheads
      {2, 1, 2, 3, 2, 4, 16, false, 0, false, false, false, false, true, false},
      // chunk > seqlen, no packing, dfinal without initial states
      {1, 20, 3, 4, 3, 6, 32, false, 2, false, true, true, false, true, false},
  };
  if (!quick)
    cases.push_back({3, 130, 4, 40, 2, 70, 48, true, 2, true, true, true, true, true, true});
  check_reference({1, 9, 2, 3, 1, 4, 4, true, 2, true, true, true, true, true, true});
  check_reference({1, 9, 2, 3, 2, 4, 4, true, 1, true, false, false, true, true, true});
  for (const Case& k : cases) {
    test_bwd<double>(k, 1e-9);
    test_bwd<float>(k, 2e-4);
    test_bwd<__nv_bfloat16>(k, 2e-2);
    test_bwd<__half>(k, 5e-3);
  }
  printf("%s (%d failures in %d checks)\n", failures ? "FAILED" : "OK", failures, checks);
  return failures ? 1 : 0;
}
