// What every fuzz target requires of an error: a usage error (exit 2) whose message is one line and starts by naming
// the input (a file, a flag). Anything else is a finding: the target aborts with the input saved by libFuzzer.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string_view>

#include "runtime/error.h"

#define WEFT_FUZZ_REQUIRE(cond, what)                                                        \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "fuzz finding: %s (%s at %s:%d)\n", what, #cond, __FILE__, __LINE__); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

namespace weft::fuzz {

inline void require_usage_error(const Error& error, std::initializer_list<std::string_view> prefixes) {
  const std::string_view message = error.what();
  if (error.kind() != ErrorKind::kUsage || message.empty() || message.find('\n') != std::string_view::npos) {
    std::fprintf(stderr, "fuzz finding: error of kind %d, not one usage line: %s\n", error.exit_code(), error.what());
    std::abort();
  }
  for (std::string_view prefix : prefixes)
    if (message.substr(0, prefix.size()) == prefix) return;
  std::fprintf(stderr, "fuzz finding: the message does not start by naming its input: %s\n", error.what());
  std::abort();
}

}  // namespace weft::fuzz
