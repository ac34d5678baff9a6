// Corpora, token files and the global sample order that every layout slices the same way.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <set>

#include "model/data.h"
#include "model/token_file.h"
#include "runtime/error.h"
#include "tests/test_util.h"

using namespace weft;

namespace {

std::string temp_path(const std::string& name) { return "/tmp/weft_test_data_" + name; }

}  // namespace

TEST_CASE("a sample's targets are its inputs shifted by one token, and samples are reproducible") {
  auto corpus = make_builtin_corpus();
  SampleSource a(*corpus, 11, 32), b(*corpus, 11, 32), c(*corpus, 12, 32);
  std::vector<std::int32_t> in1(32), t1(32), in2(32), t2(32), in3(32), t3(32);
  a.sample(1234, in1.data(), t1.data());
  b.sample(1234, in2.data(), t2.data());
  c.sample(1234, in3.data(), t3.data());
  CHECK(in1 == in2);
  CHECK(t1 == t2);
  CHECK(in1 != in3);  // another seed, another order
  for (int i = 0; i + 1 < 32; ++i) CHECK(t1[static_cast<std::size_t>(i)] == in1[static_cast<std::size_t>(i) + 1]);
}

TEST_CASE("every data-parallel split of a step covers the same global samples exactly once") {
  const int global_batch = 24;
  for (int dp : {1, 2, 3, 4, 6}) {
    for (int micro : {1, 2, 4}) {
      if (global_batch % (dp * micro) != 0) continue;
      std::multiset<std::int64_t> seen;
      for (int rank = 0; rank < dp; ++rank)
        for (int m = 0; m < global_batch / (dp * micro); ++m)
          for (int row = 0; row < micro; ++row)
            seen.insert(first_sample_of_micro_batch(3, rank, m, global_batch, dp, micro) + row);
      REQUIRE(seen.size() == static_cast<std::size_t>(global_batch));
      CHECK(*seen.begin() == 2 * global_batch);
      CHECK(*seen.rbegin() == 3 * global_batch - 1);
      CHECK(std::set<std::int64_t>(seen.begin(), seen.end()).size() == seen.size());
    }
  }
}

TEST_CASE("the built-in corpus is learnable English-like text") {
  auto corpus = make_builtin_corpus();
  CHECK(corpus->size() >= (1 << 20));
  CHECK(corpus->max_token() < 128);
  std::vector<std::int32_t> head(200);
  corpus->read(0, 200, head.data());
  std::string text(head.begin(), head.end());
  CHECK(text.find("the ") != std::string::npos);
}

TEST_CASE("a prepared token file reads back the text's bytes") {
  const std::string text_path = temp_path("input.txt"), token_path = temp_path("tokens.tok");
  std::ofstream(text_path) << "héllo, weft\n";
  CHECK(prepare_token_file(text_path, token_path, *make_byte_tokenizer()) == 13);  // é is two bytes in UTF-8
  auto corpus = open_token_file(token_path);
  std::vector<std::int32_t> tokens(13);
  corpus->read(0, 13, tokens.data());
  CHECK(tokens[0] == 'h');
  CHECK(tokens[1] == 0xc3);
  CHECK(corpus->max_token() == 0xc3);
  std::remove(text_path.c_str());
  std::remove(token_path.c_str());
}

TEST_CASE("damaged token files are refused with the file named") {
  const std::string path = temp_path("bad.tok");
  write_token_file(path, {1, 2, 3, 4, 5}, 256);
  std::string good;
  {
    std::ifstream in(path, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  auto write = [&](const std::string& bytes) { std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes; };
  auto expect_refused = [&](const std::string& fragment) {
    try {
      open_token_file(path);
      FAIL("expected an error mentioning " << fragment);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kUsage);
      CHECK_THAT(e.what(), Catch::Contains(path) && Catch::Contains(fragment));
    }
  };
  write(good.substr(0, good.size() - 1));
  expect_refused("header says 5 tokens");
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  write(bad_magic);
  expect_refused("no magic number");  // not weft's, not llm.c's: a raw array must be named
  std::string new_version = good;
  new_version[8] = 9;
  write(new_version);
  expect_refused("format version 9");
  write("short");
  expect_refused("no magic number");
  write(good.substr(0, 20));
  expect_refused("shorter than its header");
  std::remove(path.c_str());
  CHECK_THROWS_AS(open_token_file(path), Error);
}

TEST_CASE("token ids are checked against model.vocab_size with the byte offset named, never masked") {
  const std::string path = temp_path("ids.tok");
  write_token_file(path, {1, 2, 70000, 3, 4, 5, 6, 7, 8, 9}, 100000);  // 4-byte tokens
  Config config;
  config.data.source = DataSource::kTokens;
  config.data.path = path;
  config.model.seq_len = 4;
  config.model.vocab_size = 100000;
  CHECK(open_corpus(config)->max_token() == 70000);
  config.model.vocab_size = 1000;
  CHECK_THROWS_WITH(open_corpus(config), Catch::Contains(path + ": token 2 (at byte offset 48) is id 70000") &&
                                             Catch::Contains("model.vocab_size = 1000"));
  std::remove(path.c_str());
}

TEST_CASE("rewriting a token file leaves a job that maps the old one reading the old tokens") {
  // A rename replaces the name, not the bytes under an existing mapping: no SIGBUS, no changed data mid-run.
  const std::string path = temp_path("replaced.tok");
  write_token_file(path, {10, 11, 12, 13, 14, 15}, 256);
  auto before = open_token_file(path);
  write_token_file(path, {20, 21, 22}, 256);
  std::vector<std::int32_t> tokens(6);
  before->read(0, 6, tokens.data());
  CHECK(tokens == std::vector<std::int32_t>{10, 11, 12, 13, 14, 15});
  CHECK(open_token_file(path)->size() == 3);
  // What made the ids is what the job read, too (checkpoints record it): not the new file's tokenizer.
  const auto bytes = make_byte_tokenizer();
  write_token_file(path, {30, 31, 32}, 256, bytes.get());
  CHECK(before->tokenizer().kind.empty());
  CHECK(open_token_file(path)->tokenizer().kind == "bytes");
  std::remove(path.c_str());
}

namespace {

template <typename T>
void write_raw(const std::string& path, const std::vector<T>& values, const std::vector<std::int32_t>& header = {}) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(header.data()), static_cast<std::streamsize>(header.size() * 4));
  out.write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(T)));
}

std::vector<std::int32_t> all_tokens(const TokenCorpus& corpus) {
  std::vector<std::int32_t> out(static_cast<std::size_t>(corpus.size()));
  corpus.read(0, static_cast<int>(out.size()), out.data());
  return out;
}

}  // namespace

TEST_CASE("token files of other tools are read as they are: llm.c's .bin, raw uint16 and uint32, weft's version 1") {
  const std::vector<std::uint16_t> ids = {5, 60000, 7, 8, 9};
  const std::vector<std::int32_t> expected(ids.begin(), ids.end());
  const std::string llmc = temp_path("llmc.bin");
  std::vector<std::int32_t> header(256, 0);
  header[0] = 20240520, header[1] = 1, header[2] = 5;
  write_raw(llmc, ids, header);
  CHECK(read_token_file_info(llmc).format == TokenFormat::kLlmc);  // told by its magic number
  CHECK(all_tokens(*open_token_file(llmc)) == expected);
  CHECK(open_token_file(llmc)->byte_offset(1) == 1026);

  const std::string raw16 = temp_path("raw16.bin"), raw32 = temp_path("raw32.bin");
  write_raw(raw16, ids);
  write_raw(raw32, std::vector<std::uint32_t>{70000, 1, 2});
  CHECK(all_tokens(*open_token_file(raw16, TokenFormat::kUint16)) == expected);
  CHECK(all_tokens(*open_token_file(raw32, TokenFormat::kUint32)) == std::vector<std::int32_t>{70000, 1, 2});
  // Without a magic number the format must be named, not guessed.
  CHECK_THROWS_WITH(open_token_file(raw16), Catch::Contains(raw16) && Catch::Contains("data.format"));
  write_raw(raw16, std::vector<std::uint8_t>{1, 2, 3});
  CHECK_THROWS_WITH(open_token_file(raw16, TokenFormat::kUint16), Catch::Contains("not a whole number of uint16"));
  header[2] = 6;  // one token more than the file holds
  write_raw(llmc, ids, header);
  CHECK_THROWS_WITH(open_token_file(llmc), Catch::Contains("header says 6 tokens"));

  // Version 1 (weft before tokenizers were recorded): a 32-byte header, then the tokens.
  const std::string v1 = temp_path("v1.tok");
  std::vector<std::int32_t> v1_header = {0x54464557, 0x314b4f54, 1, 2, 5, 0, 256, 0};  // "WEFTTOK1", 1, 2, 5, 256
  write_raw(v1, std::vector<std::uint16_t>{1, 2, 3, 4, 5}, v1_header);
  CHECK(all_tokens(*open_token_file(v1)) == std::vector<std::int32_t>{1, 2, 3, 4, 5});
  CHECK(read_token_file_info(v1).tokenizer.empty());
  for (const auto& path : {llmc, raw16, raw32, v1}) std::remove(path.c_str());
}

TEST_CASE("a token file records its tokenizer, and a model smaller than its vocabulary is refused") {
  const std::string path = temp_path("tokenizer.tok");
  const auto bytes = make_byte_tokenizer();
  std::vector<std::int32_t> tokens(200, 7);
  write_token_file(path, tokens, bytes->vocab_size(), bytes.get());
  const TokenFileInfo info = read_token_file_info(path);
  CHECK(info.tokenizer == "bytes");
  CHECK(info.vocab_size == 256);
  CHECK(all_tokens(*open_token_file(path)) == tokens);
  Config config;
  config.data.source = DataSource::kTokens;
  config.data.path = path;
  config.model.seq_len = 16;
  config.model.vocab_size = 128;  // every id fits, but the tokenizer can produce 256
  CHECK_THROWS_WITH(open_corpus(config), Catch::Contains(path) && Catch::Contains("vocabulary of 256") &&
                                             Catch::Contains("model.vocab_size = 128"));
  std::remove(path.c_str());
}
