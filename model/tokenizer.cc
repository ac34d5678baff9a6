#include "model/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <unistd.h>

#include <unordered_map>

#include "runtime/error.h"
#include "runtime/file_io.h"

namespace weft {
namespace {

class ByteTokenizer final : public Tokenizer {
 public:
  std::string_view kind() const override { return "bytes"; }
  int vocab_size() const override { return 256; }
  std::vector<std::int32_t> encode(std::string_view text) const override {
    return std::vector<std::int32_t>(reinterpret_cast<const unsigned char*>(text.data()),
                                     reinterpret_cast<const unsigned char*>(text.data()) + text.size());
  }
  std::string decode(const std::vector<std::int32_t>& ids) const override {
    std::string text;
    for (std::int32_t id : ids) text.push_back(static_cast<char>(id >= 0 && id < 256 ? id : '?'));
    return text;
  }
  std::string serialized() const override { return {}; }
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // `where` names the model's origin in errors.
  SentencePieceTokenizer(std::string_view serialized, const std::string& where) {
    const auto status = processor_.LoadFromSerializedProto(serialized);
    if (!status.ok()) fail_usage("{}: not a usable SentencePiece model: {}", where, status.ToString());
  }
  std::string_view kind() const override { return "sentencepiece"; }
  int vocab_size() const override { return processor_.GetPieceSize(); }
  std::vector<std::int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    const auto status = processor_.Encode(text, &ids);
    if (!status.ok()) fail_usage("SentencePiece cannot encode the text: {}", status.ToString());
    return {ids.begin(), ids.end()};
  }
  std::string decode(const std::vector<std::int32_t>& ids) const override {
    std::string text;
    const auto status = processor_.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
    if (!status.ok()) fail_usage("SentencePiece cannot decode ids: {}", status.ToString());
    return text;
  }
  std::string serialized() const override { return processor_.serialized_model_proto(); }

 private:
  sentencepiece::SentencePieceProcessor processor_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path) {
  // Read here, not by SentencePiece: a FIFO or a device is refused unread, and a model is megabytes at most.
  const std::string serialized = read_regular_file(model_path, "tokenizer model", std::size_t{256} << 20);
  return std::make_unique<SentencePieceTokenizer>(serialized, "--tokenizer-model " + model_path);
}

std::unique_ptr<Tokenizer> train_sentencepiece(const std::string& text_path, int vocab) {
  ::close(open_regular_file(text_path, "text"));  // SentencePiece reads it; a FIFO would block it forever
  // Byte fallback: any text encodes (unknown characters become their UTF-8 bytes), as Llama's tokenizer does.
  const std::unordered_map<std::string, std::string> options = {
      {"input", text_path},          {"model_type", "bpe"},          {"vocab_size", std::to_string(vocab)},
      {"byte_fallback", "true"},     {"character_coverage", "1.0"},  {"split_digits", "true"},
      {"num_threads", "1"},          {"minloglevel", "2"},           {"input_sentence_size", "2000000"},
      {"shuffle_input_sentence", "true"}, {"max_sentence_length", "16384"},
  };
  std::string model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(options, nullptr, &model);
  if (!status.ok())
    fail_usage("--vocab {}: SentencePiece could not train on {}: {}", vocab, text_path, status.ToString());
  return std::make_unique<SentencePieceTokenizer>(model, text_path);
}

std::unique_ptr<Tokenizer> tokenizer_from(std::string_view kind, std::string_view serialized,
                                          const std::string& where) {
  if (kind == "bytes") return make_byte_tokenizer();
  if (kind == "sentencepiece") return std::make_unique<SentencePieceTokenizer>(serialized, where);
  fail_usage("{}: unknown tokenizer \"{}\" (weft knows bytes and sentencepiece)", where, kind);
}

}  // namespace weft
