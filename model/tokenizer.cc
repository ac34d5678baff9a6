#include "model/tokenizer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "model/sentencepiece_plugin.h"
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

constexpr const char* kPluginName = "libweft_sentencepiece.so";

// The plugin's functions, loaded once per process from beside the running binary, or from the build tree it was
// built in (tests, libweft).
struct Plugin {
  decltype(&weft_spm_load) load;
  decltype(&weft_spm_unload) unload;
  decltype(&weft_spm_pieces) pieces;
  decltype(&weft_spm_train) train;
  decltype(&weft_spm_encode) encode;
  decltype(&weft_spm_decode) decode;
  decltype(&weft_spm_free) free;

  static const Plugin& get() {
    static const Plugin plugin = open();
    return plugin;
  }

  // Throws Error(kUsage) with the plugin's message, freeing it.
  [[noreturn]] void fail(const std::string& what, char* error) const {
    const std::string message = error ? error : "unknown error";
    this->free(error);
    fail_usage("{}: {}", what, message);
  }

 private:
  static Plugin open() {
    std::error_code ignored;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ignored).parent_path();
    std::vector<std::filesystem::path> places = {self / kPluginName, self / ".." / "lib" / kPluginName};
#ifdef WEFT_PLUGIN_BUILD_DIR
    places.push_back(std::filesystem::path(WEFT_PLUGIN_BUILD_DIR) / kPluginName);
#endif
    // RTLD_DEEPBIND keeps SentencePiece on its own protobuf copy; the sanitizers' runtime refuses it.
#if defined(__SANITIZE_ADDRESS__)
    const int flags = RTLD_NOW | RTLD_LOCAL;
#else
    const int flags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
#endif
    std::string tried;
    for (const auto& place : places) {
      if (!std::filesystem::exists(place, ignored)) {
        tried += fmt::format("{}{} (missing)", tried.empty() ? "" : ", ", place.string());
        continue;
      }
      void* handle = dlopen(place.c_str(), flags);
      if (!handle) fail_usage("cannot load weft's SentencePiece plugin {}: {}", place.string(), dlerror());
      auto symbol = [&](const char* name) {
        void* found = dlsym(handle, name);
        if (!found) fail_usage("weft's SentencePiece plugin {} lacks {}", place.string(), name);
        return found;
      };
      Plugin p;
      p.load = reinterpret_cast<decltype(p.load)>(symbol("weft_spm_load"));
      p.unload = reinterpret_cast<decltype(p.unload)>(symbol("weft_spm_unload"));
      p.pieces = reinterpret_cast<decltype(p.pieces)>(symbol("weft_spm_pieces"));
      p.train = reinterpret_cast<decltype(p.train)>(symbol("weft_spm_train"));
      p.encode = reinterpret_cast<decltype(p.encode)>(symbol("weft_spm_encode"));
      p.decode = reinterpret_cast<decltype(p.decode)>(symbol("weft_spm_decode"));
      p.free = reinterpret_cast<decltype(p.free)>(symbol("weft_spm_free"));
      return p;
    }
    fail_usage("SentencePiece tokenizers need weft's plugin {}, which is not installed beside weft: tried {}",
               kPluginName, tried);
  }
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // `where` names the model's origin in errors.
  SentencePieceTokenizer(std::string model, const std::string& where) : model_(std::move(model)) {
    const Plugin& plugin = Plugin::get();
    char* error = nullptr;
    processor_ = plugin.load(model_.data(), model_.size(), &error);
    if (!processor_) plugin.fail(where + ": not a usable SentencePiece model", error);
  }
  ~SentencePieceTokenizer() override { Plugin::get().unload(processor_); }
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  std::string_view kind() const override { return "sentencepiece"; }
  int vocab_size() const override { return Plugin::get().pieces(processor_); }
  std::vector<std::int32_t> encode(std::string_view text) const override {
    const Plugin& plugin = Plugin::get();
    int* ids = nullptr;
    std::size_t count = 0;
    char* error = nullptr;
    if (plugin.encode(processor_, text.data(), text.size(), &ids, &count, &error) != 0)
      plugin.fail("SentencePiece cannot encode the text", error);
    std::vector<std::int32_t> out(ids, ids + count);
    plugin.free(ids);
    return out;
  }
  std::string decode(const std::vector<std::int32_t>& ids) const override {
    const Plugin& plugin = Plugin::get();
    const std::vector<int> in(ids.begin(), ids.end());
    char* text = nullptr;
    std::size_t size = 0;
    char* error = nullptr;
    if (plugin.decode(processor_, in.data(), in.size(), &text, &size, &error) != 0)
      plugin.fail("SentencePiece cannot decode the ids", error);
    std::string out(text, size);
    plugin.free(text);
    return out;
  }
  std::string serialized() const override { return model_; }

 private:
  std::string model_;
  void* processor_ = nullptr;
};

// A buffer the plugin allocated, as a string.
std::string take(const Plugin& plugin, char* buffer, std::size_t size) {
  std::string out(buffer, size);
  plugin.free(buffer);
  return out;
}

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
  const std::string options = fmt::format(
      "input={}\nmodel_type=bpe\nvocab_size={}\nbyte_fallback=true\ncharacter_coverage=1.0\nsplit_digits=true\n"
      "num_threads=1\nminloglevel=2\ninput_sentence_size=2000000\nshuffle_input_sentence=true\n"
      "max_sentence_length=16384",
      text_path, vocab);
  const Plugin& plugin = Plugin::get();
  char* model = nullptr;
  std::size_t size = 0;
  char* error = nullptr;
  if (plugin.train(options.c_str(), &model, &size, &error) != 0)
    plugin.fail(fmt::format("--vocab {}: SentencePiece could not train on {}", vocab, text_path), error);
  return std::make_unique<SentencePieceTokenizer>(take(plugin, model, size), text_path);
}

std::unique_ptr<Tokenizer> tokenizer_from(std::string_view kind, std::string_view serialized,
                                          const std::string& where) {
  if (kind == "bytes") return make_byte_tokenizer();
  if (kind == "sentencepiece") return std::make_unique<SentencePieceTokenizer>(std::string(serialized), where);
  fail_usage("{}: unknown tokenizer \"{}\" (weft knows bytes and sentencepiece)", where, kind);
}

}  // namespace weft
