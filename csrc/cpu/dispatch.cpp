// Entry points of the CPU kernels: each forwards to the ISA variant chosen at run time.
// Adding a kernel: declare it in kernel_decls.h, add its source to NEMOCORE_CPU_KERNELS in
// CMakeLists.txt, and forward it here.
#include "cpu/common/isa.h"
#include "cpu/kernel_decls.h"

namespace nemocore::cpu {

void causal_conv1d_fwd(const CausalConv1dFwdParams& p) {
  NEMOCORE_CPU_DISPATCH(causal_conv1d_fwd, p)
}
void causal_conv1d_bwd(const CausalConv1dBwdParams& p) {
  NEMOCORE_CPU_DISPATCH(causal_conv1d_bwd, p)
}
void causal_conv1d_update(const CausalConv1dUpdateParams& p) {
  NEMOCORE_CPU_DISPATCH(causal_conv1d_update, p)
}

void ssd_fwd(const SsdFwdParams& p) { NEMOCORE_CPU_DISPATCH(ssd_fwd, p) }
void ssd_bwd(const SsdBwdParams& p) { NEMOCORE_CPU_DISPATCH(ssd_bwd, p) }
void ssd_state_update(const SsdStateUpdateParams& p) { NEMOCORE_CPU_DISPATCH(ssd_state_update, p) }

void grouped_mm(const GroupedMmParams& p) { NEMOCORE_CPU_DISPATCH(grouped_mm, p) }
void grouped_mm_wgrad(const GroupedMmWgradParams& p) { NEMOCORE_CPU_DISPATCH(grouped_mm_wgrad, p) }
void moe_gather(const MoeGatherParams& p) { NEMOCORE_CPU_DISPATCH(moe_gather, p) }
void moe_combine(const MoeCombineParams& p) { NEMOCORE_CPU_DISPATCH(moe_combine, p) }
void moe_combine_wgrad(const MoeCombineWgradParams& p) {
  NEMOCORE_CPU_DISPATCH(moe_combine_wgrad, p)
}
void moe_sort(const MoeSortParams& p) { NEMOCORE_CPU_DISPATCH(moe_sort, p) }

void attention_decode(const AttentionDecodeParams& p) { NEMOCORE_CPU_DISPATCH(attention_decode, p) }

void abs_max(const AbsMaxParams& p) { NEMOCORE_CPU_DISPATCH(abs_max, p) }
void nvfp4_quantize(const Nvfp4QuantizeParams& p) { NEMOCORE_CPU_DISPATCH(nvfp4_quantize, p) }
void nvfp4_dequantize(const Nvfp4DequantizeParams& p) { NEMOCORE_CPU_DISPATCH(nvfp4_dequantize, p) }

void apply_token_bitmask(const TokenBitmaskParams& p) {
  NEMOCORE_CPU_DISPATCH(apply_token_bitmask, p)
}

}  // namespace nemocore::cpu
