// Host test of the CUDA decode attention kernels (csrc/cuda/attention_decode.cu) through the
// emulator (emu.h): their real source, compiled by the host compiler, against plain float64
// softmax attention over the explicitly concatenated keys [K_ctx[c(i), j, :ctx_len(c)] ;
// K_dec[i, j, :visible(i, t)]] of nemocore/attention.h, with sentinels after every output and a
// NaN-filled workspace (the kernels must not read what they did not write). Covers MHA, GQA and
// MQA, q_len 1 and 5, tails, no context, ragged dec_lens (0, < q_len, queries with no key at
// all), several contexts, strided inputs, split-KV at batch 1, and every io dtype.
// Build: see tests/test_cuda_emulated.py.
#include "emu.h"  // first: it stands in for the CUDA runtime

#include "cuda/attention_decode.cu"

#include <algorithm>
#include <array>
#include <limits>
#define EMU_SEED 7
#include "emu_suite.h"

using namespace nemocore;

static void expect_close(double got, double want, double tol, const char* what, int64_t i) {
  ++checks;
  if (std::isinf(want) && got == want) return;
  if (std::fabs(got - want) <= tol * (1.0 + std::fabs(want))) return;
  if (++failures <= 20) printf("FAIL %s[%ld]: got %.9g want %.9g\n", what, long(i), got, want);
}

// A 4-d tensor stored in a buffer with the given strides, followed by sentinels.
template <typename T>
struct Tensor {
  int64_t size[4] = {0, 0, 0, 0}, stride[4] = {0, 0, 0, 0};
  std::vector<T> v;
  // perm lists the axes from the outermost to the innermost in memory; pad adds unused elements
  // after each row of the innermost axis.
  Tensor(std::initializer_list<int64_t> sizes, std::array<int, 4> perm = {0, 1, 2, 3},
         int64_t pad = 0) {
    std::copy(sizes.begin(), sizes.end(), size);
    int64_t s = 1;
    for (int k = 3; k >= 0; --k) {
      stride[perm[k]] = s;
      s *= size[perm[k]] + (k == 3 ? pad : 0);
    }
    v.assign(s + 16, from_d<T>(777.0));
    for (auto& x : v) x = from_d<T>(randn());
  }
  double at(int64_t a, int64_t b, int64_t c, int64_t d) const {
    return to_d(v[a * stride[0] + b * stride[1] + c * stride[2] + d * stride[3]]);
  }
};

struct Case {
  const char* name;
  int64_t b, H, Hkv, T, D;
  int64_t C, Mc;                                       // C = 0: no context
  int64_t Md;                                          // 0: no decoded part
  std::vector<int64_t> ctx_index, ctx_lens, dec_lens;  // empty: null
  bool strided;
};

template <typename T>
void run_case(const Case& k, double tol) {
  using A = acc_t<T>;
  const int64_t b = k.b, H = k.H, Hkv = k.Hkv, T_ = k.T, D = k.D, G = H / Hkv;
  const auto perm_q = k.strided ? std::array<int, 4>{0, 2, 1, 3} : std::array<int, 4>{0, 1, 2, 3};
  const auto perm_k = k.strided ? std::array<int, 4>{0, 2, 1, 3} : std::array<int, 4>{0, 1, 2, 3};
  const auto perm_kd = k.strided ? std::array<int, 4>{0, 1, 3, 2} : std::array<int, 4>{0, 1, 2, 3};
  const int64_t pad = k.strided ? 3 : 0;
  Tensor<T> q({b, H, T_, D}, perm_q, pad);
  Tensor<T> kc({k.C, Hkv, k.Mc, D}, perm_k), vc({k.C, Hkv, k.Mc, D}, {0, 1, 2, 3}, pad);
  Tensor<T> kd({b, Hkv, k.Md, D}, perm_kd), vd({b, Hkv, k.Md, D}, perm_k, pad);
  std::vector<T> out(b * H * T_ * D + 16, from_d<T>(777.0));
  std::vector<A> lse(b * H * T_ + 16, A(777));

  AttentionDecodeParams p;
  p.batch = b, p.nheads = H, p.nkv_heads = Hkv, p.q_len = T_, p.headdim = D;
  p.io_dtype = dtype_of<T>();
  p.scale = 1.0 / std::sqrt(double(D));
  p.q = q.v.data();
  p.q_batch_stride = q.stride[0], p.q_head_stride = q.stride[1];
  p.q_seq_stride = q.stride[2], p.q_dim_stride = q.stride[3];
  if (k.C > 0) {
    p.num_contexts = k.C, p.ctx_len = k.Mc;
    p.k_ctx = kc.v.data(), p.v_ctx = vc.v.data();
    p.kc_ctx_stride = kc.stride[0], p.kc_head_stride = kc.stride[1];
    p.kc_seq_stride = kc.stride[2], p.kc_dim_stride = kc.stride[3];
    p.vc_ctx_stride = vc.stride[0], p.vc_head_stride = vc.stride[1];
    p.vc_seq_stride = vc.stride[2], p.vc_dim_stride = vc.stride[3];
    if (!k.ctx_index.empty()) p.ctx_index = k.ctx_index.data();
    if (!k.ctx_lens.empty()) p.ctx_lens = k.ctx_lens.data();
  }
  if (k.Md > 0) {
    p.max_dec_len = k.Md;
    p.k_dec = kd.v.data(), p.v_dec = vd.v.data();
    p.kd_batch_stride = kd.stride[0], p.kd_head_stride = kd.stride[1];
    p.kd_seq_stride = kd.stride[2], p.kd_dim_stride = kd.stride[3];
    p.vd_batch_stride = vd.stride[0], p.vd_head_stride = vd.stride[1];
    p.vd_seq_stride = vd.stride[2], p.vd_dim_stride = vd.stride[3];
    if (!k.dec_lens.empty()) p.dec_lens = k.dec_lens.data();
  }
  p.out = out.data(), p.lse = lse.data();
  const int64_t elems = nemocore::cuda::attention_decode_cuda_workspace_elems(p);
  std::vector<A> ws(elems + 16, std::numeric_limits<A>::quiet_NaN());
  p.workspace = elems > 0 ? ws.data() : nullptr;
  nemocore::cuda::attention_decode(p);
  // The split case must really cut its segments (split-KV), the wide one use smaller row tiles.
  const auto plan = nemocore::cuda::make_plan(p);
  if ((std::string(k.name) == "split" && (plan.ctx_splits < 2 || plan.dec_splits < 2)) ||
      (std::string(k.name) == "wide" && plan.ctx.bm >= 16)) {
    ++failures;
    printf("FAIL %s: ctx splits %ld, dec splits %ld, rows per block %d\n", k.name,
           long(plan.ctx_splits), long(plan.dec_splits), plan.ctx.bm);
  }

  std::string what_o = std::string(k.name) + " out", what_l = std::string(k.name) + " lse";
  for (int64_t i = 0; i < b; ++i) {
    const int64_t c = k.C == 0 ? -1 : (k.ctx_index.empty() ? 0 : k.ctx_index[i]);
    const int64_t clen = c < 0 ? 0 : (k.ctx_lens.empty() ? k.Mc : k.ctx_lens[c]);
    const int64_t dlen = k.Md == 0 ? 0 : (k.dec_lens.empty() ? k.Md : k.dec_lens[i]);
    for (int64_t h = 0; h < H; ++h) {
      const int64_t j = h / G;
      for (int64_t t = 0; t < T_; ++t) {
        const int64_t vis = std::min(std::max<int64_t>(dlen - T_ + 1 + t, 0), dlen);
        std::vector<double> s;  // scores, then the value rows in the same order
        std::vector<const Tensor<T>*> vsrc;
        std::vector<int64_t> vrow;
        auto score = [&](const Tensor<T>& K, int64_t a, int64_t n) {
          double acc = 0;
          for (int64_t d = 0; d < D; ++d) acc += q.at(i, h, t, d) * K.at(a, j, n, d);
          return acc * p.scale;
        };
        for (int64_t n = 0; n < clen; ++n) s.push_back(score(kc, c, n)), vrow.push_back(n);
        for (int64_t n = 0; n < vis; ++n) s.push_back(score(kd, i, n)), vrow.push_back(~n);
        double m = -INFINITY, l = 0;
        for (double x : s) m = std::max(m, x);
        for (double x : s) l += std::exp(x - m);
        const int64_t row = (i * H + h) * T_ + t;
        const double want_lse = s.empty() ? -INFINITY : m + std::log(l);
        expect_close(double(lse[row]), want_lse, tol, what_l.c_str(), row);
        for (int64_t d = 0; d < D; ++d) {
          double o = 0;
          for (size_t e = 0; e < s.size(); ++e) {
            const double vv = vrow[e] >= 0 ? vc.at(c, j, vrow[e], d) : vd.at(i, j, ~vrow[e], d);
            o += std::exp(s[e] - m) / l * vv;
          }
          expect_close(to_d(out[row * D + d]), o, tol, what_o.c_str(), row * D + d);
        }
      }
    }
  }
  const double sentinel = to_d(from_d<T>(777.0));
  for (size_t e = b * H * T_ * D; e < out.size(); ++e)
    expect_close(to_d(out[e]), sentinel, 0.0, "out sentinel", e);
  for (size_t e = b * H * T_; e < lse.size(); ++e)
    expect_close(double(lse[e]), 777.0, 0.0, "lse sentinel", e);
  for (size_t e = elems; e < ws.size(); ++e) {
    ++checks;
    if (!std::isnan(double(ws[e])) && ++failures <= 20) printf("FAIL workspace overrun\n");
  }
}

static std::vector<Case> cases(bool quick) {
  std::vector<Case> c = {
      // MHA, one position, a context length that is no tile multiple, ragged dec_lens with 0.
      {"mha", 3, 4, 4, 1, 40, 1, 37, 9, {}, {}, {9, 0, 4}, false},
      // GQA 8/2, five positions, a one-key context, dec_lens below q_len, strided q, k and v.
      {"gqa", 4, 8, 2, 5, 32, 1, 1, 12, {}, {}, {12, 3, 0, 7}, true},
      // MQA over two contexts, one of them empty: sample 0 has 2 < q_len decoded keys, so its
      // first three positions see no key at all (out 0, lse -inf).
      {"mqa", 2, 6, 1, 5, 24, 2, 20, 5, {1, 0}, {20, 0}, {2, 5}, false},
      // No context: pure ragged decode, sample 2 with no key at all.
      {"no_ctx", 3, 4, 2, 2, 16, 0, 0, 20, {}, {}, {20, 1, 0}, true},
      // No decoded part, several contexts with their own lengths.
      {"ctx_only", 5, 4, 2, 1, 20, 3, 50, 0, {2, 0, 2, 1, 2}, {50, 17, 33}, {}, false},
      // Two contexts in the tensor but no ctx_index: every sample reads context 0; all Md.
      {"ctx0", 3, 4, 2, 2, 8, 2, 23, 6, {}, {}, {}, true},
      // Batch 1, long context: split-KV over the context and over the decoded keys.
      {"split", 1, 4, 2, 1, 64, 1, 1500, 300, {}, {}, {}, false},
      // A head dim past the 16-row tiles (fewer rows per block).
      {"wide", 2, 2, 1, 3, 300, 1, 40, 7, {}, {}, {7, 2}, true},
  };
  if (!quick) {
    c.push_back(
        {"gqa_big", 8, 32, 8, 5, 128, 1, 700, 40, {}, {}, {40, 5, 0, 39, 1, 20, 4, 33}, true});
    c.push_back({"many_ctx",
                 9,
                 8,
                 2,
                 1,
                 64,
                 4,
                 300,
                 16,
                 {3, 3, 0, 1, 3, 2, 0, 3, 3},
                 {300, 1, 0, 129},
                 {16, 0, 1, 2, 3, 4, 5, 6, 7},
                 false});
  }
  return c;
}

template <typename T>
void run_all(bool quick, double tol) {
  for (const Case& k : cases(quick)) run_case<T>(k, tol);
}

int main(int argc, char**) {
  const bool quick = argc > 1;
  run_all<double>(quick, 1e-12);
  run_all<float>(quick, 2e-5);
  run_all<__nv_bfloat16>(quick, 1e-2);
  run_all<__half>(quick, 2e-3);
  printf("%ld launches\n", emu_launches);
  printf("%s (%d failures in %d checks)\n", failures ? "FAILED" : "OK", failures, checks);
  return failures ? 1 : 0;
}
