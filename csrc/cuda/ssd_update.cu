// Mamba-2 decode step on CUDA: selective_state_update (kernels.md 2.7).
//
//   dt = clamp(softplus?(dt + dt_bias))            per (batch, head, dim)
//   state = state * exp(dt * A) + dt * x B^T;  out = state C + D x;  out *= silu(z)
//
// Pure memory traffic: every state element is read once and written once. A block owns one
// (batch row, head) and a tile of kRowsPerBlock rows of headdim; each of its warps takes one
// row at a time, its lanes walking dstate (the stride-1 dimension of a contiguous state), so
// the state reads and writes of a warp are coalesced. A row's output is a warp sum; B and C of
// the row's group are re-read per row and stay in L1. No two threads touch the same state
// element (rows are split between warps, columns between lanes), assuming state_batch_indices
// holds no duplicate rows, which would be a race in any implementation.
//
// A is usually a stride-0 view of (H,): then the decay exp(dt * A) is one exp per row. A
// negative state_batch_indices entry marks a padded row: its state is untouched and its output
// is zero. Any input stride works, including 0.
#include <stdexcept>
#include <string>

#include "cuda/ssd_common.cuh"

namespace nemocore::cuda {
namespace {

constexpr int kUpdateWarps = 4;
constexpr int kUpdateThreads = 32 * kUpdateWarps;
constexpr int kRowsPerBlock = 16;  // headdim rows per block: 4 per warp

// ---- device code ----------------------------------------------------------------------------

template <typename T, typename S>
__global__ void __launch_bounds__(kUpdateThreads)
    state_update_kernel(const SsdStateUpdateParams p, int64_t row_tiles) {
  using A = acc_t<T>;
  const int64_t item = blockIdx.x / row_tiles;
  const int64_t j0 = (blockIdx.x % row_tiles) * kRowsPerBlock;
  const int64_t b = item / p.nheads, h = item % p.nheads, g = h / (p.nheads / p.ngroups);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t j_end = ssd::min64(j0 + kRowsPerBlock, p.headdim);
  T* out = static_cast<T*>(p.out) + (b * p.nheads + h) * p.headdim;
  const int64_t row = p.state_batch_indices ? p.state_batch_indices[b] : b;
  if (row < 0) {  // a padded row: zero output, state untouched
    for (int64_t j = j0 + threadIdx.x; j < j_end; j += kUpdateThreads) out[j] = from_acc<T>(A(0));
    return;
  }
  const T* Bg = static_cast<const T*>(p.B) + b * p.B_batch_stride + g * p.B_group_stride;
  const T* Cg = static_cast<const T*>(p.C) + b * p.C_batch_stride + g * p.C_group_stride;
  const T* x = static_cast<const T*>(p.x) + b * p.x_batch_stride + h * p.x_head_stride;
  const A* dt = static_cast<const A*>(p.dt) + b * p.dt_batch_stride + h * p.dt_head_stride;
  const A* Ah = static_cast<const A*>(p.A) + h * p.A_head_stride;
  const A* bias = static_cast<const A*>(p.dt_bias);
  const A* D = static_cast<const A*>(p.D);
  const T* z = static_cast<const T*>(p.z);
  S* st = static_cast<S*>(p.state) + row * p.state_batch_stride + h * p.state_head_stride;
  const A lo = static_cast<A>(p.dt_min), hi = static_cast<A>(p.dt_max);
  for (int64_t j = j0 + warp; j < j_end; j += kUpdateWarps) {
    const A bj = bias ? bias[h * p.dt_bias_head_stride + j * p.dt_bias_dim_stride] : A(0);
    const A dtj =
        ssd::process_dt<A>(dt[j * p.dt_dim_stride], bj, p.dt_softplus, p.has_dt_limit, lo, hi);
    const A xj = to_acc(x[j * p.x_dim_stride]);
    const A dx = dtj * xj;
    const A* Aj = Ah + j * p.A_dim_stride;
    // The decay of a row when A is constant along N (Aj[0] exists only when N > 0).
    const A row_decay = p.A_state_stride == 0 && p.dstate > 0 ? ssd::exp_acc(dtj * Aj[0]) : A(0);
    S* sj = st + j * p.state_dim_stride;
    A y = 0;
    for (int64_t n = lane; n < p.dstate; n += 32) {
      const A decay =
          p.A_state_stride == 0 ? row_decay : ssd::exp_acc(dtj * Aj[n * p.A_state_stride]);
      S* e = sj + n * p.state_state_stride;
      const A s = to_acc(*e) * decay + dx * to_acc(Bg[n * p.B_state_stride]);
      *e = from_acc<S>(s);
      y += s * to_acc(Cg[n * p.C_state_stride]);
    }
    y = ssd::warp_sum(y);
    if (lane == 0) {
      if (D) y += D[h * p.D_head_stride + j * p.D_dim_stride] * xj;
      if (z)
        y *= ssd::silu(to_acc(z[b * p.z_batch_stride + h * p.z_head_stride + j * p.z_dim_stride]));
      out[j] = from_acc<T>(y);
    }
  }
}

// ---- launcher -------------------------------------------------------------------------------

template <typename T, typename S>
void launch_state_update(const SsdStateUpdateParams& p) {
  const int64_t row_tiles = ssd::ceil_div(p.headdim, kRowsPerBlock);
  launch_kernel("ssd_state_update", state_update_kernel<T, S>,
                grid_blocks(p.batch * p.nheads * row_tiles, "ssd_state_update"),
                dim3(kUpdateThreads), static_cast<cudaStream_t>(p.stream), p, row_tiles);
}

}  // namespace

// ---- dispatch -------------------------------------------------------------------------------

void ssd_state_update(const SsdStateUpdateParams& p) {
  if (p.batch == 0 || p.nheads == 0 || p.headdim == 0) return;  // no output element
  if (p.ngroups <= 0 || p.nheads % p.ngroups != 0) {
    throw std::invalid_argument("ssd_state_update: ngroups (" + std::to_string(p.ngroups) +
                                ") must divide nheads (" + std::to_string(p.nheads) + ")");
  }
  const bool f32_state = p.state_dtype == DType::kFloat32;
  if (!f32_state && p.state_dtype != p.io_dtype) {
    throw std::invalid_argument(std::string("state: expected float32 or x's dtype, got ") +
                                dtype_name(p.state_dtype));
  }
  // The state is float32 or the io dtype (float64 io with a float32 state included).
  dispatch_float_io(p.io_dtype, "ssd_state_update", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (f32_state) {
      launch_state_update<T, float>(p);
    } else {
      launch_state_update<T, T>(p);
    }
  });
}

}  // namespace nemocore::cuda
