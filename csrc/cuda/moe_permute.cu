// MoE token permute kernels on CUDA (kernels.md 3.1), the CUDA side of
// csrc/cpu/kernels/moe_permute.cpp with the same semantics:
//   moe_gather          out[r, :] = scale[r] * src[index[r], :]
//   moe_combine         out[t, :] = sum_j weights[t, j] * src[row_map[t, j], :]   (j = 0..k-1)
//   moe_combine_wgrad   dweights[t, j] = dy[t, :] . src[row_map[t, j], :]
//
// Pure memory traffic, one warp per output row (gather) or token (combine, combine wgrad), 8
// warps per block. A warp's lanes walk the columns, in 16-byte vectors when every row involved
// is unit-stride and 16-byte aligned (checked on the host), element by element otherwise, so a
// warp reads each source row in full 512-byte runs. Arithmetic is in acc; the combine adds the
// k rows in slot order, so its result does not depend on the launch shape. The combine wgrad's
// dot products end in a warp sum; warps past the last token still take part in every shuffle.
#include "cuda/moe_common.cuh"

namespace nemocore::cuda {
namespace {

using moe::ceil_div;
using moe::kThreads;
using moe::kVecElts;
using moe::kWarps;
using moe::Vec;

// ---- device code ----------------------------------------------------------------------------

template <typename T, bool kVec>
__global__ void __launch_bounds__(kThreads) gather_kernel(const MoeGatherParams p) {
  using A = acc_t<T>;
  constexpr int V = kVec ? kVecElts<T> : 1;
  const int64_t r = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= p.rows) return;
  const T* src = static_cast<const T*>(p.src) + p.index[r] * p.src_row_stride;
  T* out = static_cast<T*>(p.out) + r * p.cols;
  const A w = p.scale ? static_cast<const A*>(p.scale)[r] : A(1);
  for (int64_t c = lane * V; c < p.cols; c += 32 * V) {
    if constexpr (kVec) {
      Vec<T> v = *reinterpret_cast<const Vec<T>*>(src + c);
      if (p.scale) {
#pragma unroll
        for (int i = 0; i < V; ++i) v.v[i] = from_acc<T>(w * to_acc(v.v[i]));
      }
      *reinterpret_cast<Vec<T>*>(out + c) = v;
    } else {
      out[c] = from_acc<T>(w * to_acc(src[c * p.src_col_stride]));
    }
  }
}

template <typename T, bool kVec>
__global__ void __launch_bounds__(kThreads) combine_kernel(const MoeCombineParams p) {
  using A = acc_t<T>;
  constexpr int V = kVec ? kVecElts<T> : 1;
  const int64_t t = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (t >= p.tokens) return;
  const T* src = static_cast<const T*>(p.src);
  const A* weights = static_cast<const A*>(p.weights);
  const int64_t* rows = p.row_map + t * p.topk;
  T* out = static_cast<T*>(p.out) + t * p.cols;
  for (int64_t c = lane * V; c < p.cols; c += 32 * V) {
    A acc[V] = {};
    for (int64_t j = 0; j < p.topk; ++j) {  // slot order: the sum is the same for any launch
      const A w = weights ? weights[t * p.topk + j] : A(1);
      const T* s = src + rows[j] * p.src_row_stride;
      if constexpr (kVec) {
        const Vec<T> v = *reinterpret_cast<const Vec<T>*>(s + c);
#pragma unroll
        for (int i = 0; i < V; ++i) acc[i] += w * to_acc(v.v[i]);
      } else {
        acc[0] += w * to_acc(s[c * p.src_col_stride]);
      }
    }
    if constexpr (kVec) {
      Vec<T> v;
#pragma unroll
      for (int i = 0; i < V; ++i) v.v[i] = from_acc<T>(acc[i]);
      *reinterpret_cast<Vec<T>*>(out + c) = v;
    } else {
      out[c] = from_acc<T>(acc[0]);
    }
  }
}

template <typename T, bool kVec>
__global__ void __launch_bounds__(kThreads) combine_wgrad_kernel(const MoeCombineWgradParams p) {
  using A = acc_t<T>;
  constexpr int V = kVec ? kVecElts<T> : 1;
  const int64_t t = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const bool active = t < p.tokens;  // idle warps still join every warp sum
  const T* dy = static_cast<const T*>(p.dy) + (active ? t : 0) * p.dy_row_stride;
  for (int64_t j = 0; j < p.topk; ++j) {
    A sum = 0;
    if (active) {
      const T* s = static_cast<const T*>(p.src) + p.row_map[t * p.topk + j] * p.src_row_stride;
      for (int64_t c = lane * V; c < p.cols; c += 32 * V) {
        if constexpr (kVec) {
          const Vec<T> g = *reinterpret_cast<const Vec<T>*>(dy + c);
          const Vec<T> v = *reinterpret_cast<const Vec<T>*>(s + c);
#pragma unroll
          for (int i = 0; i < V; ++i) sum += to_acc(g.v[i]) * to_acc(v.v[i]);
        } else {
          sum += to_acc(dy[c * p.dy_col_stride]) * to_acc(s[c * p.src_col_stride]);
        }
      }
    }
    sum = moe::warp_sum(sum);
    if (active && lane == 0) static_cast<A*>(p.dweights)[t * p.topk + j] = sum;
  }
}

// ---- launchers ------------------------------------------------------------------------------

// kernel<T, true> when `vec` holds, kernel<T, false> otherwise, one warp per item.
template <typename Params, typename K>
void launch_rows(const char* name, K vec_kernel, K elem_kernel, bool vec, int64_t items,
                 const Params& p) {
  launch_kernel(name, vec ? vec_kernel : elem_kernel,
                grid_blocks(ceil_div(items, moe::kWarps), name), dim3(kThreads),
                static_cast<cudaStream_t>(p.stream), p);
}

}  // namespace

// ---- dispatch -------------------------------------------------------------------------------

void moe_gather(const MoeGatherParams& p) {
  if (p.rows == 0 || p.cols == 0) return;  // no output element
  dispatch_float_io(p.io_dtype, "moe_gather", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool vec = p.src_col_stride == 1 && moe::vec_aligned<T>(p.src, {p.src_row_stride}) &&
                     moe::vec_aligned<T>(p.out, {p.cols});
    launch_rows("moe_gather", gather_kernel<T, true>, gather_kernel<T, false>, vec, p.rows, p);
  });
}

void moe_combine(const MoeCombineParams& p) {
  if (p.tokens == 0 || p.cols == 0) return;  // no output element
  dispatch_float_io(p.io_dtype, "moe_combine", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool vec = p.src_col_stride == 1 && moe::vec_aligned<T>(p.src, {p.src_row_stride}) &&
                     moe::vec_aligned<T>(p.out, {p.cols});
    launch_rows("moe_combine", combine_kernel<T, true>, combine_kernel<T, false>, vec, p.tokens, p);
  });
}

void moe_combine_wgrad(const MoeCombineWgradParams& p) {
  if (p.tokens == 0 || p.topk == 0) return;  // no output element
  dispatch_float_io(p.io_dtype, "moe_combine_wgrad", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool vec = p.src_col_stride == 1 && p.dy_col_stride == 1 &&
                     moe::vec_aligned<T>(p.src, {p.src_row_stride}) &&
                     moe::vec_aligned<T>(p.dy, {p.dy_row_stride, p.cols});
    launch_rows("moe_combine_wgrad", combine_wgrad_kernel<T, true>, combine_wgrad_kernel<T, false>,
                vec, p.tokens, p);
  });
}

}  // namespace nemocore::cuda
