// Host emulation of the few CUDA features the conv1d kernels use, so their real source runs on
// a CPU in tests: blocks run one at a time, each CUDA thread is a ucontext coroutine,
// __syncthreads is a real barrier (a thread that exits while others wait aborts the run),
// warp shuffles go through a buffer, atomics are plain adds and maxes. EMU_REVERSE=1 schedules threads
// in reverse order, to shake out order dependences.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <vector_types.h>
#include <cuda_runtime_api.h>
#include <string>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>
#include <atomic>
#include <cstdio>
#include <cstdlib>

#undef __shared__
#define __shared__ static
#define __launch_bounds__(...)

#include <ucontext.h>
#include <functional>

struct EmuDim { unsigned x = 1, y = 1, z = 1; };
inline EmuDim threadIdx, blockIdx, blockDim;

// Cooperative emulation: each CUDA thread of a block is a ucontext coroutine; __syncthreads
// yields back to the scheduler, which resumes everyone once all threads reached the barrier.
struct EmuSched {
  ucontext_t main_ctx;
  std::vector<ucontext_t> ctx;
  std::vector<std::vector<char>> stacks;
  std::vector<int> state;  // 0 running, 1 at barrier, 2 done
  int cur = 0;
  std::function<void()> body;
  long barriers = 0;
};
inline EmuSched emu;

inline void emu_trampoline() {
  emu.body();
  emu.state[emu.cur] = 2;
  swapcontext(&emu.ctx[emu.cur], &emu.main_ctx);
}

inline void __syncthreads() {
  emu.state[emu.cur] = 1;
  swapcontext(&emu.ctx[emu.cur], &emu.main_ctx);
}

// Runs one block of n threads; threadIdx is set before each resume.
inline void emu_run_block(int n, EmuDim bdim, const std::function<void()>& body) {
  emu.body = body;
  emu.ctx.resize(n);
  emu.stacks.resize(n);
  emu.state.assign(n, 0);
  for (int t = 0; t < n; ++t) {
    emu.stacks[t].resize(1 << 17);
    getcontext(&emu.ctx[t]);
    emu.ctx[t].uc_stack.ss_sp = emu.stacks[t].data();
    emu.ctx[t].uc_stack.ss_size = emu.stacks[t].size();
    emu.ctx[t].uc_link = nullptr;
    makecontext(&emu.ctx[t], emu_trampoline, 0);
  }
  for (;;) {
    static const bool reverse = getenv("EMU_REVERSE") != nullptr;
    for (int i = 0; i < n; ++i) {
      const int t = reverse ? n - 1 - i : i;
      if (emu.state[t] == 2) continue;
      emu.state[t] = 0;
      emu.cur = t;
      threadIdx.x = t % bdim.x; threadIdx.y = (t / bdim.x) % bdim.y; threadIdx.z = t / (bdim.x * bdim.y);
      swapcontext(&emu.main_ctx, &emu.ctx[t]);
    }
    int done = 0, waiting = 0;
    for (int t = 0; t < n; ++t) done += emu.state[t] == 2, waiting += emu.state[t] == 1;
    if (done == n) return;
    if (done > 0) { fprintf(stderr, "EMU: barrier reached by %d threads while %d exited\n", waiting, done); abort(); }
    ++emu.barriers;
  }
}

inline double emu_xchg[1024];
template <typename A>
A __shfl_down_sync(unsigned mask, A v, int delta) {
  if (mask != 0xffffffffu) { fprintf(stderr, "bad mask\n"); abort(); }
  const int tid = threadIdx.x + threadIdx.y * blockDim.x;
  __syncthreads();
  emu_xchg[tid] = static_cast<double>(v);
  __syncthreads();
  const int lane = tid % 32;
  const A r = lane + delta < 32 ? static_cast<A>(emu_xchg[tid + delta]) : v;
  __syncthreads();
  return r;
}

template <typename A>
A atomicAdd(A* p, A v) {
  const A old = *p;
  *p = old + v;
  return old;
}
template <typename A>
A atomicMax(A* p, A v) {
  const A old = *p;
  *p = old < v ? v : old;
  return old;
}

inline long emu_launches = 0;
inline std::vector<std::string> emu_kernel_names;
#include <map>
inline std::map<std::string, long> emu_counts;
template <typename... P> constexpr bool kernel_is_vec() { return false; }
