// Tokenizers: text to the model's token ids and back. Byte-level (ids 0..255, data.source text and builtin) or a
// SentencePiece model (Debian's libsentencepiece), trained by `weft data prepare --tokenizer sentencepiece` or
// loaded from a tokenizer.model. Token files and checkpoints carry the tokenizer that made their ids, so that
// `weft generate` prints text through the same one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace weft {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string_view kind() const = 0;  // "bytes" or "sentencepiece"
  virtual int vocab_size() const = 0;
  virtual std::vector<std::int32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(const std::vector<std::int32_t>& ids) const = 0;
  // What tokenizer_from() rebuilds it from: the SentencePiece model's serialized proto; empty for bytes.
  virtual std::string serialized() const = 0;
};

std::unique_ptr<Tokenizer> make_byte_tokenizer();
// A SentencePiece model file (tokenizer.model); Error(kUsage) naming it when it cannot be loaded.
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path);
// Trains a byte-fallback BPE SentencePiece model of `vocab` pieces on a text file (each line a sentence).
std::unique_ptr<Tokenizer> train_sentencepiece(const std::string& text_path, int vocab);
// The tokenizer of `kind` from what serialized() returned; Error(kUsage) naming `where` for an unknown kind or a
// damaged model.
std::unique_ptr<Tokenizer> tokenizer_from(std::string_view kind, std::string_view serialized, const std::string& where);

}  // namespace weft
