// Tokenizers: a SentencePiece BPE model trained on text encodes and decodes any text losslessly (byte fallback),
// rebuilds from its serialized form with the same ids, and bad vocabularies or model files are usage errors.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "model/data.h"
#include "model/tokenizer.h"
#include "runtime/error.h"

using namespace weft;
namespace fs = std::filesystem;

namespace {

// The built-in corpus's text, one file.
std::string corpus_file(const fs::path& dir) {
  auto corpus = make_builtin_corpus();
  std::vector<std::int32_t> ids(static_cast<std::size_t>(std::min<std::int64_t>(corpus->size(), 200000)));
  corpus->read(0, static_cast<int>(ids.size()), ids.data());
  const std::string path = (dir / "corpus.txt").string();
  std::ofstream out(path);
  for (std::int32_t id : ids) out.put(static_cast<char>(id));
  return path;
}

}  // namespace

TEST_CASE("a trained SentencePiece model round-trips any text and rebuilds from its serialized form") {
  const fs::path dir = fs::temp_directory_path() / "weft-tokenizer-test";
  fs::create_directories(dir);
  const auto tokenizer = train_sentencepiece(corpus_file(dir), 400);
  CHECK(tokenizer->kind() == "sentencepiece");
  CHECK(tokenizer->vocab_size() == 400);
  const std::string seen = "The cat finds the brown dog.";
  const auto ids = tokenizer->encode(seen);
  CHECK(ids.size() < seen.size() / 2);  // merges: far fewer tokens than bytes on text like its training text
  CHECK(tokenizer->decode(ids) == seen);
  const std::string unseen = "Grüße aus 東京 🚀 #42";  // characters it never saw come through as bytes
  CHECK(tokenizer->decode(tokenizer->encode(unseen)) == unseen);
  for (std::int32_t id : tokenizer->encode(unseen)) CHECK((id >= 0 && id < 400));

  const auto rebuilt = tokenizer_from("sentencepiece", tokenizer->serialized(), "test");
  CHECK(rebuilt->encode(seen) == ids);

  const auto bytes = make_byte_tokenizer();
  CHECK(bytes->encode("Ab") == std::vector<std::int32_t>{65, 98});
  CHECK(bytes->decode({104, 105}) == "hi");
  fs::remove_all(dir);
}

TEST_CASE("tokenizer errors: an impossible vocabulary, a damaged model file, an unknown kind") {
  const fs::path dir = fs::temp_directory_path() / "weft-tokenizer-errors";
  fs::create_directories(dir);
  const std::string text = corpus_file(dir);
  auto usage_message = [](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kUsage);
      return e.what();
    }
    return "no error";
  };
  CHECK_THAT(usage_message([&] { train_sentencepiece(text, 5); }), Catch::Contains("--vocab 5"));
  std::ofstream(dir / "bad.model") << "not a model";
  CHECK_THAT(usage_message([&] { load_sentencepiece((dir / "bad.model").string()); }),
             Catch::Contains("bad.model"));
  CHECK_THAT(usage_message([&] { tokenizer_from("wordpiece", "", "ckpt"); }), Catch::Contains("wordpiece"));
  CHECK_THAT(usage_message([&] { tokenizer_from("sentencepiece", "garbage", "ckpt"); }), Catch::Contains("ckpt"));
  fs::remove_all(dir);
}

TEST_CASE("a tokenizer model or training text that is a FIFO or a device is refused unread, never waited on") {
  const fs::path dir = fs::temp_directory_path() / ("weft-tokenizer-fifo-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string fifo = (dir / "fifo").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  auto refused = [](auto&& fn, const std::string& expected) {
    try {
      fn();
      FAIL("expected a refusal: " << expected);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kUsage);
      CHECK_THAT(e.what(), Catch::Contains(expected));
    }
  };
  refused([&] { load_sentencepiece(fifo); }, fifo + ": cannot read tokenizer model: it is a FIFO");
  refused([&] { load_sentencepiece("/dev/zero"); }, "/dev/zero: cannot read tokenizer model: it is a character device");
  refused([&] { train_sentencepiece(fifo, 300); }, fifo + ": cannot read text: it is a FIFO");
  fs::remove_all(dir);
}
