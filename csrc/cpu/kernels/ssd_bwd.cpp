// Mamba-2 SSD chunked scan on the CPU: backward (kernels.md 2.6).
//
// Recomputes the cheap forward pieces (dt, cumsums, chunk states, passed states: phases 1-2 of
// the forward) instead of saving them, then:
//   B1 (chunk, group, heads): the gate's gradient (recomputing y when z is given), dy, and each
//      chunk's output-path state gradient dSoff = sum_t exp(acs_t) dy_t C_t^T
//   B2 (sequence, head): reverse state passing G(c - 1) = exp(acs_c[last]) G(c) + dSoff(c) from
//      G(last) = dfinal, where G(c) is the gradient of the state after chunk c; it also gives
//      the gradient of each chunk's total decay and dinitial_states
//   B3 (chunk, group): dx, dB, dC, and the gradient of the cumulative decay acs from its three
//      paths (intra-chunk via C B^T, chunk state, output from the passed state), each formed as
//      a product of bounded factors rather than from ratios of exponentials (kernels.md 2.4);
//      then dt, A, D and dt_bias. dB and dC sum over the group's heads, so B3 keeps all of a
//      group's heads in one item; the per-item sums of dA, dD and ddt_bias are reduced in
//      chunk order afterwards, so results do not depend on the thread count.
#include "cpu/kernels/ssd_bwd_chunk.h"

namespace nemocore::cpu::NEMOCORE_CPU_ISA {
namespace {

using namespace ssd;

template <typename T, typename A>
void output_grads(const SsdBwdParams& bp, const Dims& d, Workspace<A>& ws, Grads<A>& gr) {
  const SsdFwdParams& p = bp.fwd;
  const HeadBlocks hb(ws.num_chunks() * d.G, d.hpg, p.num_threads);
  parallel_for(ws.num_chunks() * d.G * hb.blocks, p.num_threads, [&](int64_t item) {
    const int64_t c = item / (d.G * hb.blocks), g = item / hb.blocks % d.G;
    const int64_t h0 = g * d.hpg + item % hb.blocks * hb.size;
    const int64_t h1 = std::min(h0 + hb.size, (g + 1) * d.hpg);
    const ChunkRef& ref = ws.chunks[c];
    const int64_t len = ref.len, LP = len * d.P;
    std::vector<A> Cc(len * d.N), dY(LP), T1(LP), X, Z, CB, M, Bt;
    load_rows<T>(p.C, p.C_batch_stride, p.C_seq_stride, p.C_group_stride, p.C_state_stride, ref, g,
                 d.N, Cc.data());
    if (p.z) {  // y is needed for dz: recompute it as the forward does
      X.resize(LP), Z.resize(LP), CB.assign(len * len, A(0)), M.resize(len * len);
      Bt.resize(d.N * len);
      std::vector<A> Bc(len * d.N);
      load_rows<T>(p.B, p.B_batch_stride, p.B_seq_stride, p.B_group_stride, p.B_state_stride, ref,
                   g, d.N, Bc.data());
      transpose(Bc.data(), len, d.N, Bt.data());
      gemm_acc<A>(len, len, d.N, Cc.data(), d.N, 1, Bt.data(), len, CB.data(), len);
    }
    for (int64_t h = h0; h < h1; ++h) {
      load_rows<T>(bp.dout, bp.dout_batch_stride, bp.dout_seq_stride, bp.dout_head_stride,
                   bp.dout_dim_stride, ref, h, d.P, dY.data());
      const A* acs = ws.acs_of(c, h, d);
      if (p.z) {
        load_rows<T>(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride, p.x_dim_stride, ref, h,
                     d.P, X.data());
        head_output<A>(d, len, Cc.data(), CB.data(), ws.state_of(c, h, d), ws.dt_of(c, h, d), acs,
                       X.data(), M.data(), T1.data());
        add_skip<A>(p, d, len, h, X.data(), T1.data());
        load_rows<T>(p.z, p.z_batch_stride, p.z_seq_stride, p.z_head_stride, p.z_dim_stride, ref, h,
                     d.P, Z.data());
        T* dz = static_cast<T*>(bp.dz);
        for (int64_t i = 0; i < LP; ++i) {
          const A sg = sigmoid<A>(Z[i]);
          const A dsilu = sg * (A(1) + Z[i] * (A(1) - sg));
          T1[i] = dY[i] * T1[i] * dsilu;  // dz
          dY[i] *= Z[i] * sg;
        }
        for (int64_t t = 0; t < len; ++t) {
          store_row(T1.data() + t * d.P, d.P,
                    dz + ((ref.row * p.seqlen + ref.t0 + t) * d.H + h) * d.P, 1);
        }
      }
      for (int64_t t = 0; t < len; ++t) {
        A* dst = gr.dy.data() + ((ref.row * p.seqlen + ref.t0 + t) * d.H + h) * d.P;
        const A e = exp_acc<A>(acs[t]);
        for (int64_t j = 0; j < d.P; ++j) {
          dst[j] = dY[t * d.P + j];
          T1[t * d.P + j] = e * dY[t * d.P + j];
        }
      }
      A* dsoff = gr.gstate.data() + (c * d.H + h) * d.N * d.P;
      std::fill(dsoff, dsoff + d.N * d.P, A(0));
      gemm_acc<A>(d.N, d.P, len, Cc.data(), 1, d.N, T1.data(), d.P, dsoff, d.P);
    }
  });
}

template <typename A>
void reverse_pass(const SsdBwdParams& bp, const Dims& d, Workspace<A>& ws, Grads<A>& gr) {
  const SsdFwdParams& p = bp.fwd;
  const int64_t NP = d.N * d.P;
  parallel_for(p.num_seqs * d.H, p.num_threads, [&](int64_t item) {
    const int64_t s = item / d.H, h = item % d.H;
    const int64_t* q = p.seqs + s * kSeqColumns;
    std::vector<A> G(NP, A(0));
    if (bp.dfinal_states) {
      const A* src = static_cast<const A*>(bp.dfinal_states) + (s * d.H + h) * NP;
      transpose(src, d.P, d.N, G.data());
    }
    const int64_t first = q[kSeqFirstChunk];
    for (int64_t c = first + ceil_div(q[kSeqEnd] - q[kSeqStart], d.Q) - 1; c >= first; --c) {
      const A decay = exp_acc<A>(ws.acs_of(c, h, d)[ws.chunks[c].len - 1]);
      const A* Sin = ws.state_of(c, h, d);
      A* gs = gr.gstate.data() + (c * d.H + h) * NP;
      gr.ddecay[c * d.H + h] = decay * dot(G.data(), Sin, NP);
      for (int64_t e = 0; e < NP; ++e) {
        const A dsoff = gs[e];
        gs[e] = G[e];
        G[e] = decay * G[e] + dsoff;
      }
    }
    if (bp.dinitial_states && p.initial_states && q[kSeqInitRow] >= 0) {
      A* dst = static_cast<A*>(bp.dinitial_states) + (q[kSeqInitRow] * d.H + h) * NP;
      transpose(G.data(), d.N, d.P, dst);
    }
  });
}

template <typename T>
void bwd_impl(const SsdBwdParams& params) {
  using A = AccOf<T>;
  SsdBwdParams bp = params;
  const SsdFwdParams& p = bp.fwd;
  const Dims d(p);
  bp.fwd.num_threads = threads_for(
      p.num_threads, 3.0 * p.batch * p.seqlen * d.H * d.P * (std::min(d.Q, p.seqlen) + 2 * d.N));
  Workspace<A> ws(p, d);
  chunk_states<T, A>(p, d, ws);
  pass_states<A>(p, d, ws, nullptr);
  Grads<A> gr(p, d, ws.num_chunks());
  output_grads<T, A>(bp, d, ws, gr);
  reverse_pass<A>(bp, d, ws, gr);
  input_grads<T, A>(bp, d, ws, gr);
}

}  // namespace

void ssd_bwd(const SsdBwdParams& p) {
  dispatch_io(p.fwd.io_dtype, "x", [&](auto t) { bwd_impl<decltype(t)>(p); });
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA
