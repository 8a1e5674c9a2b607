// Mamba-2 SSD (state space duality): params structs shared by the CPU and CUDA kernels.
//
// Math (kernels.md 2.1), per sequence, head h, group g = h / (H / G):
//   dt_t  = clamp(softplus?(dt_raw_t + dt_bias_h)), softplus the identity above 20, the clamp
//           [dt_min, dt_max] applied only when has_dt_limit
//   S_t   = exp(dt_t A_h) S_{t-1} + dt_t x_t B_t^T          (S: P x N, S_{-1} = initial state)
//   y_t   = S_t C_t + D x_t;  out_t = y_t * silu(z_t) when z is given
// Kernels compute it chunk by chunk (kernels.md 2.2): chunks of Q steps never straddle two
// sequences (a sequence's last chunk may be shorter), the intra-chunk part is a masked, decayed
// C B^T product, chunk states are passed sequentially from chunk to chunk.
//
// Letters: b batch, L seqlen, H nheads, P headdim, G ngroups, N dstate, Q chunk_size,
// S sequences, I initial-state rows.
// Strides are in elements. Two element types:
//   io  (io_dtype: float32, float16, bfloat16 or float64): x, B, C, z, out and their gradients.
//   acc (float64 when io_dtype is float64, float32 otherwise): dt, A, D, dt_bias, initial and
//       final states and their gradients, and all arithmetic inside the kernels.
// Inputs may have any strides; outputs are contiguous (the binding allocates them).
#pragma once

#include <cstdint>

#include "nemocore/common.h"

namespace nemocore {

// Columns of the sequence table `seqs`, an int64 (S, 5) contiguous tensor on the kernel's
// device. Sequence s is the steps [start, end) of batch row `row`; it starts from
// initial_states[init_row] (zeros when init_row < 0 or there are no initial states), and its
// chunks are the global chunk indices [first_chunk, first_chunk + ceil((end - start) / Q)),
// chunk k covering steps start + (k - first_chunk) * Q onwards. Sequences are ordered by
// first_chunk, so a chunk's sequence can be found by binary search over that column. The
// sequences of one row are disjoint, in order, and cover [0, L).
enum SsdSeqColumn : int {
  kSeqRow = 0,
  kSeqStart = 1,
  kSeqEnd = 2,
  kSeqInitRow = 3,
  kSeqFirstChunk = 4
};
constexpr int kSeqColumns = 5;

struct SsdFwdParams {
  int64_t batch = 0, seqlen = 0, nheads = 0, headdim = 0, ngroups = 0, dstate = 0;
  int64_t chunk_size = 0;
  DType io_dtype = DType::kFloat32;
  bool dt_softplus = false;
  bool has_dt_limit = false;  // false: no clamp at all (mamba_ssm's behaviour for (0, inf))
  double dt_min = 0.0, dt_max = 0.0;

  const void* x = nullptr;  // (b, L, H, P), io
  int64_t x_batch_stride = 0, x_seq_stride = 0, x_head_stride = 0, x_dim_stride = 0;
  const void* dt = nullptr;  // (b, L, H), acc: the raw dt, before bias, softplus and clamp
  int64_t dt_batch_stride = 0, dt_seq_stride = 0, dt_head_stride = 0;
  const void* A = nullptr;  // (H,), acc, contiguous (negative for a decaying state)
  const void* B = nullptr;  // (b, L, G, N), io
  int64_t B_batch_stride = 0, B_seq_stride = 0, B_group_stride = 0, B_state_stride = 0;
  const void* C = nullptr;  // (b, L, G, N), io
  int64_t C_batch_stride = 0, C_seq_stride = 0, C_group_stride = 0, C_state_stride = 0;
  const void* D = nullptr;  // (H,) or (H, P) (D_has_hdim), acc, contiguous; or nullptr
  bool D_has_hdim = false;
  const void* z = nullptr;  // (b, L, H, P), io, or nullptr (no gate)
  int64_t z_batch_stride = 0, z_seq_stride = 0, z_head_stride = 0, z_dim_stride = 0;
  const void* dt_bias = nullptr;  // (H,), acc, contiguous, or nullptr

  int64_t num_seqs = 0;                  // S >= 1 (every row has at least one sequence)
  int64_t num_chunks = 0;                // total chunks over all sequences (host copy)
  const int64_t* seqs = nullptr;         // (S, kSeqColumns), see SsdSeqColumn
  const void* initial_states = nullptr;  // (I, H, P, N), acc, or nullptr
  int64_t init_row_stride = 0, init_head_stride = 0, init_dim_stride = 0, init_state_stride = 0;

  void* out = nullptr;           // (b, L, H, P), io, contiguous
  void* final_states = nullptr;  // (S, H, P, N), acc, contiguous: state after each sequence;
                                 // or nullptr (not wanted)

  // CUDA only (the CPU ignores it): scratch of ssd_cuda_fwd_workspace_elems() acc elements,
  // allocated by the caller (the Python op, with torch); contents need not be initialised.
  void* workspace = nullptr;

  int num_threads = 1;     // CPU only: threads to use (torch.get_num_threads())
  void* stream = nullptr;  // CUDA only: the cudaStream_t to launch on
};

// Acc elements of SsdFwdParams::workspace for the CUDA forward: per (chunk, head) the processed
// dt and its in-chunk cumulative sum (Q each) and the chunk's state (P x N).
inline int64_t ssd_cuda_fwd_workspace_elems(int64_t num_chunks, int64_t nheads, int64_t chunk_size,
                                            int64_t headdim, int64_t dstate) {
  return num_chunks * nheads * (2 * chunk_size + headdim * dstate);
}

// Acc elements of SsdBwdParams::workspace for the CUDA backward: the forward's workspace (which
// it recomputes) followed by, per (chunk, head), dy (Q x P), the state gradient (P x N), the
// per-step terms of the decay gradient (three of Q, and two of Q per 32-step tile for the
// intra-chunk sums), the dD partial sums (P per 32-step tile) and two scalars; and per
// (chunk, group) C B^T and its gradient (Q x Q each).
inline int64_t ssd_cuda_bwd_workspace_elems(int64_t num_chunks, int64_t nheads, int64_t ngroups,
                                            int64_t chunk_size, int64_t headdim, int64_t dstate) {
  const int64_t tiles = (chunk_size + 31) / 32;
  const int64_t per_head = chunk_size * headdim + headdim * dstate + 3 * chunk_size +
                           2 * tiles * chunk_size + tiles * headdim + 2;
  return ssd_cuda_fwd_workspace_elems(num_chunks, nheads, chunk_size, headdim, dstate) +
         num_chunks * (nheads * per_head + ngroups * 2 * chunk_size * chunk_size);
}

// Gradients of everything differentiable in SsdFwdParams. Every output is contiguous and fully
// overwritten (the binding allocates them without zeroing, except dinitial_states).
struct SsdBwdParams {
  SsdFwdParams fwd;  // the forward's inputs; fwd.out and fwd.final_states are unused

  const void* dout = nullptr;  // (b, L, H, P), io
  int64_t dout_batch_stride = 0, dout_seq_stride = 0, dout_head_stride = 0, dout_dim_stride = 0;
  const void* dfinal_states = nullptr;  // (S, H, P, N), acc, contiguous, or nullptr (zero)

  void* dx = nullptr;        // (b, L, H, P), io
  void* ddt = nullptr;       // (b, L, H), acc: gradient w.r.t. the raw dt (through bias, softplus,
                             // clamp: zero where the clamp is active)
  void* dA = nullptr;        // (H,), acc
  void* dB = nullptr;        // (b, L, G, N), io (summed over the heads of each group)
  void* dC = nullptr;        // (b, L, G, N), io
  void* dD = nullptr;        // like D, acc, or nullptr
  void* dz = nullptr;        // (b, L, H, P), io, or nullptr (no z)
  void* ddt_bias = nullptr;  // (H,), acc, or nullptr
  // (I, H, P, N), acc, or nullptr. The binding zeroes it: kernels write only the rows some
  // sequence starts from.
  void* dinitial_states = nullptr;

  // CUDA only (the CPU ignores it): scratch of ssd_cuda_bwd_workspace_elems() acc elements,
  // allocated by the caller; contents need not be initialised. fwd.workspace is unused.
  void* workspace = nullptr;
};

// One decoding step (kernels.md 2.7), the state updated in place:
//   dt = clamp(softplus?(dt + dt_bias)) (clamp only when has_dt_limit)
//   state = state * exp(dt * A) + dt * x B^T;  out = state C + D x;  out *= silu(z)
// A, dt, D and dt_bias are often stride-0 broadcasts (A of (H,), dt of (b, H)).
struct SsdStateUpdateParams {
  int64_t batch = 0, nheads = 0, headdim = 0, ngroups = 0, dstate = 0;
  DType io_dtype = DType::kFloat32;     // x, B, C, z, out
  DType state_dtype = DType::kFloat32;  // state: float32 or io_dtype; math in acc
  bool dt_softplus = false;
  bool has_dt_limit = false;
  double dt_min = 0.0, dt_max = 0.0;

  void* state = nullptr;  // (pool, H, P, N), state_dtype
  int64_t state_batch_stride = 0, state_head_stride = 0, state_dim_stride = 0;
  int64_t state_state_stride = 0;
  // (b,) or nullptr: batch row i uses state row state_batch_indices[i]; a negative index marks
  // a padded row (its state is untouched and its output is zero).
  const int32_t* state_batch_indices = nullptr;
  const void* x = nullptr;  // (b, H, P), io
  int64_t x_batch_stride = 0, x_head_stride = 0, x_dim_stride = 0;
  const void* dt = nullptr;  // (b, H, P), acc
  int64_t dt_batch_stride = 0, dt_head_stride = 0, dt_dim_stride = 0;
  const void* A = nullptr;  // (H, P, N), acc
  int64_t A_head_stride = 0, A_dim_stride = 0, A_state_stride = 0;
  const void* B = nullptr;  // (b, G, N), io
  int64_t B_batch_stride = 0, B_group_stride = 0, B_state_stride = 0;
  const void* C = nullptr;  // (b, G, N), io
  int64_t C_batch_stride = 0, C_group_stride = 0, C_state_stride = 0;
  const void* D = nullptr;  // (H, P), acc, or nullptr
  int64_t D_head_stride = 0, D_dim_stride = 0;
  const void* z = nullptr;  // (b, H, P), io, or nullptr
  int64_t z_batch_stride = 0, z_head_stride = 0, z_dim_stride = 0;
  const void* dt_bias = nullptr;  // (H, P), acc, or nullptr
  int64_t dt_bias_head_stride = 0, dt_bias_dim_stride = 0;

  void* out = nullptr;  // (b, H, P), io, contiguous

  int num_threads = 1;
  void* stream = nullptr;
};

namespace cpu {
void ssd_fwd(const SsdFwdParams& p);
void ssd_bwd(const SsdBwdParams& p);
void ssd_state_update(const SsdStateUpdateParams& p);
}  // namespace cpu

namespace cuda {
// Launch on p.stream (asynchronous). Throw std::runtime_error on a launch failure. Each is
// built only when CMake defines NEMOCORE_WITH_CUDA_SSD_{FWD,BWD,UPDATE}; bindings/ssd.cpp
// calls exactly those. ssd_fwd and ssd_bwd need p.workspace.
void ssd_fwd(const SsdFwdParams& p);
void ssd_bwd(const SsdBwdParams& p);
void ssd_state_update(const SsdStateUpdateParams& p);
}  // namespace cuda

}  // namespace nemocore
