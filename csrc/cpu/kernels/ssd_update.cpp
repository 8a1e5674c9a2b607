// Mamba-2 decode step on the CPU: selective_state_update (kernels.md 2.7).
//
// Pure memory traffic: every state element is read once and written once. Work items are
// (batch row, head) pairs; each state row of N elements is widened into a contiguous
// compute-type buffer (which absorbs any stride and the state dtype), updated and reduced
// against C in one vectorisable pass, and stored back. A is usually a stride-0 view of (H,),
// and then the decay exp(dt * A) is one exp per row instead of one per element.
#include "cpu/kernels/ssd_common.h"

namespace nemocore::cpu::NEMOCORE_CPU_ISA {
namespace {

template <typename T, typename S>
void update_impl(const SsdStateUpdateParams& p) {
  using A = AccOf<T>;
  const int64_t H = p.nheads, P = p.headdim, N = p.dstate, hpg = p.nheads / p.ngroups;
  const A lo = static_cast<A>(p.dt_min), hi = static_cast<A>(p.dt_max);
  const int threads = ssd::threads_for(p.num_threads, double(p.batch) * H * P * N);
  parallel_for(p.batch * H, threads, [&](int64_t item) {
    const int64_t b = item / H, h = item % H, g = h / hpg;
    T* out = static_cast<T*>(p.out) + (b * H + h) * P;
    const int64_t row = p.state_batch_indices ? p.state_batch_indices[b] : b;
    if (row < 0) {  // a padded row
      for (int64_t j = 0; j < P; ++j) out[j] = from_acc<T, A>(A(0));
      return;
    }
    std::vector<A> Bv(N), Cv(N), decay(N), s(N);
    load_row(static_cast<const T*>(p.B) + b * p.B_batch_stride + g * p.B_group_stride,
             p.B_state_stride, N, Bv.data());
    load_row(static_cast<const T*>(p.C) + b * p.C_batch_stride + g * p.C_group_stride,
             p.C_state_stride, N, Cv.data());
    const T* x = static_cast<const T*>(p.x) + b * p.x_batch_stride + h * p.x_head_stride;
    const A* dt = static_cast<const A*>(p.dt) + b * p.dt_batch_stride + h * p.dt_head_stride;
    const A* Ar = static_cast<const A*>(p.A) + h * p.A_head_stride;
    const A* bias = static_cast<const A*>(p.dt_bias);
    const A* D = static_cast<const A*>(p.D);
    const T* z = static_cast<const T*>(p.z);
    S* st = static_cast<S*>(p.state) + row * p.state_batch_stride + h * p.state_head_stride;
    for (int64_t j = 0; j < P; ++j) {
      const A bj = bias ? bias[h * p.dt_bias_head_stride + j * p.dt_bias_dim_stride] : A(0);
      const A dtj =
          ssd::process_dt<A>(dt[j * p.dt_dim_stride], bj, p.dt_softplus, p.has_dt_limit, lo, hi);
      const A xj = to_acc<A>(x[j * p.x_dim_stride]);
      const A* Aj = Ar + j * p.A_dim_stride;
      S* sj = st + j * p.state_dim_stride;
      load_row(sj, p.state_state_stride, N, s.data());
      const A dx = dtj * xj;
      if (p.A_state_stride == 0) {
        const A dA = exp_acc<A>(dtj * Aj[0]);
        for (int64_t n = 0; n < N; ++n) s[n] = s[n] * dA + dx * Bv[n];
      } else {
        for (int64_t n = 0; n < N; ++n) decay[n] = exp_acc<A>(dtj * Aj[n * p.A_state_stride]);
        for (int64_t n = 0; n < N; ++n) s[n] = s[n] * decay[n] + dx * Bv[n];
      }
      A y = ssd::dot(s.data(), Cv.data(), N);
      store_row(s.data(), N, sj, p.state_state_stride);
      if (D) y += D[h * p.D_head_stride + j * p.D_dim_stride] * xj;
      if (z) {
        y *= silu<A>(to_acc<A>(z[b * p.z_batch_stride + h * p.z_head_stride + j * p.z_dim_stride]));
      }
      out[j] = from_acc<T, A>(y);
    }
  });
}

}  // namespace

void ssd_state_update(const SsdStateUpdateParams& p) {
  const bool f32_state = p.state_dtype == DType::kFloat32;
  switch (p.io_dtype) {
    case DType::kFloat32: return update_impl<float, float>(p);
    case DType::kFloat64:
      return f32_state ? update_impl<double, float>(p) : update_impl<double, double>(p);
    case DType::kBFloat16:
      return f32_state ? update_impl<bf16, float>(p) : update_impl<bf16, bf16>(p);
    case DType::kFloat16: return f32_state ? update_impl<f16, float>(p) : update_impl<f16, f16>(p);
    default:
      throw std::invalid_argument(std::string("x: unsupported dtype ") + dtype_name(p.io_dtype));
  }
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA
