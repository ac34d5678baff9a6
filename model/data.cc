#include "model/data.h"

#include <sys/stat.h>

#include <algorithm>

#include "model/token_file.h"
#include "runtime/error.h"
#include "runtime/file_io.h"
#include "runtime/rng.h"

namespace weft {
namespace {

class VectorCorpus final : public TokenCorpus {
 public:
  explicit VectorCorpus(std::vector<std::uint8_t> bytes) : bytes_(std::move(bytes)) {}
  CorpusTokenizer tokenizer() const override { return {"bytes", "", 256}; }
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

std::vector<std::uint8_t> read_file_bytes(const std::string& path, const char* what) {
  const std::string bytes = read_regular_file(path, what);
  return std::vector<std::uint8_t>(bytes.begin(), bytes.end());
}

}  // namespace

std::unique_ptr<TokenCorpus> make_byte_corpus(std::vector<std::uint8_t> bytes) {
  return std::make_unique<VectorCorpus>(std::move(bytes));
}

std::unique_ptr<TokenCorpus> make_text_corpus(const std::string& path) {
  return make_byte_corpus(read_file_bytes(path, "text data"));
}

namespace {

// Tokens [start, start + count) of a corpus shared with another slice (training and validation parts of one file).
class CorpusSlice final : public TokenCorpus {
 public:
  CorpusSlice(std::shared_ptr<const TokenCorpus> base, std::int64_t start, std::int64_t count)
      : base_(std::move(base)), start_(start), count_(count) {}
  CorpusTokenizer tokenizer() const override { return base_->tokenizer(); }
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
    case DataSource::kTokens: {
      corpus = open_token_file(path, config.data.format);
      // A tokenizer with more ids than the model has rows would train on ids it can never produce.
      const CorpusTokenizer made_by = corpus->tokenizer();
      if (!made_by.kind.empty() && made_by.vocab_size > config.model.vocab_size)
        fail_usage("{}: its tokenizer ({}) has a vocabulary of {}, but model.vocab_size = {}; set vocab_size to at "
                   "least {}",
                   path, made_by.kind, made_by.vocab_size, config.model.vocab_size, made_by.vocab_size);
      where = path;
      break;
    }
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
