// WEFT_MPI_CHECK: run an MPI call and throw weft::Error with MPI's own message, the call and file:line on failure.
#pragma once

#include <mpi.h>

#include <string>

#include "runtime/error.h"

namespace weft::mpi_detail {

inline std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "unknown MPI error " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(length));
}

[[noreturn]] inline void throw_mpi(const char* expression, const char* file, int line, int code) {
  throw Error(ErrorKind::kInternal,
              fmt::format("MPI call {} failed at {}:{}: {}; check that every rank runs the same weft binary and "
                          "config, and rerun with --mca btl_base_verbose 100 for transport details",
                          expression, file, line, mpi_error_string(code)));
}

}  // namespace weft::mpi_detail

#define WEFT_MPI_CHECK(expr)                                                                        \
  do {                                                                                              \
    int weft_mpi_code_ = (expr);                                                                    \
    if (weft_mpi_code_ != MPI_SUCCESS) ::weft::mpi_detail::throw_mpi(#expr, __FILE__, __LINE__, weft_mpi_code_); \
  } while (0)
