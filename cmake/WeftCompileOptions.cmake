# Compiler warnings (kept clean), code-generation flags and the optional sanitizer build.
option(WEFT_NATIVE "Tune CPU code for this machine (-march=native); turn off for portable binaries" ON)

set(WEFT_CXX_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wno-unused-parameter)

# -fopenmp-simd lets `#pragma omp simd` vectorize float reductions without -ffast-math (results stay
# deterministic for a given build); -fno-math-errno lets sqrt vectorize.
add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fopenmp-simd> $<$<COMPILE_LANGUAGE:CXX>:-fno-math-errno>)
if(WEFT_NATIVE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-march=native>)
endif()

function(weft_target_defaults target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:${WEFT_CXX_WARNINGS}>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall>)
endfunction()

if(WEFT_SANITIZE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-sanitize-recover=undefined>)
  add_link_options(-fsanitize=address,undefined)
  # Open MPI's one-time allocations are suppressed for LeakSanitizer in every executable (MPI tests included).
  add_library(weft_sanitizer_defaults OBJECT ${CMAKE_CURRENT_LIST_DIR}/sanitizer_defaults.cc)
  link_libraries(weft_sanitizer_defaults)
endif()
