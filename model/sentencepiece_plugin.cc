// libweft_sentencepiece.so: SentencePiece behind a C interface (see sentencepiece_plugin.h for why).
#include "model/sentencepiece_plugin.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

char* copy_out(const std::string& text) {
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  std::memcpy(out, text.data(), text.size());
  out[text.size()] = '\0';
  return out;
}

int fail(char** error, const std::string& message) {
  *error = copy_out(message);
  return 1;
}

}  // namespace

extern "C" {

void* weft_spm_load(const char* model, std::size_t size, char** error) {
  auto* processor = new sentencepiece::SentencePieceProcessor();
  const auto status = processor->LoadFromSerializedProto(std::string(model, size));
  if (!status.ok()) {
    delete processor;
    fail(error, status.ToString());
    return nullptr;
  }
  return processor;
}

void weft_spm_unload(void* processor) { delete static_cast<sentencepiece::SentencePieceProcessor*>(processor); }

int weft_spm_pieces(void* processor) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(processor)->GetPieceSize();
}

int weft_spm_train(const char* options, char** model, std::size_t* size, char** error) {
  std::unordered_map<std::string, std::string> flags;
  std::string line;
  for (const char* c = options;; ++c) {
    if (*c == '\n' || *c == '\0') {
      const auto equals = line.find('=');
      if (equals != std::string::npos) flags[line.substr(0, equals)] = line.substr(equals + 1);
      line.clear();
      if (*c == '\0') break;
    } else {
      line.push_back(*c);
    }
  }
  std::string serialized;
  const auto status = sentencepiece::SentencePieceTrainer::Train(flags, nullptr, &serialized);
  if (!status.ok()) return fail(error, status.ToString());
  *model = copy_out(serialized);
  *size = serialized.size();
  return 0;
}

int weft_spm_encode(void* processor, const char* text, std::size_t size, int** ids, std::size_t* count,
                    char** error) {
  std::vector<int> out;
  const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(processor)->Encode(
      std::string_view(text, size), &out);
  if (!status.ok()) return fail(error, status.ToString());
  *ids = static_cast<int*>(std::malloc(sizeof(int) * (out.size() + 1)));
  std::memcpy(*ids, out.data(), sizeof(int) * out.size());
  *count = out.size();
  return 0;
}

int weft_spm_decode(void* processor, const int* ids, std::size_t count, char** text, std::size_t* size,
                    char** error) {
  std::string out;
  const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(processor)->Decode(
      std::vector<int>(ids, ids + count), &out);
  if (!status.ok()) return fail(error, status.ToString());
  *text = copy_out(out);
  *size = out.size();
  return 0;
}

void weft_spm_free(void* buffer) { std::free(buffer); }

}  // extern "C"
