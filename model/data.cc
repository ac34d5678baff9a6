#include "model/data.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "runtime/error.h"
#include "runtime/rng.h"

namespace weft {
namespace {

constexpr char kTokenMagic[8] = {'W', 'E', 'F', 'T', 'T', 'O', 'K', '1'};
constexpr std::size_t kTokenHeaderBytes = 32;

class VectorCorpus final : public TokenCorpus {
 public:
  explicit VectorCorpus(std::vector<std::uint8_t> bytes) : bytes_(std::move(bytes)) {}
  std::int64_t size() const override { return static_cast<std::int64_t>(bytes_.size()); }
  void read(std::int64_t start, int count, std::int32_t* out) const override {
    for (int i = 0; i < count; ++i) out[i] = bytes_[static_cast<std::size_t>(start + i)];
  }
  std::int32_t max_token() const override {
    return bytes_.empty() ? 0 : *std::max_element(bytes_.begin(), bytes_.end());
  }

 private:
  std::vector<std::uint8_t> bytes_;
};

class MappedTokenCorpus final : public TokenCorpus {
 public:
  MappedTokenCorpus(void* mapping, std::size_t mapped_bytes, std::uint32_t width, std::int64_t count)
      : mapping_(mapping), mapped_bytes_(mapped_bytes), width_(width), count_(count) {
    const auto* base = static_cast<const unsigned char*>(mapping_) + kTokenHeaderBytes;
    max_ = 0;
    for (std::int64_t i = 0; i < count_; ++i) max_ = std::max(max_, load(base, i));
  }
  ~MappedTokenCorpus() override { munmap(mapping_, mapped_bytes_); }
  std::int64_t size() const override { return count_; }
  void read(std::int64_t start, int count, std::int32_t* out) const override {
    const auto* base = static_cast<const unsigned char*>(mapping_) + kTokenHeaderBytes;
    for (int i = 0; i < count; ++i) out[i] = load(base, start + i);
  }
  std::int32_t max_token() const override { return max_; }

 private:
  std::int32_t load(const unsigned char* base, std::int64_t i) const {
    if (width_ == 2) {
      std::uint16_t value;
      std::memcpy(&value, base + i * 2, 2);
      return value;
    }
    std::uint32_t value;
    std::memcpy(&value, base + i * 4, 4);
    return static_cast<std::int32_t>(value & 0x7fffffffu);
  }
  void* mapping_;
  std::size_t mapped_bytes_;
  std::uint32_t width_;
  std::int64_t count_;
  std::int32_t max_ = 0;
};

std::vector<std::uint8_t> read_file_bytes(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_usage("{}: cannot read {}: {}", path, what, std::strerror(errno));
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

std::unique_ptr<TokenCorpus> make_byte_corpus(std::vector<std::uint8_t> bytes) {
  return std::make_unique<VectorCorpus>(std::move(bytes));
}

std::unique_ptr<TokenCorpus> make_text_corpus(const std::string& path) {
  return make_byte_corpus(read_file_bytes(path, "text data"));
}

std::unique_ptr<TokenCorpus> open_token_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail_usage("{}: cannot open token file: {}", path, std::strerror(errno));
  struct stat info {};
  fstat(fd, &info);
  const auto file_bytes = static_cast<std::size_t>(info.st_size);
  unsigned char header[kTokenHeaderBytes] = {};
  if (file_bytes < kTokenHeaderBytes || ::pread(fd, header, kTokenHeaderBytes, 0) != kTokenHeaderBytes) {
    ::close(fd);
    fail_usage("{}: not a weft token file: shorter than its 32-byte header (write one with `weft data prepare`)", path);
  }
  std::uint32_t version, width, vocab;
  std::uint64_t count;
  std::memcpy(&version, header + 8, 4);
  std::memcpy(&width, header + 12, 4);
  std::memcpy(&count, header + 16, 8);
  std::memcpy(&vocab, header + 24, 4);
  std::string problem;
  if (std::memcmp(header, kTokenMagic, sizeof kTokenMagic) != 0) problem = "bad magic (expected WEFTTOK1)";
  else if (version != kTokenFileVersion) problem = fmt::format("format version {} (this weft reads {})", version, kTokenFileVersion);
  else if (width != 2 && width != 4) problem = fmt::format("{} bytes per token (expected 2 or 4)", width);
  else if (count > (file_bytes - kTokenHeaderBytes) / width || count * width != file_bytes - kTokenHeaderBytes)
    problem = fmt::format("header says {} tokens of {} bytes but the file holds {} bytes after the header", count, width,
                          file_bytes - kTokenHeaderBytes);
  if (!problem.empty()) {
    ::close(fd);
    fail_usage("{}: not a usable weft token file: {}", path, problem);
  }
  void* mapping = mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapping == MAP_FAILED) fail_usage("{}: cannot map token file: {}", path, std::strerror(errno));
  return std::make_unique<MappedTokenCorpus>(mapping, file_bytes, width, static_cast<std::int64_t>(count));
}

void write_token_file(const std::string& path, const std::vector<std::int32_t>& tokens, std::int32_t vocab_size) {
  const std::uint32_t width = vocab_size <= 65536 ? 2 : 4;
  unsigned char header[kTokenHeaderBytes] = {};
  std::memcpy(header, kTokenMagic, sizeof kTokenMagic);
  const std::uint32_t version = kTokenFileVersion, vocab = static_cast<std::uint32_t>(vocab_size);
  const std::uint64_t count = tokens.size();
  std::memcpy(header + 8, &version, 4);
  std::memcpy(header + 12, &width, 4);
  std::memcpy(header + 16, &count, 8);
  std::memcpy(header + 24, &vocab, 4);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail_usage("{}: cannot write token file: {}", path, std::strerror(errno));
  out.write(reinterpret_cast<const char*>(header), kTokenHeaderBytes);
  for (std::int32_t token : tokens) {
    if (width == 2) {
      auto value = static_cast<std::uint16_t>(token);
      out.write(reinterpret_cast<const char*>(&value), 2);
    } else {
      auto value = static_cast<std::uint32_t>(token);
      out.write(reinterpret_cast<const char*>(&value), 4);
    }
  }
  if (!out.flush()) fail_usage("{}: writing the token file failed: {}", path, std::strerror(errno));
}

std::int64_t prepare_token_file(const std::string& text_path, const std::string& out_path) {
  std::vector<std::uint8_t> bytes = read_file_bytes(text_path, "text");
  write_token_file(out_path, std::vector<std::int32_t>(bytes.begin(), bytes.end()), 256);
  return static_cast<std::int64_t>(bytes.size());
}

namespace {

// Tokens [start, start + count) of a corpus shared with another slice (training and validation parts of one file).
class CorpusSlice final : public TokenCorpus {
 public:
  CorpusSlice(std::shared_ptr<const TokenCorpus> base, std::int64_t start, std::int64_t count)
      : base_(std::move(base)), start_(start), count_(count) {}
  std::int64_t size() const override { return count_; }
  void read(std::int64_t start, int count, std::int32_t* out) const override { base_->read(start_ + start, count, out); }
  // Ids were checked over the whole file when it was opened.
  std::int32_t max_token() const override { return base_->max_token(); }

 private:
  std::shared_ptr<const TokenCorpus> base_;
  std::int64_t start_, count_;
};

// The corpus at `path` (or the built-in one), checked to hold a sample and no id >= vocab_size.
std::unique_ptr<TokenCorpus> open_checked(const Config& config, const std::string& path, const std::string& label) {
  std::unique_ptr<TokenCorpus> corpus;
  std::string where = label;
  switch (config.data.source) {
    case DataSource::kBuiltin: corpus = make_builtin_corpus(); break;
    case DataSource::kText:
      corpus = make_text_corpus(path);
      where = path;
      break;
    case DataSource::kTokens:
      corpus = open_token_file(path);
      where = path;
      break;
  }
  if (corpus->size() < config.model.seq_len + 2)
    fail_usage("{}: the data holds {} tokens, fewer than model.seq_len + 2 = {}", where, corpus->size(),
               config.model.seq_len + 2);
  if (corpus->max_token() >= config.model.vocab_size)
    fail_usage("{}: the data holds token id {}, but model.vocab_size = {}; raise vocab_size above the largest id",
               where, corpus->max_token(), config.model.vocab_size);
  return corpus;
}

// data.valid_fraction: the training part is the first tokens, the validation part the last, each a usable corpus.
std::int64_t held_out_tokens(const Config& config, const TokenCorpus& whole) {
  const auto held = static_cast<std::int64_t>(static_cast<double>(whole.size()) * config.data.valid_fraction);
  const std::int64_t needed = config.model.seq_len + 2;
  if (held < needed || whole.size() - held < needed)
    fail_usage("data.valid_fraction = {:g}: splits {} tokens into {} for training and {} for validation; each part "
               "needs at least model.seq_len + 2 = {}",
               config.data.valid_fraction, whole.size(), whole.size() - held, held, needed);
  return held;
}

}  // namespace

std::unique_ptr<TokenCorpus> open_corpus(const Config& config) {
  std::unique_ptr<TokenCorpus> whole = open_checked(config, config.data.path, "data.source = builtin");
  if (config.data.valid_fraction <= 0.0) return whole;
  const std::int64_t held = held_out_tokens(config, *whole);
  const std::int64_t kept = whole->size() - held;
  return std::make_unique<CorpusSlice>(std::shared_ptr<const TokenCorpus>(std::move(whole)), 0, kept);
}

std::unique_ptr<TokenCorpus> open_validation_corpus(const Config& config) {
  if (!config.data.valid_path.empty()) return open_checked(config, config.data.valid_path, "data.valid_path");
  if (config.data.valid_fraction <= 0.0) return nullptr;
  std::unique_ptr<TokenCorpus> whole = open_checked(config, config.data.path, "data.source = builtin");
  const std::int64_t held = held_out_tokens(config, *whole);
  const std::int64_t start = whole->size() - held;
  return std::make_unique<CorpusSlice>(std::shared_ptr<const TokenCorpus>(std::move(whole)), start, held);
}

SampleSource::SampleSource(const TokenCorpus& corpus, std::uint64_t seed, int seq_len)
    : corpus_(corpus), key_(rng_key(seed, "data.order")), seq_len_(seq_len), positions_(corpus.size() - seq_len) {}

void SampleSource::sample(std::int64_t index, std::int32_t* inputs, std::int32_t* targets) const {
  Philox4 block = philox4x32(key_, static_cast<std::uint64_t>(index));
  std::uint64_t draw = (static_cast<std::uint64_t>(block.v[1]) << 32) | block.v[0];
  auto start = static_cast<std::int64_t>(draw % static_cast<std::uint64_t>(positions_));
  corpus_.read(start, seq_len_, inputs);
  corpus_.read(start + 1, seq_len_, targets);
}

}  // namespace weft
