// Running the weft binary from a test: its exit code and its output, and small input files.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

namespace weft::testing {

struct Outcome {
  int exit_code;
  std::string output;  // stdout and stderr together
};

// A shell command's outcome; a process killed by signal S reads as 128 + S.
inline Outcome run_weft_command(const std::string& shell_command) {
  const std::string command = shell_command + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  std::array<char, 4096> buffer{};
  while (std::fgets(buffer.data(), buffer.size(), pipe)) output += buffer.data();
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output};
}

// `weft ARGUMENTS`.
inline Outcome run_weft(const std::string& arguments) {
  return run_weft_command(std::string(WEFT_BINARY) + " " + arguments);
}

inline std::string tiny() { return std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml"; }

inline std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = "/tmp/weft_cli_" + name;
  std::ofstream(path) << text;
  return path;
}

// Trains configs/tiny.yaml (with `sets`) for one step into `dir`, saving a checkpoint; returns its directory.
inline std::string one_step_checkpoint(const std::string& dir, const std::string& sets = "") {
  const Outcome saved =
      run_weft("train " + tiny() + " " + sets + " --set train.steps=1 --set checkpoint.every=1 --set checkpoint.dir=" + dir);
  INFO(saved.output);
  REQUIRE(saved.exit_code == 0);
  return dir + "/step_00000001";
}

// The same, ended by `timeout` after `seconds`: a test of "never hangs" must not hang itself (124 then).
inline Outcome run_weft_within(int seconds, const std::string& arguments) {
  return run_weft_command("timeout " + std::to_string(seconds) + " " + std::string(WEFT_BINARY) + " " + arguments);
}

}  // namespace weft::testing
