// libFuzzer target: the YAML config loader with --set overrides. Every input must either load into a config that
// keeps the loader's promises or fail with one usage error (exit 2) on one line naming where; nothing else.
//
// Input: the first byte picks the world size (1..8); the rest is the YAML text, optionally followed by a line
// "--set" and one KEY=VALUE override per line.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "runtime/config.h"
#include "runtime/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int world_size = 1 + data[0] % 8;
  std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::vector<std::string> sets;
  if (const std::size_t marker = text.find("\n--set\n"); marker != std::string::npos) {
    std::string rest = text.substr(marker + 7);
    text.resize(marker + 1);
    for (std::size_t start = 0; start <= rest.size();) {
      const std::size_t end = std::min(rest.find('\n', start), rest.size());
      if (end > start) sets.push_back(rest.substr(start, end - start));
      start = end + 1;
    }
  }
  try {
    std::vector<weft::ConfigOverride> overrides;
    for (const std::string& set : sets) overrides.push_back(weft::parse_override(set));
    const weft::Config config = weft::parse_config_text(text, "fuzz.yaml", overrides, world_size);
    // What loaded must keep what the loader promises (the layout's rules are parallel/capabilities.cc's).
    WEFT_FUZZ_REQUIRE(config.model.d_model % config.model.heads == 0, "d_model not divisible by heads");
    WEFT_FUZZ_REQUIRE(config.parallel.tp >= 1 && config.parallel.pp >= 1 && config.parallel.dp >= 0, "a negative mesh");
    WEFT_FUZZ_REQUIRE(config.comm.timeout_s >= 0.1 && config.comm.timeout_s <= 604800, "timeout out of range");
  } catch (const weft::Error& error) {
    weft::fuzz::require_usage_error(error, {"fuzz.yaml", "--set "});
  }
  return 0;
}
