// `weft data prepare`: a text file to a token file that `data.source: tokens` memory-maps, through byte-level
// tokens, a SentencePiece model trained on the text, or an existing tokenizer.model; the file records which.
#include <fmt/format.h>

#include "launcher/commands.h"
#include "model/token_file.h"
#include "model/tokenizer.h"
#include "runtime/error.h"

namespace weft {
namespace {

std::unique_ptr<Tokenizer> tokenizer_for(const DataPrepareOptions& o) {
  const bool existing = !o.tokenizer_model.empty();
  const std::string kind = o.tokenizer.empty() ? (existing ? "sentencepiece" : "bytes") : o.tokenizer;
  if (kind == "bytes") {
    if (existing || o.vocab != 0)
      fail_usage("--tokenizer bytes takes no --vocab or --tokenizer-model (its vocabulary is the 256 byte values)");
    return make_byte_tokenizer();
  }
  if (existing) {
    if (o.vocab != 0) fail_usage("--vocab {} with --tokenizer-model: the model's vocabulary is fixed; drop --vocab", o.vocab);
    return load_sentencepiece(o.tokenizer_model);
  }
  if (o.vocab < 260 || o.vocab > 1 << 20)
    fail_usage("--tokenizer sentencepiece needs --vocab N in 260..{} (256 byte pieces, the special ones, and merges), "
               "or --tokenizer-model FILE",
               1 << 20);
  return train_sentencepiece(o.input, o.vocab);
}

}  // namespace

int run_data_prepare(const DataPrepareOptions& options) {
  const auto tokenizer = tokenizer_for(options);
  const std::int64_t tokens = prepare_token_file(options.input, options.output, *tokenizer);
  fmt::print("wrote {} tokens ({}, vocabulary {}) from {} to {}\n", tokens, tokenizer->kind(), tokenizer->vocab_size(),
             options.input, options.output);
  return 0;
}

}  // namespace weft
