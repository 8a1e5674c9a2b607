# Finds a CUDA compiler (system toolkit or the nvidia-cuda-nvcc wheel from PyPI) and enables
# CUDA when NEMOCORE_CUDA asks for it. Sets NEMOCORE_WITH_CUDA and NEMOCORE_CUDA_ARCHS_TEXT.
include(CheckLanguage)

string(TOUPPER "${NEMOCORE_CUDA}" _mode)
if(_mode MATCHES "^(0|OFF|FALSE|NO)$")
  set(_mode OFF)
elseif(_mode MATCHES "^(1|ON|TRUE|YES)$")
  set(_mode ON)
elseif(NOT _mode STREQUAL "AUTO")
  message(FATAL_ERROR "NEMOCORE_CUDA must be AUTO, 1 or 0, got '${NEMOCORE_CUDA}'")
endif()

# Candidate compilers, best first: an explicit choice, PATH, CUDA_HOME, /usr/local/cuda, then
# the wheels from PyPI installed in the Python that runs the build.
function(_nemocore_find_nvcc out_var)
  if(DEFINED CMAKE_CUDA_COMPILER AND EXISTS "${CMAKE_CUDA_COMPILER}")
    set(${out_var} "${CMAKE_CUDA_COMPILER}" PARENT_SCOPE)
    return()
  endif()
  if(DEFINED ENV{CUDACXX} AND EXISTS "$ENV{CUDACXX}")
    set(${out_var} "$ENV{CUDACXX}" PARENT_SCOPE)
    return()
  endif()
  execute_process(
    COMMAND "${Python_EXECUTABLE}" -c
            "import importlib.util as u; s = u.find_spec('nvidia'); print(';'.join(s.submodule_search_locations) if s else '')"
    OUTPUT_VARIABLE _nvidia_dirs OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  set(_hints "")
  foreach(_dir IN LISTS _nvidia_dirs)
    list(APPEND _hints "${_dir}/cu13/bin" "${_dir}/cu12/bin" "${_dir}/cuda_nvcc/bin")
  endforeach()
  find_program(_nvcc nvcc
    HINTS ENV CUDA_HOME ENV CUDA_PATH PATH_SUFFIXES bin
    PATHS /usr/local/cuda/bin ${_hints}
    NO_CACHE)
  set(${out_var} "${_nvcc}" PARENT_SCOPE)
endfunction()

set(NEMOCORE_WITH_CUDA OFF)
set(NEMOCORE_CUDA_ARCHS_TEXT "none")
if(NOT _mode STREQUAL "OFF")
  _nemocore_find_nvcc(_nvcc)
  if(_nvcc)
    set(ENV{CUDACXX} "${_nvcc}")  # check_language runs a child CMake that reads it
    if(NOT DEFINED CMAKE_CUDA_HOST_COMPILER)
      set(ENV{CUDAHOSTCXX} "${CMAKE_CXX_COMPILER}")
      set(CMAKE_CUDA_HOST_COMPILER "${CMAKE_CXX_COMPILER}")
    endif()
    check_language(CUDA)
  endif()
  if(_nvcc AND CMAKE_CUDA_COMPILER)
    set(CMAKE_CUDA_ARCHITECTURES ${NEMOCORE_CUDA_ARCHS})
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(NEMOCORE_WITH_CUDA ON)
    set(_texts "")
    foreach(_arch IN LISTS NEMOCORE_CUDA_ARCHS)
      string(REGEX REPLACE "-(real|virtual)$" "" _arch "${_arch}")
      list(APPEND _texts "sm_${_arch}")
    endforeach()
    list(JOIN _texts " " NEMOCORE_CUDA_ARCHS_TEXT)
    message(STATUS "nemocore: CUDA kernels ON, nvcc ${CMAKE_CUDA_COMPILER_VERSION} at ${CMAKE_CUDA_COMPILER}, "
                   "architectures ${NEMOCORE_CUDA_ARCHS}")
  elseif(_mode STREQUAL "ON")
    message(FATAL_ERROR
      "NEMOCORE_CUDA=1 but no working CUDA compiler was found. Install one "
      "(`pip install nvidia-cuda-nvcc nvidia-cuda-runtime nvidia-cuda-cccl` into the Python that "
      "builds, or a CUDA toolkit with nvcc on PATH / CUDA_HOME), or build without CUDA "
      "(NEMOCORE_CUDA=0).")
  else()
    message(STATUS "nemocore: CUDA kernels OFF (no CUDA compiler found; NEMOCORE_CUDA=AUTO)")
  endif()
else()
  message(STATUS "nemocore: CUDA kernels OFF (NEMOCORE_CUDA=0)")
endif()
