// libFuzzer target: the token-file reader. Any bytes, read as `data.source: tokens`, must either give tokens that are
// all valid ids below model.vocab_size, or one usage error naming the file; never a crash or an id past the check.
//
// Input: the first two bytes pick model.vocab_size (2..65537); the rest is the file. It is served from an in-memory
// file (memfd), so a run touches no disk.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "model/data.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  static const int fd = memfd_create("weft-fuzz-tokens", MFD_CLOEXEC);
  if (fd < 0) std::abort();
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data + 2, size - 2, 0) != static_cast<ssize_t>(size - 2)) std::abort();
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  weft::Config config;
  config.data.source = weft::DataSource::kTokens;
  config.data.path = path;
  config.model.vocab_size = 2 + (data[0] | (data[1] << 8));
  config.model.seq_len = 2;
  try {
    const auto corpus = weft::open_corpus(config);
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(corpus->size()));
    for (std::int64_t start = 0; start < corpus->size(); start += 4096) {
      const int count = static_cast<int>(std::min<std::int64_t>(4096, corpus->size() - start));
      corpus->read(start, count, tokens.data() + start);
    }
    for (std::int32_t token : tokens)
      WEFT_FUZZ_REQUIRE(token >= 0 && token < config.model.vocab_size, "a token id past the vocabulary check");
  } catch (const weft::Error& error) {
    weft::fuzz::require_usage_error(error, {path});
  }
  return 0;
}
