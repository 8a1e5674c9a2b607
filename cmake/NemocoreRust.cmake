# The nemocore._rs extension: built by cargo from rust/ (Cargo.lock pinned, --locked), or taken
# from a prebuilt maturin wheel / shared library (NEMOCORE_RS_PREBUILT) where there is no Rust
# toolchain. Either way it is installed as nemocore/_rs.abi3.so.
set(_rs_dest "${CMAKE_CURRENT_BINARY_DIR}/rs/_rs.abi3.so")

if(NOT NEMOCORE_RS_PREBUILT STREQUAL "")
  get_filename_component(_prebuilt "${NEMOCORE_RS_PREBUILT}" ABSOLUTE)
  if(NOT EXISTS "${_prebuilt}")
    message(FATAL_ERROR "NEMOCORE_RS_PREBUILT='${NEMOCORE_RS_PREBUILT}' does not exist")
  endif()
  if(_prebuilt MATCHES "\\.whl$")
    set(_unpacked "${CMAKE_CURRENT_BINARY_DIR}/rs/wheel")
    file(REMOVE_RECURSE "${_unpacked}")
    file(ARCHIVE_EXTRACT INPUT "${_prebuilt}" DESTINATION "${_unpacked}" PATTERNS "nemocore/_rs*")
    file(GLOB _found "${_unpacked}/nemocore/_rs*.so")
    if(NOT _found)
      message(FATAL_ERROR "${_prebuilt} holds no nemocore/_rs*.so: is it a nemocore-rs wheel?")
    endif()
    list(GET _found 0 _prebuilt)
  endif()
  configure_file("${_prebuilt}" "${_rs_dest}" COPYONLY)
  set(NEMOCORE_RS_SOURCE "prebuilt ${NEMOCORE_RS_PREBUILT}")
else()
  find_program(CARGO cargo HINTS "$ENV{CARGO_HOME}/bin" "$ENV{HOME}/.cargo/bin")
  if(NOT CARGO)
    message(FATAL_ERROR
      "nemocore needs cargo to build its Rust core (install Rust from https://rustup.rs), or a "
      "prebuilt one: build it with `maturin build --release -m rust/nemocore-py/Cargo.toml` "
      "and pass NEMOCORE_RS_PREBUILT=path/to/nemocore_rs-*.whl")
  endif()
  if(DEFINED ENV{CARGO_TARGET_DIR})
    set(_target_dir "$ENV{CARGO_TARGET_DIR}")
  else()
    set(_target_dir "${PROJECT_SOURCE_DIR}/rust/target")
  endif()
  if(APPLE)
    set(_built "${_target_dir}/release/lib_rs.dylib")
  else()
    set(_built "${_target_dir}/release/lib_rs.so")
  endif()
  # Always run: cargo decides what is stale, and a no-op build takes a fraction of a second.
  add_custom_target(nemocore_rs ALL
    COMMAND "${CMAKE_COMMAND}" -E env "PYO3_PYTHON=${Python_EXECUTABLE}" "CARGO_TARGET_DIR=${_target_dir}"
            "PYO3_BUILD_EXTENSION_MODULE=1" "${CARGO}" build --locked --release -p nemocore-py
            --manifest-path "${PROJECT_SOURCE_DIR}/rust/Cargo.toml"
    COMMAND "${CMAKE_COMMAND}" -E copy_if_different "${_built}" "${_rs_dest}"
    BYPRODUCTS "${_rs_dest}"
    WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}/rust"
    COMMENT "cargo build --locked --release -p nemocore-py"
    USES_TERMINAL)
  set(NEMOCORE_RS_SOURCE "cargo (${CARGO})")
endif()

install(FILES "${_rs_dest}" DESTINATION nemocore)
