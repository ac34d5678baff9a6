// libFuzzer target: the safetensors writer's inputs (tensor names, shapes, values) and its header reader. Whatever
// names and shapes it is given, the writer either refuses them with one usage error or produces a header that reads
// back to exactly those names, shapes and byte ranges; the reader never crashes on any header text.
//
// Input: first byte b: b & 1 parses the rest as a header text; otherwise the rest describes up to 8 tensors, each a
// name length (1 byte), the name's bytes (any), a rank (1 byte, 0..4) and that many extents (1 byte each, 0..7).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/safetensors.h"
#include "fuzz/fuzz_check.h"

namespace {

using weft::safetensors::NamedTensor;

void check_round_trip(const std::vector<NamedTensor>& tensors) {
  std::uint64_t data_bytes = 0;
  for (const NamedTensor& t : tensors) data_bytes += t.values.size() * sizeof(float);
  const std::string header = weft::safetensors::header(tensors, {{"format", "pt"}});
  WEFT_FUZZ_REQUIRE(header.size() % 8 == 0, "the data would not start 8-byte aligned");
  const auto entries = weft::safetensors::parse_header(header, data_bytes);
  WEFT_FUZZ_REQUIRE(entries.size() == tensors.size(), "a tensor went missing in the header");
  for (const NamedTensor& t : tensors) {
    bool found = false;
    for (const auto& e : entries) {
      if (e.name != t.name) continue;
      found = true;
      WEFT_FUZZ_REQUIRE(e.dtype == "F32" && e.shape == t.shape, "a shape or dtype changed on the way");
      WEFT_FUZZ_REQUIRE(e.end - e.begin == t.values.size() * sizeof(float), "a byte range has the wrong length");
    }
    WEFT_FUZZ_REQUIRE(found, "a name changed on the way");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (data[0] & 1) {
      weft::safetensors::parse_header(rest, 1 << 20);
      return 0;
    }
    std::vector<NamedTensor> tensors;
    std::size_t at = 0;
    auto next = [&]() -> int { return at < rest.size() ? static_cast<unsigned char>(rest[at++]) : -1; };
    while (tensors.size() < 8 && at < rest.size()) {
      const int length = next();
      if (length < 0 || at + static_cast<std::size_t>(length) > rest.size()) break;
      NamedTensor tensor;
      tensor.name = std::string(rest.substr(at, static_cast<std::size_t>(length)));
      at += static_cast<std::size_t>(length);
      const int rank = next();
      std::size_t count = 1;
      for (int d = 0; d < (rank < 0 ? 0 : rank % 5); ++d) {
        const int extent = next();
        tensor.shape.push_back(extent < 0 ? 1 : extent % 8);
        count *= static_cast<std::size_t>(tensor.shape.back());
      }
      tensor.values.assign(count, 0.5f);
      tensors.push_back(std::move(tensor));
    }
    check_round_trip(tensors);
  } catch (const weft::Error& error) {
    weft::fuzz::require_usage_error(error, {"safetensors"});
  }
  return 0;
}
