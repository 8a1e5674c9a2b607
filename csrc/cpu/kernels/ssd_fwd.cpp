// Mamba-2 SSD chunked scan on the CPU: forward (kernels.md 2.2, 2.9).
//
// Three phases, each one level of parallelism:
//   1. (chunk, group, heads) items: dt processing, cumsums, each chunk's own state (ssd_common.h)
//   2. (sequence, head) items: sequential state passing over the sequence's chunks
//   3. (chunk, group, heads) items: the outputs. C B^T is computed once per item and reused by
//      its heads; per head, y = exp(acs) * (C @ Sin^T) + (C B^T o E o dt) @ x, the second
//      product lower-triangular (the masked half is skipped), then the D term and the gate.
// A chunk's operands (x, B, C: Q x (P + 2N)) and its Q x Q matrices stay in L2 while all of its
// products run; the products are the register-blocked GEMM of ssd_gemm.h, in fp32 (fp64 for
// fp64 inputs) whatever the input dtype.
#include "cpu/kernels/ssd_common.h"

namespace nemocore::cpu::NEMOCORE_CPU_ISA {
namespace {

using namespace ssd;

// y *= silu(z) on the chunk rows of head h.
template <typename T, typename A>
void gate(const SsdFwdParams& p, const Dims& d, const ChunkRef& ref, int64_t h, A* Y, A* Zbuf) {
  load_rows<T>(p.z, p.z_batch_stride, p.z_seq_stride, p.z_head_stride, p.z_dim_stride, ref, h, d.P,
               Zbuf);
  for (int64_t i = 0; i < ref.len * d.P; ++i) Y[i] *= silu<A>(Zbuf[i]);
}

template <typename T, typename A>
void chunk_outputs(const SsdFwdParams& p, const Dims& d, Workspace<A>& ws) {
  const HeadBlocks hb(ws.num_chunks() * d.G, d.hpg, p.num_threads);
  parallel_for(ws.num_chunks() * d.G * hb.blocks, p.num_threads, [&](int64_t item) {
    const int64_t c = item / (d.G * hb.blocks), g = item / hb.blocks % d.G;
    const int64_t h0 = g * d.hpg + item % hb.blocks * hb.size;
    const int64_t h1 = std::min(h0 + hb.size, (g + 1) * d.hpg);
    const ChunkRef& ref = ws.chunks[c];
    const int64_t len = ref.len;
    std::vector<A> Cc(len * d.N), Bt(d.N * len), CB(len * len, A(0)), M(len * len);
    std::vector<A> X(len * d.P), Y(len * d.P), Z(p.z ? len * d.P : 0);
    load_rows<T>(p.C, p.C_batch_stride, p.C_seq_stride, p.C_group_stride, p.C_state_stride, ref, g,
                 d.N, Cc.data());
    {
      std::vector<A> Bc(len * d.N);
      load_rows<T>(p.B, p.B_batch_stride, p.B_seq_stride, p.B_group_stride, p.B_state_stride, ref,
                   g, d.N, Bc.data());
      transpose(Bc.data(), len, d.N, Bt.data());
    }
    gemm_acc<A>(len, len, d.N, Cc.data(), d.N, 1, Bt.data(), len, CB.data(), len);
    T* out = static_cast<T*>(p.out);
    for (int64_t h = h0; h < h1; ++h) {
      load_rows<T>(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride, p.x_dim_stride, ref, h,
                   d.P, X.data());
      head_output<A>(d, len, Cc.data(), CB.data(), ws.state_of(c, h, d), ws.dt_of(c, h, d),
                     ws.acs_of(c, h, d), X.data(), M.data(), Y.data());
      add_skip<A>(p, d, len, h, X.data(), Y.data());
      if (p.z) gate<T, A>(p, d, ref, h, Y.data(), Z.data());
      for (int64_t i = 0; i < len; ++i) {
        T* dst = out + ((ref.row * p.seqlen + ref.t0 + i) * d.H + h) * d.P;
        store_row(Y.data() + i * d.P, d.P, dst, 1);
      }
    }
  });
}

template <typename T>
void fwd_impl(const SsdFwdParams& params) {
  using A = AccOf<T>;
  SsdFwdParams p = params;
  const Dims d(p);
  p.num_threads = threads_for(
      p.num_threads, double(p.batch) * p.seqlen * d.H * d.P * (std::min(d.Q, p.seqlen) + 2 * d.N));
  Workspace<A> ws(p, d);
  chunk_states<T, A>(p, d, ws);
  pass_states<A>(p, d, ws, static_cast<A*>(p.final_states));
  chunk_outputs<T, A>(p, d, ws);
}

}  // namespace

void ssd_fwd(const SsdFwdParams& p) {
  dispatch_io(p.io_dtype, "x", [&](auto t) { fwd_impl<decltype(t)>(p); });
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA
