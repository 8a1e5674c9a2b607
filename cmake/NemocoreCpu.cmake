# CPU kernels compiled once per ISA level, each into its own namespace, so one binary runs on
# any x86-64 CPU and still uses AVX2/AVX-512 where present (chosen at run time, see
# csrc/cpu/common/isa.h). Never -march=native: the build machine is not the user's.
set(NEMOCORE_CPU_ISA_FLAGS_base "")
set(NEMOCORE_CPU_ISA_FLAGS_avx2 -mavx2 -mfma -mf16c)
set(NEMOCORE_CPU_ISA_FLAGS_avx512 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  set(NEMOCORE_CPU_ISAS base avx2 avx512)
else()
  set(NEMOCORE_CPU_ISAS base)
endif()

# nemocore_cpu_kernels(<out_var> <sources>): adds one object library per ISA level and sets
# <out_var> to the generator expressions of all their objects.
function(nemocore_cpu_kernels out_var sources)
  set(objects "")
  foreach(isa IN LISTS NEMOCORE_CPU_ISAS)
    set(lib nemocore_cpu_${isa})
    add_library(${lib} OBJECT ${sources})
    target_include_directories(${lib} PRIVATE ${PROJECT_SOURCE_DIR}/csrc/include
                                              ${PROJECT_SOURCE_DIR}/csrc)
    target_compile_definitions(${lib} PRIVATE NEMOCORE_CPU_ISA=${isa})
    # -fno-trapping-math and -fno-math-errno change no result (we never read FP exception
    # flags or errno); they let the compiler turn the selects of exp/silu into vector blends.
    target_compile_options(${lib} PRIVATE -O3 -fno-trapping-math -fno-math-errno -Wall -Wextra
                                          ${NEMOCORE_CPU_ISA_FLAGS_${isa}})
    if(OpenMP_CXX_FOUND)
      target_link_libraries(${lib} PRIVATE OpenMP::OpenMP_CXX)
    endif()
    list(APPEND objects $<TARGET_OBJECTS:${lib}>)
  endforeach()
  set(${out_var} ${objects} PARENT_SCOPE)
endfunction()
