#include "model/data.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "runtime/error.h"
#include "runtime/file_io.h"
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
  std::int64_t max_token() const override {
    return bytes_.empty() ? 0 : *std::max_element(bytes_.begin(), bytes_.end());
  }
  std::int64_t first_token_at_least(std::int64_t bound) const override {
    for (std::size_t i = 0; i < bytes_.size(); ++i)
      if (bytes_[i] >= bound) return static_cast<std::int64_t>(i);
    return -1;
  }
  std::int64_t byte_offset(std::int64_t index) const override { return index; }
  std::int64_t token_at(std::int64_t index) const override { return bytes_[static_cast<std::size_t>(index)]; }

 private:
  std::vector<std::uint8_t> bytes_;
};

// Tokens are unsigned 16- or 32-bit ids; ids are only ever compared with model.vocab_size, never masked, so a
// damaged file cannot smuggle an id past the check.
class MappedTokenCorpus final : public TokenCorpus {
 public:
  MappedTokenCorpus(void* mapping, std::size_t mapped_bytes, std::uint32_t width, std::int64_t count)
      : mapping_(mapping), mapped_bytes_(mapped_bytes), width_(width), count_(count) {
    for (std::int64_t i = 0; i < count_; ++i) max_ = std::max(max_, load(i));
  }
  ~MappedTokenCorpus() override { munmap(mapping_, mapped_bytes_); }
  std::int64_t size() const override { return count_; }
  // Only called after open_corpus has checked every id against vocab_size (which fits in an int32).
  void read(std::int64_t start, int count, std::int32_t* out) const override {
    for (int i = 0; i < count; ++i) out[i] = static_cast<std::int32_t>(load(start + i));
  }
  std::int64_t max_token() const override { return max_; }
  std::int64_t first_token_at_least(std::int64_t bound) const override {
    for (std::int64_t i = 0; i < count_; ++i)
      if (load(i) >= bound) return i;
    return -1;
  }
  std::int64_t byte_offset(std::int64_t index) const override {
    return static_cast<std::int64_t>(kTokenHeaderBytes) + index * width_;
  }
  std::int64_t token_at(std::int64_t index) const override { return load(index); }

 private:
  std::int64_t load(std::int64_t i) const {
    const auto* at = static_cast<const unsigned char*>(mapping_) + kTokenHeaderBytes + i * width_;
    if (width_ == 2) {
      std::uint16_t value;
      std::memcpy(&value, at, 2);
      return value;
    }
    std::uint32_t value;
    std::memcpy(&value, at, 4);
    return value;
  }
  void* mapping_;
  std::size_t mapped_bytes_;
  std::uint32_t width_;
  std::int64_t count_;
  std::int64_t max_ = 0;
};

std::vector<std::uint8_t> read_file_bytes(const std::string& path, const char* what) {
  const std::string bytes = read_regular_file(path, what);
  return std::vector<std::uint8_t>(bytes.begin(), bytes.end());
}

// What is wrong with a token file's 32-byte header given the file's size, or "" when it is usable.
std::string header_problem(const unsigned char* header, std::uint64_t file_bytes) {
  std::uint32_t version, width, vocab;
  std::uint64_t count;
  std::memcpy(&version, header + 8, 4);
  std::memcpy(&width, header + 12, 4);
  std::memcpy(&count, header + 16, 8);
  std::memcpy(&vocab, header + 24, 4);
  if (std::memcmp(header, kTokenMagic, sizeof kTokenMagic) != 0) return "bad magic (expected WEFTTOK1)";
  if (version != kTokenFileVersion)
    return fmt::format("format version {} (this weft reads {})", version, kTokenFileVersion);
  if (width != 2 && width != 4) return fmt::format("{} bytes per token (expected 2 or 4)", width);
  const std::uint64_t payload = file_bytes - kTokenHeaderBytes;
  if (count > payload / width || count * width != payload)
    return fmt::format("header says {} tokens of {} bytes but the file holds {} bytes after the header", count,
                       width, payload);
  if (vocab == 0) return "header says vocabulary size 0";
  return "";
}

}  // namespace

std::unique_ptr<TokenCorpus> make_byte_corpus(std::vector<std::uint8_t> bytes) {
  return std::make_unique<VectorCorpus>(std::move(bytes));
}

std::unique_ptr<TokenCorpus> make_text_corpus(const std::string& path) {
  return make_byte_corpus(read_file_bytes(path, "text data"));
}

std::unique_ptr<TokenCorpus> open_token_file(const std::string& path) {
  const int fd = open_regular_file(path, "token file");
  struct stat info {};
  fstat(fd, &info);
  const auto file_bytes = static_cast<std::size_t>(info.st_size);
  unsigned char header[kTokenHeaderBytes] = {};
  if (file_bytes < kTokenHeaderBytes || ::pread(fd, header, kTokenHeaderBytes, 0) != kTokenHeaderBytes) {
    ::close(fd);
    fail_usage("{}: not a weft token file: shorter than its 32-byte header (write one with `weft data prepare`)", path);
  }
  if (const std::string problem = header_problem(header, file_bytes); !problem.empty()) {
    ::close(fd);
    fail_usage("{}: not a usable weft token file: {}", path, problem);
  }
  std::uint32_t width;
  std::uint64_t count;
  std::memcpy(&width, header + 12, 4);
  std::memcpy(&count, header + 16, 8);
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
  // A job may be reading the old file through a memory map: it keeps its copy, as the new one is renamed over it.
  AtomicFile out(path, fmt::format("token file {}", path));
  out.write(header, kTokenHeaderBytes);
  for (std::int32_t token : tokens) {
    if (width == 2) {
      auto value = static_cast<std::uint16_t>(token);
      out.write(&value, 2);
    } else {
      auto value = static_cast<std::uint32_t>(token);
      out.write(&value, 4);
    }
  }
  out.commit([&](const std::string& written) {
    if (open_token_file(written)->size() != static_cast<std::int64_t>(count))
      throw Error(ErrorKind::kInternal, fmt::format("{}: the written token file does not read back", path));
  });
}

std::int64_t prepare_token_file(const std::string& text_path, const std::string& out_path) {
  struct stat input {}, output {};
  if (::stat(text_path.c_str(), &input) == 0 && ::stat(out_path.c_str(), &output) == 0 &&
      input.st_dev == output.st_dev && input.st_ino == output.st_ino)
    fail_usage("--output {}: is the input file {} itself; write the tokens to another file", out_path, text_path);
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
  // Ids were checked over the whole file when it was opened: a slice answers with the whole file's figures.
  std::int64_t max_token() const override { return base_->max_token(); }
  std::int64_t first_token_at_least(std::int64_t bound) const override {
    const std::int64_t found = base_->first_token_at_least(bound);
    return found >= start_ && found < start_ + count_ ? found - start_ : -1;
  }
  std::int64_t token_at(std::int64_t index) const override { return base_->token_at(start_ + index); }
  std::int64_t byte_offset(std::int64_t index) const override { return base_->byte_offset(start_ + index); }

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
  if (corpus->max_token() >= config.model.vocab_size) {
    const std::int64_t index = corpus->first_token_at_least(config.model.vocab_size);
    fail_usage("{}: token {} (at byte offset {}) is id {}, but model.vocab_size = {} allows ids 0..{}; the largest id "
               "in the data is {}: raise vocab_size above it, or the file is damaged",
               where, index, corpus->byte_offset(index), corpus->token_at(index), config.model.vocab_size,
               config.model.vocab_size - 1, corpus->max_token());
  }
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
