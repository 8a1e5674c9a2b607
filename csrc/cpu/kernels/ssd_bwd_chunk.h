// Phase B3 of the SSD backward (see ssd_bwd.cpp): the gradients of a chunk's inputs. Included
// only by ssd_bwd.cpp.
//
// Per head, with M[t, s] = (C_t . B_s) exp(acs_t - acs_s) for s <= t, G the gradient of the
// state after the chunk (P x N), Sin the state it starts from, el_s = exp(acs[last] - acs_s):
//   dx_s   = dt_s dXraw_s + D dy_s,   dXraw = M^T dy + el * (B G^T)
//   ddt_s += x_s . dXraw_s            (the dt that scales x)
//   dCB    = exp(acs_t - acs_s) dt_s (dy_t . x_s)   (summed over the group's heads)
//   dC    += exp(acs_t) dy Sin + dCB B,   dB += (el dt x) G + dCB^T C
//   dacs_t: + sum_s dCB[t,s] CB[t,s] - sum_s dCB[s,t] CB[s,t]          (intra-chunk)
//           + exp(acs_t) dy_t . (Sin C_t)                               (output from Sin)
//           - dt_t q_t, and + sum_s dt_s q_s at the last step, q_s = el_s x_s . (G B_s)
//           + the state-passing term at the last step (ddecay)
//   da = reverse cumsum of dacs;  ddt += da A;  dA += da . dt
#pragma once

#include "cpu/kernels/ssd_common.h"

namespace nemocore::cpu::NEMOCORE_CPU_ISA::ssd {

// Buffers of the backward beyond the forward's workspace.
template <typename A>
struct Grads {
  std::vector<A> dy;      // (b, L, H, P): gradient of y before the gate
  std::vector<A> gstate;  // (chunks, H, N, P): dSoff after B1, then G(c) after B2
  std::vector<A> ddecay;  // (chunks, H): gradient of acs[last] through state passing
  Grads(const SsdFwdParams& p, const Dims& d, int64_t chunks)
      : dy(p.batch * p.seqlen * d.H * d.P),
        gstate(chunks * d.H * d.N * d.P),
        ddecay(chunks * d.H) {}
};

// Buffers of one B3 work item (one chunk, one group).
template <typename A>
struct ChunkScratch {
  int64_t len;
  std::vector<A> Cc, Bc, Bt, CB, dCB, dCacc, dBacc;                    // group-wide
  std::vector<A> X, Xt, dY, dYX, E, dXraw, BG, CS, Sin, Gm, T1, dacs;  // per head
  const A* GT = nullptr;                                               // the head's G(c)^T (N x P)
  ChunkScratch(const Dims& d, int64_t n)
      : len(n),
        Cc(n * d.N),
        Bc(n * d.N),
        Bt(d.N * n),
        CB(n * n, A(0)),
        dCB(n * n, A(0)),
        dCacc(n * d.N, A(0)),
        dBacc(n * d.N, A(0)),
        X(n * d.P),
        Xt(d.P * n),
        dY(n * d.P),
        dYX(n * n),
        E(n * n),
        dXraw(n * d.P),
        BG(n * d.P),
        CS(n * d.P),
        Sin(d.P * d.N),
        Gm(d.P * d.N),
        T1(n * d.P),
        dacs(n) {}
};

// Per-head partial sums of one item: dA, ddt_bias, dD (P entries per head when D is (H, P)).
template <typename A>
struct HeadSums {
  A dA = 0, ddt_bias = 0;
  std::vector<A> dD;
};

// The intra-chunk path: dCB, its contribution to dacs, and M (into E) for dXraw.
template <typename A>
void intra_chunk(const Dims& d, ChunkScratch<A>& s, const A* dtc, const A* acs) {
  const int64_t len = s.len;
  decay_matrix(acs, len, s.E.data());
  transpose(s.X.data(), len, d.P, s.Xt.data());
  std::fill(s.dYX.begin(), s.dYX.end(), A(0));
  gemm_acc<A>(len, len, d.P, s.dY.data(), d.P, 1, s.Xt.data(), len, s.dYX.data(), len);
  for (int64_t t = 0; t < len; ++t) {
    for (int64_t u = 0; u <= t; ++u) {
      const int64_t i = t * len + u;
      const A dcb = s.E[i] * dtc[u] * s.dYX[i];
      const A w = dcb * s.CB[i];
      s.dCB[i] += dcb;
      s.dacs[t] += w;
      s.dacs[u] -= w;
      s.E[i] *= s.CB[i];
    }
  }
}

// dx, ddt (through the dt processing), the per-head sums, and the head's dC, dB terms.
template <typename T, typename A>
void finish_head(const SsdBwdParams& bp, const Dims& d, Workspace<A>& ws, ChunkScratch<A>& s,
                 int64_t c, int64_t h, HeadSums<A>& sums) {
  const SsdFwdParams& p = bp.fwd;
  const ChunkRef& ref = ws.chunks[c];
  const int64_t len = s.len, last = len - 1;
  const A* dtc = ws.dt_of(c, h, d);
  const A* acs = ws.acs_of(c, h, d);
  for (int64_t t = last - 1; t >= 0; --t) s.dacs[t] += s.dacs[t + 1];  // now d a_t
  const A Ah = static_cast<const A*>(p.A)[h];
  const A bias = p.dt_bias ? static_cast<const A*>(p.dt_bias)[h] : A(0);
  const A lo = static_cast<A>(p.dt_min), hi = static_cast<A>(p.dt_max);
  const A* dt_raw = static_cast<const A*>(p.dt) + ref.row * p.dt_batch_stride;
  const A* D = p.D ? static_cast<const A*>(p.D) + (p.D_has_hdim ? h * d.P : h) : nullptr;
  for (int64_t t = 0; t < len; ++t) {
    const A* xr = s.dXraw.data() + t * d.P;
    const A* xt = s.X.data() + t * d.P;
    const A* dy = s.dY.data() + t * d.P;
    A slope;
    process_dt<A>(dt_raw[(ref.t0 + t) * p.dt_seq_stride + h * p.dt_head_stride], bias,
                  p.dt_softplus, p.has_dt_limit, lo, hi, &slope);
    const A ddt = (dot(xt, xr, d.P) + s.dacs[t] * Ah) * slope;
    sums.dA += s.dacs[t] * dtc[t];
    sums.ddt_bias += ddt;
    static_cast<A*>(bp.ddt)[(ref.row * p.seqlen + ref.t0 + t) * d.H + h] = ddt;
    A* dx = s.T1.data() + t * d.P;
    for (int64_t j = 0; j < d.P; ++j)
      dx[j] = dtc[t] * xr[j] + (D ? D[p.D_has_hdim ? j : 0] : A(0)) * dy[j];
    if (D && p.D_has_hdim) {
      for (int64_t j = 0; j < d.P; ++j) sums.dD[j] += dy[j] * xt[j];
    } else if (D) {
      sums.dD[0] += dot(dy, xt, d.P);
    }
    store_row(dx, d.P, static_cast<T*>(bp.dx) + ((ref.row * p.seqlen + ref.t0 + t) * d.H + h) * d.P,
              1);
  }
  // dC += (exp(acs) dy) Sin;  dB += (el dt x) G.
  transpose(ws.state_of(c, h, d), d.N, d.P, s.Sin.data());
  transpose(s.GT, d.N, d.P, s.Gm.data());
  for (int64_t t = 0; t < len; ++t) {
    const A e = exp_acc<A>(acs[t]), w = exp_acc<A>(acs[last] - acs[t]) * dtc[t];
    for (int64_t j = 0; j < d.P; ++j) {
      s.T1[t * d.P + j] = e * s.dY[t * d.P + j];
      s.Xt[t * d.P + j] = w * s.X[t * d.P + j];  // Xt is free again: reuse it
    }
  }
  gemm_acc<A>(len, d.N, d.P, s.T1.data(), d.P, 1, s.Sin.data(), d.N, s.dCacc.data(), d.N);
  gemm_acc<A>(len, d.N, d.P, s.Xt.data(), d.P, 1, s.Gm.data(), d.N, s.dBacc.data(), d.N);
}

template <typename T, typename A>
void head_grads(const SsdBwdParams& bp, const Dims& d, Workspace<A>& ws, Grads<A>& gr,
                ChunkScratch<A>& s, int64_t c, int64_t h, HeadSums<A>& sums) {
  const SsdFwdParams& p = bp.fwd;
  const ChunkRef& ref = ws.chunks[c];
  const int64_t len = s.len, last = len - 1;
  const A* dtc = ws.dt_of(c, h, d);
  const A* acs = ws.acs_of(c, h, d);
  const A* SinT = ws.state_of(c, h, d);
  const A* GT = gr.gstate.data() + (c * d.H + h) * d.N * d.P;
  s.GT = GT;
  for (int64_t t = 0; t < len; ++t) {
    const A* src = gr.dy.data() + ((ref.row * p.seqlen + ref.t0 + t) * d.H + h) * d.P;
    std::copy(src, src + d.P, s.dY.data() + t * d.P);
  }
  std::fill(s.dacs.begin(), s.dacs.end(), A(0));
  intra_chunk(d, s, dtc, acs);
  // dXraw = M^T dy (upper-triangular a: row s reads t >= s) + el * (B G^T).
  std::fill(s.dXraw.begin(), s.dXraw.end(), A(0));
  gemm_acc<A>(len, d.P, len, s.E.data(), 1, len, s.dY.data(), d.P, s.dXraw.data(), d.P,
              Tri::kUpper);
  std::fill(s.BG.begin(), s.BG.end(), A(0));
  gemm_acc<A>(len, d.P, d.N, s.Bc.data(), d.N, 1, GT, d.P, s.BG.data(), d.P);
  std::fill(s.CS.begin(), s.CS.end(), A(0));
  gemm_acc<A>(len, d.P, d.N, s.Cc.data(), d.N, 1, SinT, d.P, s.CS.data(), d.P);
  for (int64_t t = 0; t < len; ++t) {
    const A el = exp_acc<A>(acs[last] - acs[t]);
    A* xr = s.dXraw.data() + t * d.P;
    const A* xt = s.X.data() + t * d.P;
    const A* bg = s.BG.data() + t * d.P;
    for (int64_t j = 0; j < d.P; ++j) xr[j] += el * bg[j];
    const A q = el * dot(xt, bg, d.P);
    s.dacs[t] -= dtc[t] * q;
    s.dacs[last] += dtc[t] * q;
    s.dacs[t] += exp_acc<A>(acs[t]) * dot(s.dY.data() + t * d.P, s.CS.data() + t * d.P, d.P);
  }
  s.dacs[last] += gr.ddecay[c * d.H + h];
  finish_head<T, A>(bp, d, ws, s, c, h, sums);
}

// B3 over all (chunk, group) items, then the fixed-order reduction of the per-head sums.
template <typename T, typename A>
void input_grads(const SsdBwdParams& bp, const Dims& d, Workspace<A>& ws, Grads<A>& gr) {
  const SsdFwdParams& p = bp.fwd;
  const int64_t items = ws.num_chunks() * d.G;
  const int64_t dD_width = p.D ? (p.D_has_hdim ? d.P : 1) : 0;
  std::vector<HeadSums<A>> sums(items * d.hpg);
  for (auto& hs : sums) hs.dD.assign(dD_width, A(0));
  parallel_for(items, p.num_threads, [&](int64_t item) {
    const int64_t c = item / d.G, g = item % d.G;
    const ChunkRef& ref = ws.chunks[c];
    ChunkScratch<A> s(d, ref.len);
    load_rows<T>(p.C, p.C_batch_stride, p.C_seq_stride, p.C_group_stride, p.C_state_stride, ref, g,
                 d.N, s.Cc.data());
    load_rows<T>(p.B, p.B_batch_stride, p.B_seq_stride, p.B_group_stride, p.B_state_stride, ref, g,
                 d.N, s.Bc.data());
    transpose(s.Bc.data(), ref.len, d.N, s.Bt.data());
    gemm_acc<A>(ref.len, ref.len, d.N, s.Cc.data(), d.N, 1, s.Bt.data(), ref.len, s.CB.data(),
                ref.len);
    for (int64_t k = 0; k < d.hpg; ++k) {
      const int64_t h = g * d.hpg + k;
      load_rows<T>(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride, p.x_dim_stride, ref, h,
                   d.P, s.X.data());
      head_grads<T, A>(bp, d, ws, gr, s, c, h, sums[item * d.hpg + k]);
    }
    // The intra-chunk terms of dC and dB, once for the whole group: dC += dCB B, dB += dCB^T C.
    const int64_t len = ref.len;
    gemm_acc<A>(len, d.N, len, s.dCB.data(), len, 1, s.Bc.data(), d.N, s.dCacc.data(), d.N,
                Tri::kLower);
    gemm_acc<A>(len, d.N, len, s.dCB.data(), 1, len, s.Cc.data(), d.N, s.dBacc.data(), d.N,
                Tri::kUpper);
    for (int64_t t = 0; t < len; ++t) {
      const int64_t off = ((ref.row * p.seqlen + ref.t0 + t) * d.G + g) * d.N;
      store_row(s.dCacc.data() + t * d.N, d.N, static_cast<T*>(bp.dC) + off, 1);
      store_row(s.dBacc.data() + t * d.N, d.N, static_cast<T*>(bp.dB) + off, 1);
    }
  });
  A* dA = static_cast<A*>(bp.dA);
  A* dbias = static_cast<A*>(bp.ddt_bias);
  A* dD = static_cast<A*>(bp.dD);
  std::fill(dA, dA + d.H, A(0));
  if (dbias) std::fill(dbias, dbias + d.H, A(0));
  if (dD) std::fill(dD, dD + d.H * dD_width, A(0));
  for (int64_t item = 0; item < items; ++item) {
    for (int64_t k = 0; k < d.hpg; ++k) {
      const int64_t h = item % d.G * d.hpg + k;
      const HeadSums<A>& hs = sums[item * d.hpg + k];
      dA[h] += hs.dA;
      if (dbias) dbias[h] += hs.ddt_bias;
      for (int64_t j = 0; dD && j < dD_width; ++j) dD[h * dD_width + j] += hs.dD[j];
    }
  }
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA::ssd
