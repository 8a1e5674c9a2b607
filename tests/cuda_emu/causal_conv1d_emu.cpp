// Host test of the CUDA conv1d kernels through the emulator (emu.h): the real kernel source of
// csrc/cuda/causal_conv1d.cu, compiled by the host compiler, runs every path (seq, channel-last,
// generic; every dtype; fwd, bwd, update) against a naive double-precision reference written
// from nemocore/causal_conv1d.h, with sentinels around every output. CI has no GPU: this is how
// it checks the CUDA kernels' indexing, halos, barriers and reductions. It cannot check real
// concurrency or speed; the CUDA tests in tests/ops do that on a GPU.
// Build: see tests/test_cuda_emulated.py. Run with any argument for the quick suite.
#include "emu.h"
#include "cuda/causal_conv1d.cu"

#include <algorithm>
#include <functional>
#include <random>
#include <set>

using namespace nemocore;
using nemocore::cuda::acc_t;

static std::mt19937_64 rng(1234);
static double randn() { static std::normal_distribution<double> d(0.0, 1.0); return d(rng); }

template <typename T> double to_d(T v) { return static_cast<double>(nemocore::cuda::to_acc(v)); }
template <typename T> T from_d(double v) { return nemocore::cuda::from_acc<T>(static_cast<acc_t<T>>(v)); }

enum Kind { kContig, kChannelLast, kStrided, kMisaligned };
static const char* kind_name(Kind k) {
  return k == kContig ? "contig" : k == kChannelLast ? "cl" : k == kStrided ? "strided" : "misaligned";
}

constexpr double kSentinel = 777.0;

// A (n0, n1, n2) view into a host buffer with slack, sentinel-filled outside the view.
template <typename T>
struct T3 {
  std::vector<T> buf;
  int64_t off = 0, s0 = 0, s1 = 0, s2 = 0, n0 = 0, n1 = 0, n2 = 0;
  std::vector<char> inview;
  T* data() { return buf.data() + off; }
  int64_t idx(int64_t i, int64_t j, int64_t k) const { return off + i * s0 + j * s1 + k * s2; }
  double get(int64_t i, int64_t j, int64_t k) const { return to_d(buf[idx(i, j, k)]); }
  void set(int64_t i, int64_t j, int64_t k, double v) { buf[idx(i, j, k)] = from_d<T>(v); }
};

template <typename T>
T3<T> make(int64_t n0, int64_t n1, int64_t n2, Kind kind, bool random) {
  T3<T> t;
  t.n0 = n0, t.n1 = n1, t.n2 = n2;
  int64_t size = 0;
  switch (kind) {
    case kContig: case kMisaligned:
      t.s0 = n1 * n2, t.s1 = n2, t.s2 = 1, size = n0 * n1 * n2; break;
    case kChannelLast:
      t.s0 = n1 * n2, t.s1 = 1, t.s2 = n1, size = n0 * n1 * n2; break;
    case kStrided:
      t.s0 = n1 * 2 * n2, t.s1 = 2 * n2, t.s2 = 2, size = n0 * n1 * 2 * n2; break;
  }
  t.off = kind == kMisaligned ? 1 : 0;
  t.buf.assign(size + t.off + 40, from_d<T>(kSentinel));
  t.inview.assign(t.buf.size(), 0);
  for (int64_t i = 0; i < n0; ++i)
    for (int64_t j = 0; j < n1; ++j)
      for (int64_t k = 0; k < n2; ++k) {
        t.inview[t.idx(i, j, k)] = 1;
        if (random) t.set(i, j, k, randn());
      }
  return t;
}

static int failures = 0;
static std::string ctx;

template <typename T>
void check_sentinels(const T3<T>& t, const char* name) {
  for (size_t i = 0; i < t.buf.size(); ++i) {
    if (!t.inview[i] && to_d(t.buf[i]) != to_d(from_d<T>(kSentinel))) {
      if (failures++ < 20) printf("FAIL %s: %s written outside its view at %zu\n", ctx.c_str(), name, i);
      return;
    }
  }
}

template <typename T> struct Tol;
template <> struct Tol<float> { static constexpr double out = 1e-6, acc = 2e-6; };
template <> struct Tol<double> { static constexpr double out = 1e-15, acc = 1e-13; };
template <> struct Tol<__half> { static constexpr double out = 1.0 / 1024, acc = 2e-6; };
template <> struct Tol<__nv_bfloat16> { static constexpr double out = 1.0 / 128, acc = 2e-6; };

template <typename T>
void expect(double got, double want, double mag, bool io, const char* name, int64_t i, int64_t j, int64_t k) {
  const double tol = (io ? Tol<T>::out * std::abs(want) : 0.0) + Tol<T>::acc * (mag + 1.0) + 1e-30;
  if (!(std::abs(got - want) <= tol)) {
    if (failures++ < 20)
      printf("FAIL %s: %s[%ld,%ld,%ld] got %.9g want %.9g (tol %.3g)\n", ctx.c_str(), name, (long)i,
             (long)j, (long)k, got, want, tol);
  }
}

struct Opts {
  bool silu, bias, seq, init, fin;
};

template <typename T>
void run_fwd_bwd(int64_t B, int64_t C, int64_t L, int64_t K, Kind kind, Opts o) {
  using A = acc_t<T>;
  char buf[256];
  snprintf(buf, sizeof buf, "%s B=%ld C=%ld L=%ld K=%ld %s silu=%d bias=%d seq=%d init=%d fin=%d",
           dtype_name(std::is_same_v<T, float> ? DType::kFloat32 : std::is_same_v<T, double> ? DType::kFloat64
                      : std::is_same_v<T, __half> ? DType::kFloat16 : DType::kBFloat16),
           (long)B, (long)C, (long)L, (long)K, kind_name(kind), o.silu, o.bias, o.seq, o.init, o.fin);
  ctx = buf;
  auto x = make<T>(B, C, L, kind, true);
  std::vector<A> w(C * K), bias(C);
  for (auto& v : w) v = static_cast<A>(randn() / K);
  for (auto& v : bias) v = static_cast<A>(randn());
  std::vector<int32_t> seq(B * L);
  for (int64_t b = 0; b < B; ++b) {
    int32_t id = 0;
    int64_t left = 1 + rng() % 5;
    for (int64_t t = 0; t < L; ++t) {
      if (left-- == 0) { ++id; left = rng() % 3 == 0 ? 0 : rng() % 7; }
      seq[b * L + t] = id;
    }
  }
  const Kind skind = kind == kStrided ? kChannelLast : kContig;  // vary the state layouts too
  auto init = make<T>(B, C, K - 1, skind, true);
  auto out = make<T>(B, C, L, kind, false);
  auto fin = make<T>(B, C, K - 1, skind, false);

  CausalConv1dFwdParams p;
  p.batch = B, p.dim = C, p.seqlen = L, p.width = K;
  p.io_dtype = std::is_same_v<T, float> ? DType::kFloat32 : std::is_same_v<T, double> ? DType::kFloat64
               : std::is_same_v<T, __half> ? DType::kFloat16 : DType::kBFloat16;
  p.silu = o.silu;
  p.x = x.data(), p.x_batch_stride = x.s0, p.x_dim_stride = x.s1, p.x_seq_stride = x.s2;
  p.weight = w.data();
  p.bias = o.bias ? bias.data() : nullptr;
  if (o.seq) p.seq_idx = seq.data(), p.seq_idx_batch_stride = L, p.seq_idx_seq_stride = 1;
  if (o.init) {
    p.initial_states = init.data();
    p.init_batch_stride = init.s0, p.init_dim_stride = init.s1, p.init_seq_stride = init.s2;
  }
  p.out = out.data(), p.out_batch_stride = out.s0, p.out_dim_stride = out.s1, p.out_seq_stride = out.s2;
  if (o.fin) {
    p.final_states = fin.data();
    p.final_batch_stride = fin.s0, p.final_dim_stride = fin.s1, p.final_seq_stride = fin.s2;
  }
  emu_kernel_names.clear();
  nemocore::cuda::causal_conv1d_fwd(p);
  ctx += " [";
  for (auto& n : emu_kernel_names) ctx += n + " ";
  ctx += "]";

  // Reference.
  auto in = [&](int64_t b, int64_t c, int64_t t) -> double {
    if (t >= 0) return t < L ? x.get(b, c, t) : 0.0;
    if (!o.init || t < -(K - 1)) return 0.0;
    return init.get(b, c, t + K - 1);
  };
  auto id = [&](int64_t b, int64_t t) -> int32_t {
    if (!o.seq || L == 0) return 0;
    return seq[b * L + std::clamp<int64_t>(t, 0, L - 1)];
  };
  auto pre = [&](int64_t b, int64_t c, int64_t u, double* mag) {
    double acc = o.bias ? bias[c] : 0.0, m = std::abs(acc);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t t = u - (K - 1) + k;
      if (id(b, t) == id(b, u)) { acc += w[c * K + k] * in(b, c, t); m += std::abs(w[c * K + k] * in(b, c, t)); }
    }
    if (mag) *mag = m;
    return acc;
  };
  auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t u = 0; u < L; ++u) {
        double mag;
        const double pr = pre(b, c, u, &mag);
        const double y = o.silu ? pr * sig(pr) : pr;
        expect<T>(out.get(b, c, u), y, mag, true, "out", b, c, u);
      }
      if (o.fin)
        for (int64_t j = 0; j < K - 1; ++j) expect<T>(fin.get(b, c, j), in(b, c, L - (K - 1) + j), 0, true, "final", b, c, j);
    }
  check_sentinels(out, "out");
  if (o.fin) check_sentinels(fin, "final");

  // Backward.
  auto dout = make<T>(B, C, L, kind == kMisaligned ? kContig : kind, true);
  auto dfinal = make<T>(B, C, K - 1, skind, true);
  auto dx = make<T>(B, C, L, kind, false);
  auto dinit = make<T>(B, C, K - 1, skind, false);
  std::vector<A> dw(C * K, A(0)), db(C, A(0));
  CausalConv1dBwdParams bp;
  bp.fwd = p;
  bp.fwd.out = nullptr, bp.fwd.final_states = nullptr;
  bp.dout = dout.data(), bp.dout_batch_stride = dout.s0, bp.dout_dim_stride = dout.s1, bp.dout_seq_stride = dout.s2;
  if (o.fin) {
    bp.dfinal_states = dfinal.data();
    bp.dfinal_batch_stride = dfinal.s0, bp.dfinal_dim_stride = dfinal.s1, bp.dfinal_seq_stride = dfinal.s2;
  }
  bp.dx = dx.data(), bp.dx_batch_stride = dx.s0, bp.dx_dim_stride = dx.s1, bp.dx_seq_stride = dx.s2;
  bp.dweight = dw.data();
  bp.dbias = o.bias ? db.data() : nullptr;
  if (o.init) {
    bp.dinitial_states = dinit.data();
    bp.dinit_batch_stride = dinit.s0, bp.dinit_dim_stride = dinit.s1, bp.dinit_seq_stride = dinit.s2;
  }
  emu_kernel_names.clear();
  nemocore::cuda::causal_conv1d_bwd(bp);
  ctx = buf;
  ctx += " bwd [";
  for (auto& n : emu_kernel_names) ctx += n + " ";
  ctx += "]";

  auto dpre = [&](int64_t b, int64_t c, int64_t u, double* mag) -> double {
    if (u < 0 || u >= L) { if (mag) *mag = 0; return 0.0; }
    double m;
    const double pr = pre(b, c, u, &m);
    const double dy = dout.get(b, c, u);
    if (!o.silu) { if (mag) *mag = std::abs(dy); return dy; }
    const double s = sig(pr);
    const double g = dy * s * (1 + pr * (1 - s));
    if (mag) *mag = std::abs(dy) * (1 + m);
    return g;
  };
  auto dx_ext = [&](int64_t b, int64_t c, int64_t pos, double* mag) {
    double acc = 0, m = 0;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t u = pos + (K - 1) - k;
      if (u >= 0 && u < L && id(b, pos) == id(b, u)) {
        double dm;
        const double d = dpre(b, c, u, &dm);
        acc += w[c * K + k] * d;
        m += std::abs(w[c * K + k]) * dm;
      }
    }
    const int64_t slot = pos - (L - (K - 1));
    if (o.fin && slot >= 0) { acc += dfinal.get(b, c, slot); m += std::abs(dfinal.get(b, c, slot)); }
    *mag = m;
    return acc;
  };
  std::vector<double> rdw(C * K, 0.0), rdb(C, 0.0), mdw(C * K, 0.0), mdb(C, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t t = 0; t < L; ++t) {
        double mag;
        const double want = dx_ext(b, c, t, &mag);
        expect<T>(dx.get(b, c, t), want, mag, true, "dx", b, c, t);
      }
      if (o.init)
        for (int64_t j = 0; j < K - 1; ++j) {
          double mag;
          const double want = dx_ext(b, c, j - (K - 1), &mag);
          expect<T>(dinit.get(b, c, j), want, mag, true, "dinit", b, c, j);
        }
      for (int64_t u = 0; u < L; ++u) {
        double dm;
        const double d = dpre(b, c, u, &dm);
        for (int64_t k = 0; k < K; ++k) {
          const int64_t t = u - (K - 1) + k;
          if (id(b, t) == id(b, u)) { rdw[c * K + k] += d * in(b, c, t); mdw[c * K + k] += dm * std::abs(in(b, c, t)); }
        }
        rdb[c] += d, mdb[c] += dm;
      }
    }
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t k = 0; k < K; ++k) expect<T>(dw[c * K + k], rdw[c * K + k], mdw[c * K + k], false, "dweight", c, k, 0);
    if (o.bias) expect<T>(db[c], rdb[c], mdb[c], false, "dbias", c, 0, 0);
    else if (db[c] != 0 && failures++ < 20) { printf("FAIL %s: dbias written without bias\n", ctx.c_str()); }
  }
  check_sentinels(dx, "dx");
  if (o.init) check_sentinels(dinit, "dinit");
}

template <typename T>
void run_update(int64_t B, int64_t C, int64_t s, int64_t K, int64_t S, int64_t pool, bool circ, bool indices,
                bool silu, bool bias_on, Kind kind) {
  using A = acc_t<T>;
  char buf[200];
  snprintf(buf, sizeof buf, "update B=%ld C=%ld s=%ld K=%ld S=%ld circ=%d idx=%d %s", (long)B, (long)C, (long)s,
           (long)K, (long)S, circ, indices, kind_name(kind));
  ctx = buf;
  auto x = make<T>(B, C, s, kind, true);
  auto state = make<T>(pool, C, S, kind == kChannelLast ? kContig : kind, true);
  auto state0 = state;
  auto out = make<T>(B, C, s, kind, false);
  std::vector<A> w(C * K), bias(C);
  for (auto& v : w) v = static_cast<A>(randn() / K);
  for (auto& v : bias) v = static_cast<A>(randn());
  std::vector<int32_t> seqlens(B), idx(B);
  std::vector<int64_t> perm(pool);
  for (int64_t i = 0; i < pool; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  for (int64_t b = 0; b < B; ++b) {
    seqlens[b] = static_cast<int32_t>(rng() % 20);
    idx[b] = indices ? (rng() % 4 == 0 ? -1 : static_cast<int32_t>(perm[b])) : static_cast<int32_t>(b);
  }
  CausalConv1dUpdateParams p;
  p.batch = B, p.dim = C, p.seqlen = s, p.width = K, p.state_len = S;
  p.io_dtype = std::is_same_v<T, float> ? DType::kFloat32 : std::is_same_v<T, double> ? DType::kFloat64
               : std::is_same_v<T, __half> ? DType::kFloat16 : DType::kBFloat16;
  p.silu = silu;
  p.x = x.data(), p.x_batch_stride = x.s0, p.x_dim_stride = x.s1, p.x_seq_stride = x.s2;
  p.conv_state = state.data();
  p.state_batch_stride = state.s0, p.state_dim_stride = state.s1, p.state_seq_stride = state.s2;
  p.weight = w.data();
  p.bias = bias_on ? bias.data() : nullptr;
  p.cache_seqlens = circ ? seqlens.data() : nullptr;
  p.conv_state_indices = indices ? idx.data() : nullptr;
  p.out = out.data(), p.out_batch_stride = out.s0, p.out_dim_stride = out.s1, p.out_seq_stride = out.s2;
  nemocore::cuda::causal_conv1d_update(p);

  auto ref_state = state0;
  auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  std::set<int64_t> owned;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t slot = idx[b];
    if (slot < 0) {
      for (int64_t c = 0; c < C; ++c)
        for (int64_t t = 0; t < s; ++t)
          if (to_d(out.buf[out.idx(b, c, t)]) != to_d(from_d<T>(kSentinel)) && failures++ < 20) printf("FAIL %s: padded row written\n", ctx.c_str());
      continue;
    }
    owned.insert(slot);
    const int64_t n = seqlens[b];
    for (int64_t c = 0; c < C; ++c) {
      std::vector<double> win;
      for (int64_t j = 0; j < K - 1; ++j) {
        const int64_t col = circ ? (((n - (K - 1) + j) % S) + S) % S : S - (K - 1) + j;
        win.push_back(state0.get(slot, c, col));
      }
      for (int64_t t = 0; t < s; ++t) win.push_back(x.get(b, c, t));
      for (int64_t t = 0; t < s; ++t) {
        double acc = bias_on ? bias[c] : 0, mag = std::abs(acc);
        for (int64_t k = 0; k < K; ++k) acc += w[c * K + k] * win[t + k], mag += std::abs(w[c * K + k] * win[t + k]);
        expect<T>(out.get(b, c, t), silu ? acc * sig(acc) : acc, mag, true, "out", b, c, t);
      }
      std::vector<double> st(S);
      for (int64_t j = 0; j < S; ++j) st[j] = state0.get(slot, c, j);
      if (circ) {
        for (int64_t t = 0; t < s; ++t) if (S > 0) st[(n + t) % S] = x.get(b, c, t);
      } else {
        std::vector<double> all(st);
        for (int64_t t = 0; t < s; ++t) all.push_back(x.get(b, c, t));
        for (int64_t j = 0; j < S; ++j) st[j] = all[all.size() - S + j];
      }
      for (int64_t j = 0; j < S; ++j) ref_state.set(slot, c, j, st[j]);
    }
  }
  for (size_t i = 0; i < state.buf.size(); ++i)
    if (to_d(state.buf[i]) != to_d(ref_state.buf[i])) {
      if (failures++ < 20) printf("FAIL %s: state differs at %zu: %g vs %g\n", ctx.c_str(), i, to_d(state.buf[i]), to_d(ref_state.buf[i]));
      break;
    }
  check_sentinels(out, "out-slack");
}

template <typename T>
void suite(bool quick) {
  struct Shape { int64_t B, C, L, K; };
  std::vector<Shape> shapes = {
      {2, 5, 37, 4}, {1, 3, 1, 4}, {3, 4, 2, 4}, {1, 2, 0, 4}, {0, 3, 5, 4}, {2, 3, 19, 1},
      {1, 3, 40, 7}, {2, 3, 37, 2}, {2, 3, 37, 3}, {1, 2, 2100, 4}, {2, 16, 67, 4}, {2, 70, 130, 4},
      {1, 9, 70, 3}, {1, 2, 2056, 4}, {1, 8, 16, 8}, {1, 1, 3, 4}, {1, 16, 64, 4}, {2, 40, 33, 2},
      {2, 8, 64, 2}, {2, 24, 48, 3}, {1, 16, 2112, 3}, {1, 16, 1040, 2},
  };
  int n = 0;
  for (const auto& sh : shapes)
    for (Kind kind : {kContig, kChannelLast, kStrided, kMisaligned}) {
      if (quick && kind == kStrided && sh.C * sh.L > 2000) continue;
      for (int variant = 0; variant < 4; ++variant) {
        Opts o;
        o.silu = variant & 1;
        o.bias = variant != 2;
        o.seq = variant == 1 || variant == 3;
        o.init = variant >= 2;
        o.fin = variant != 1;
        if (quick && sh.C * sh.L > 5000 && variant > 1) continue;
        run_fwd_bwd<T>(sh.B, sh.C, sh.L, sh.K, kind, o);
        ++n;
      }
    }
  for (Kind kind : {kContig, kChannelLast, kStrided, kMisaligned})
    for (int64_t K : {1, 2, 4, 5})
      for (int64_t S : {K - 1, K, int64_t{9}})
        for (int64_t s : {1, 2, 5, 12}) {
          if (S == 0 && K > 1) continue;
          for (int mode = 0; mode < 3; ++mode)
            run_update<T>(5, 7, s, K, S, 8, mode >= 1, mode == 2, (s + K) % 2 == 0, mode != 1, kind);
        }
  printf("%s: %d fwd/bwd cases\n", typeid(T).name(), n);
}

#include <map>
int main(int argc, char** argv) {
  const bool quick = argc > 1;
  suite<float>(quick);
  suite<double>(quick);
  suite<__nv_bfloat16>(quick);
  suite<__half>(quick);
  std::map<std::string, int> inst;
  for (auto& [k, v] : emu_counts) inst[k.substr(0, k.find('#'))]++;
  for (auto& [k, v] : inst) printf("  %s: %d instantiations run\n", k.c_str(), v);
  printf("%s (%d failures, %ld launches, %ld barrier waits)\n", failures ? "FAILED" : "OK", failures,
         emu_launches, emu.barriers);
  return failures ? 1 : 0;
}
