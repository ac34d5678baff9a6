// Error: the exception every layer throws, carrying the process exit code the contract assigns to it.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace weft {

// Exit codes from contract.md: 2 bad usage or config, 3 peer failure or timeout, 1 anything else.
enum class ErrorKind { kInternal = 1, kUsage = 2, kPeer = 3 };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }
  int exit_code() const { return static_cast<int>(kind_); }

 private:
  ErrorKind kind_;
};

// A user mistake (bad flag, bad config, bad file): exit code 2.
template <typename... Args>
[[noreturn]] void fail_usage(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(ErrorKind::kUsage, fmt::format(format, std::forward<Args>(args)...));
}

// A dead peer, a collective timeout or an abort: exit code 3.
template <typename... Args>
[[noreturn]] void fail_peer(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(ErrorKind::kPeer, fmt::format(format, std::forward<Args>(args)...));
}

[[noreturn]] void check_failed(const char* expression, const char* file, int line, const std::string& detail);

}  // namespace weft

// Internal invariant: prints the expression, file:line and detail, then aborts.
#define WEFT_CHECK(cond, ...)                                                                   \
  do {                                                                                          \
    if (!(cond)) ::weft::check_failed(#cond, __FILE__, __LINE__, ::fmt::format("" __VA_ARGS__)); \
  } while (0)
