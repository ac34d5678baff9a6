// Token files, memory-mapped: weft's own (written by `weft data prepare`; its header names the token width, the
// count, the vocabulary and the tokenizer that made the ids), llm.c's .bin shards, and plain little-endian uint16 or
// uint32 arrays (nanoGPT's train.bin), read as they are.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/data.h"
#include "model/tokenizer.h"
#include "runtime/config.h"

namespace weft {

// weft's format, version 2: "WEFTTOK1", u32 version, u32 bytes per token (2 or 4), u64 token count, u32 vocabulary
// size, u32 length of the tokenizer's kind, u64 length of its model; then the kind ("bytes", "sentencepiece"), the
// model (SentencePiece's serialized proto), zeros to a multiple of 8 bytes, and the tokens. Version 1 (a 32-byte
// header, no tokenizer) is still read.
inline constexpr std::uint32_t kTokenFileVersion = 2;

struct TokenFileInfo {
  TokenFormat format = TokenFormat::kWeft;  // as detected when asked for kAuto
  int width = 2;                            // bytes per token
  std::int64_t count = 0;
  std::int64_t data_offset = 0;  // where the first token starts
  std::int64_t vocab_size = 0;   // the tokenizer's vocabulary, 0 when the file does not say
  std::string tokenizer;         // its kind, "" when the file does not say
  std::string tokenizer_model;   // its serialized model (SentencePiece)
};

// The layout of the token file at `path` read as `format` (kAuto: weft's or llm.c's by their magic numbers; raw
// arrays must be named). Only regular files are read; Error(kUsage) naming the file and what is wrong otherwise.
TokenFileInfo read_token_file_info(const std::string& path, TokenFormat format = TokenFormat::kAuto);
std::unique_ptr<TokenCorpus> open_token_file(const std::string& path, TokenFormat format = TokenFormat::kAuto);

// Written atomically (a temporary beside `path`, read back, renamed over it), so a job reading the old file keeps
// it. `tokenizer` (may be null) is recorded with its model.
void write_token_file(const std::string& path, const std::vector<std::int32_t>& tokens, std::int32_t vocab_size,
                      const Tokenizer* tokenizer = nullptr);
// Text file -> token file through `tokenizer`; returns the token count. Refuses an output that is the input.
std::int64_t prepare_token_file(const std::string& text_path, const std::string& out_path, const Tokenizer& tokenizer);

}  // namespace weft
