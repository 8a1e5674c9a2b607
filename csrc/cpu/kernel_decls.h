// The kernels that every ISA variant defines, declared once per variant namespace.
#pragma once

#include "cpu/common/isa.h"
#include "nemocore/attention.h"
#include "nemocore/causal_conv1d.h"
#include "nemocore/moe.h"
#include "nemocore/quant.h"
#include "nemocore/ssd.h"
#include "nemocore/token_bitmask.h"

#define NEMOCORE_DECLARE_CPU_KERNELS(ns)                        \
  namespace nemocore::cpu::ns {                                 \
  void causal_conv1d_fwd(const CausalConv1dFwdParams& p);       \
  void causal_conv1d_bwd(const CausalConv1dBwdParams& p);       \
  void causal_conv1d_update(const CausalConv1dUpdateParams& p); \
  void ssd_fwd(const SsdFwdParams& p);                          \
  void ssd_bwd(const SsdBwdParams& p);                          \
  void ssd_state_update(const SsdStateUpdateParams& p);         \
  void grouped_mm(const GroupedMmParams& p);                    \
  void grouped_mm_wgrad(const GroupedMmWgradParams& p);         \
  void moe_gather(const MoeGatherParams& p);                    \
  void moe_combine(const MoeCombineParams& p);                  \
  void moe_combine_wgrad(const MoeCombineWgradParams& p);       \
  void moe_sort(const MoeSortParams& p);                        \
  void attention_decode(const AttentionDecodeParams& p);        \
  void abs_max(const AbsMaxParams& p);                          \
  void nvfp4_quantize(const Nvfp4QuantizeParams& p);            \
  void nvfp4_dequantize(const Nvfp4DequantizeParams& p);        \
  void apply_token_bitmask(const TokenBitmaskParams& p);        \
  }

NEMOCORE_DECLARE_CPU_KERNELS(base)
#if NEMOCORE_CPU_X86
NEMOCORE_DECLARE_CPU_KERNELS(avx2)
NEMOCORE_DECLARE_CPU_KERNELS(avx512)
#endif
