// Mamba-2 SSD chunked scan on CUDA: forward (kernels.md 2.2), the same chunks, sequence table
// and outputs as csrc/cpu/kernels/ssd_fwd.cpp.
//
// Four kernels on p.stream, the workspace (SsdFwdParams::workspace, acc) holding per
// (chunk, head) the processed dt and its in-chunk cumsum acs, (chunks, H, Q) each, and the
// chunk states, (chunks, H, P, N):
//   1. dt_kernel      one thread per (chunk, head): dt processing and the sequential cumsum
//                     (the CPU's order of additions)
//   2. state_kernel   one block per (chunk, head, 32 x 32 tile of P x N): the chunk's own state
//                     Sc[p, n] = sum_s exp(acs[last] - acs[s]) dt_s x_s[p] B_s[n]
//   3. pass_kernel    one thread per (sequence, head, state element), sequential over the
//                     sequence's chunks: Sc(c) is replaced in place by the state chunk c starts
//                     from, Sin(c+1) = exp(acs_c[last]) Sin(c) + Sc(c); the last is the final state
//   4. output_kernel  one block per (chunk, head, 32 rows of the chunk, 32 columns of P):
//                     y = exp(acs) (C Sin^T) + (C B^T o E o dt) x + D x, gated by silu(z), where
//                     E[l, s] = exp(acs[l] - acs[s]) for s <= l and 0 above the diagonal
//
// Every product is a 32 x 32 output tile per block of 256 threads, with the operands staged
// through shared memory in 32-wide slices along the reduction. Out-of-range rows and columns
// are loaded as zeros, so tails (chunk lengths, P and N of any size) need no other masking.
//   fp32 / fp64 io: SIMT FMAs in the compute type, each thread owning one column and four rows
//     (ty, ty + 8, ty + 16, ty + 24); slices padded to 33 against bank conflicts.
//   bf16 / fp16 io: tensor cores (mma.sync m16n8k16, cuda/common/mma.cuh; sm_80+) for the
//     state kernel's (x o w)^T B and all three products of the output kernel (C B^T, the
//     masked, decayed (Q x Q) matrix times x, C Sin^T), each warp one 16 x 8 tile, fp32
//     accumulators; slices [32][40] in the io type. C, B and x are exact in the io type. The
//     fp32 operands (the scaled x o w, the passed state Sin, and CB o E o dt, formed in fp32
//     from the fp32 CB) are split as hi + lo, each rounded to the io type, and multiplied by
//     two mmas: one rounding would make the error up to ~2x plain PyTorch's (fp32 math, one
//     rounding of y), the split keeps it at the SIMT path's. fp16 operands overflow past
//     65504 where the SIMT path would not. The output kernel's warps meet in shared memory for
//     the D term and the gate. pass_kernel and dt_kernel are elementwise/sequential (SIMT).
// Chunks never straddle sequences: a chunk's (row, first step, length) comes from a binary
// search of the sequence table by first_chunk.
#include <stdexcept>
#include <string>

#include "cuda/ssd_fwd_kernels.cuh"

namespace nemocore::cuda {
namespace {

// Blocks ((chunk * H + head) * row tiles + row tile of the chunk) * P tiles + P tile: y from
// output_rows (see the file comment for the math), gated; out is contiguous (b, L, H, P).
template <typename T>
__global__ void __launch_bounds__(kTileThreads)
    output_kernel(const SsdFwdParams p, int64_t l_tiles, int64_t p_tiles) {
  using A = acc_t<T>;
  const int64_t blk = blockIdx.x;
  const int64_t ch_h = blk / (l_tiles * p_tiles), c = ch_h / p.nheads, h = ch_h % p.nheads;
  const int64_t l0 = blk / p_tiles % l_tiles * kTile;
  const int64_t p0 = blk % p_tiles * kTile;
  const Chunk ch = chunk_at(p, c);
  if (l0 >= ch.len) return;  // the whole block: this chunk is shorter
  A y[kRowsPerThread];
  output_rows<T>(p, ch, ch_h, l0, p0, y);
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
  const int64_t pp = p0 + tx;
  if (pp >= p.headdim) return;
  T* out = static_cast<T*>(p.out);
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int64_t l = l0 + ty + kTileRows * k;
    if (l >= ch.len) continue;
    A v = y[k];
    if (p.z) {
      v *= ssd::silu(load_io<T>(p.z, p.z_batch_stride, p.z_seq_stride, p.z_head_stride,
                                p.z_dim_stride, ch, h, l, pp, p.headdim));
    }
    out[((ch.row * p.seqlen + ch.t0 + l) * p.nheads + h) * p.headdim + pp] = from_acc<T>(v);
  }
}

// ---- launchers ------------------------------------------------------------------------------

template <typename T>
void launch_fwd(const SsdFwdParams& p) {
  const auto stream = static_cast<cudaStream_t>(p.stream);
  const int64_t chunk_heads = p.num_chunks * p.nheads;
  const int64_t PN = p.headdim * p.dstate;
  const int64_t p_tiles = ssd::ceil_div(p.headdim, kTile), n_tiles = ssd::ceil_div(p.dstate, kTile);
  if (chunk_heads > 0) {
    launch_kernel("ssd_fwd_dt", dt_kernel<T>,
                  grid_blocks(ssd::ceil_div(chunk_heads, kFlatThreads), "ssd_fwd_dt"),
                  dim3(kFlatThreads), stream, p);
    if (PN > 0) {
      launch_kernel("ssd_fwd_state", state_kernel<T>,
                    grid_blocks(chunk_heads * p_tiles * n_tiles, "ssd_fwd_state"),
                    dim3(kTileThreads), stream, p, p_tiles, n_tiles);
    }
  }
  if (p.num_seqs * p.nheads > 0 && PN > 0) {
    const int64_t e_blocks = ssd::ceil_div(PN, kFlatThreads);
    launch_kernel("ssd_fwd_pass", pass_kernel<T>,
                  grid_blocks(p.num_seqs * p.nheads * e_blocks, "ssd_fwd_pass"), dim3(kFlatThreads),
                  stream, p, e_blocks);
  }
  if (chunk_heads > 0 && p.headdim > 0) {
    // A chunk has at most min(Q, L) rows; blocks past a shorter chunk's end return at once.
    const int64_t l_tiles = ssd::ceil_div(ssd::min64(p.chunk_size, p.seqlen), kTile);
    launch_kernel("ssd_fwd_output", output_kernel<T>,
                  grid_blocks(chunk_heads * l_tiles * p_tiles, "ssd_fwd_output"),
                  dim3(kTileThreads), stream, p, l_tiles, p_tiles);
  }
}

}  // namespace

// ---- dispatch -------------------------------------------------------------------------------

void ssd_fwd(const SsdFwdParams& p) {
  if (p.ngroups <= 0 || p.nheads % p.ngroups != 0) {
    throw std::invalid_argument("ssd_fwd: ngroups (" + std::to_string(p.ngroups) +
                                ") must divide nheads (" + std::to_string(p.nheads) + ")");
  }
  if (p.chunk_size < 1) {
    throw std::invalid_argument("ssd_fwd: chunk_size must be positive, got " +
                                std::to_string(p.chunk_size));
  }
  const int64_t need =
      ssd_cuda_fwd_workspace_elems(p.num_chunks, p.nheads, p.chunk_size, p.headdim, p.dstate);
  if (need > 0 && p.workspace == nullptr) {
    throw std::invalid_argument("ssd_fwd: the CUDA forward needs a workspace of " +
                                std::to_string(need) + " elements");
  }
  dispatch_float_io(p.io_dtype, "ssd_fwd",
                    [&](auto tag) { launch_fwd<typename decltype(tag)::type>(p); });
}

}  // namespace nemocore::cuda
