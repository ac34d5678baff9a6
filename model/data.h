// Training data: token corpora (built-in, UTF-8 text as bytes, memory-mapped token files) and the
// layout-independent sample order every rank slices.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/config.h"

namespace weft {

// The tokenizer that made a corpus's ids: "bytes" for text and the built-in data; for a token file what it records
// (kind "" when it says nothing), read once when the file is opened.
struct CorpusTokenizer {
  std::string kind;
  std::string model;            // SentencePiece's serialized proto
  std::int64_t vocab_size = 0;  // 0 when unknown
};

// A read-only sequence of token ids.
class TokenCorpus {
 public:
  virtual ~TokenCorpus() = default;
  virtual CorpusTokenizer tokenizer() const = 0;
  virtual std::int64_t size() const = 0;
  // Writes tokens [start, start + count) as int32.
  virtual void read(std::int64_t start, int count, std::int32_t* out) const = 0;
  // Largest token id, for checking against model.vocab_size (ids of a damaged file may exceed an int32).
  virtual std::int64_t max_token() const = 0;
  // The first token whose id is >= bound (-1 if none), its id, and where it sits in its file, for the message
  // that names a bad id.
  virtual std::int64_t first_token_at_least(std::int64_t bound) const = 0;
  virtual std::int64_t token_at(std::int64_t index) const = 0;
  virtual std::int64_t byte_offset(std::int64_t index) const = 0;
};

// Bytes as tokens 0..255.
std::unique_ptr<TokenCorpus> make_byte_corpus(std::vector<std::uint8_t> bytes);
// The built-in corpus: generated English-like sentences as bytes (license-clean, learnable).
std::unique_ptr<TokenCorpus> make_builtin_corpus();
// A UTF-8 (or any) file's bytes as tokens 0..255.
std::unique_ptr<TokenCorpus> make_text_corpus(const std::string& path);
// The training corpus a config names (without the part data.valid_fraction holds out); throws Error(kUsage)
// naming the file and problem when it cannot be used.
std::unique_ptr<TokenCorpus> open_corpus(const Config& config);
// The validation corpus: data.valid_path (read as data.source says), or the last data.valid_fraction of the
// training data; null when the config names none.
std::unique_ptr<TokenCorpus> open_validation_corpus(const Config& config);

// The global sample order: sample i of the run is a window of seq_len + 1 tokens starting at a position drawn
// from a counter-based RNG keyed by (seed, i), so any rank can produce any sample without coordination.
class SampleSource {
 public:
  SampleSource(const TokenCorpus& corpus, std::uint64_t seed, int seq_len);
  // inputs = window[0, seq_len), targets = window[1, seq_len + 1).
  void sample(std::int64_t index, std::int32_t* inputs, std::int32_t* targets) const;

 private:
  const TokenCorpus& corpus_;
  std::uint64_t key_;
  int seq_len_;
  std::int64_t positions_;
};

// Which global samples one micro-batch holds: step s (1-based) uses samples [(s-1) B, s B) of the global
// order; data-parallel rank r takes the r-th contiguous B/dp of them, micro-batch m the m-th micro_batch.
inline std::int64_t first_sample_of_micro_batch(int step, int dp_rank, int micro_index, int global_batch, int dp,
                                                int micro_batch) {
  return static_cast<std::int64_t>(step - 1) * global_batch + static_cast<std::int64_t>(dp_rank) * (global_batch / dp) +
         static_cast<std::int64_t>(micro_index) * micro_batch;
}

}  // namespace weft
