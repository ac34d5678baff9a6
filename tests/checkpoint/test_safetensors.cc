// safetensors files: any UTF-8 name round-trips through the header, anything else is refused, the written file is
// read back before it replaces the old one, and the reader takes only files whose every range and size adds up.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "runtime/error.h"

using namespace weft;
using safetensors::NamedTensor;

TEST_CASE("names with quotes, backslashes, control characters and non-ASCII letters round-trip through the header") {
  const std::vector<float> values(6, 1.5f);
  const std::vector<NamedTensor> tensors = {
      {"quote\"back\\slash\nnew\x01line", {2, 3}, values}, {"\xc3\xa9t\xc3\xa9 \xe2\x9c\x93", {6}, values}, {"scalar", {}, {1.5f}}};
  const std::string header = safetensors::header(tensors, {{"format", "pt"}});
  CHECK(header.size() % 8 == 0);
  const auto entries = safetensors::parse_header(header, 52);
  REQUIRE(entries.size() == 3);
  CHECK(entries[0].name == "quote\"back\\slash\nnew\x01line");
  CHECK(entries[0].shape == std::vector<std::int64_t>{2, 3});
  CHECK(entries[2].name == "\xc3\xa9t\xc3\xa9 \xe2\x9c\x93");
  CHECK(entries[1].shape.empty());
}

TEST_CASE("an empty, reserved, repeated or non-UTF-8 name, or a shape that does not fit the values, is refused") {
  const std::vector<float> values(4, 0.0f);
  const auto refused = [&](std::vector<NamedTensor> tensors, const char* fragment) {
    try {
      safetensors::header(tensors, {});
      FAIL("expected a refusal mentioning " << fragment);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kUsage);
      CHECK_THAT(e.what(), Catch::Contains(fragment));
    }
  };
  refused({{"", {4}, values}}, "empty, reserved or not UTF-8");
  refused({{"__metadata__", {4}, values}}, "empty, reserved or not UTF-8");
  refused({{"\xff\xfe", {4}, values}}, "empty, reserved or not UTF-8");
  refused({{"a", {4}, values}, {"a", {4}, values}}, "appears twice");
  refused({{"a", {3}, values}}, "has 4 values for a shape of 3");
  refused({{"a", {-1, -4}, values}}, "negative or too large shape");
}

TEST_CASE("safetensors::write replaces a file only with one that reads back") {
  const std::string path = "/tmp/weft_safetensors_" + std::to_string(getpid()) + ".safetensors";
  const std::vector<float> values = {1, 2, 3, 4};
  safetensors::write(path, {{"w", {2, 2}, values}}, {}, "test");
  std::ifstream in(path, std::ios::binary);
  std::uint64_t length = 0;
  in.read(reinterpret_cast<char*>(&length), 8);
  CHECK(std::filesystem::file_size(path) == 8 + length + 16);
  std::filesystem::remove(path);
  CHECK_THROWS_AS(safetensors::write("/nonexistent/x.safetensors", {{"w", {2, 2}, values}}, {}, "test"),
                  Error);
}

namespace {

// A file of `header` (the JSON text) and `data_bytes` bytes of data, as a crafted download would be.
void craft(const std::string& path, const std::string& header, std::size_t data_bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const std::uint64_t length = header.size();
  out.write(reinterpret_cast<const char*>(&length), 8);
  out << header << std::string(data_bytes, '\x01');
}

void expect_refused(const std::string& path, const char* fragment) {
  try {
    safetensors::Reader reader(path);
    FAIL("expected a refusal mentioning " << fragment);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kUsage);
    CHECK_THAT(e.what(), Catch::Contains(fragment));
  }
}

}  // namespace

TEST_CASE("safetensors::Reader reads back what safetensors::write wrote, from the file or from its folder") {
  const std::string folder = "/tmp/weft_safetensors_read_" + std::to_string(getpid());
  std::filesystem::create_directories(folder);
  const std::vector<float> wide = {0.25f, -1.5f, 3.0f, 7.125f, -0.0625f, 42.0f}, narrow = {-2.5f, 9.75f, 0.5f};
  safetensors::write(folder + "/model.safetensors", {{"wide", {2, 3}, wide}, {"narrow", {3}, narrow}});
  for (const std::string& path : {folder + "/model.safetensors", folder}) {
    const safetensors::Reader reader(path);
    REQUIRE(reader.tensors().size() == 2);
    CHECK(reader.info("wide").shape == std::vector<std::int64_t>{2, 3});
    CHECK(reader.read("wide") == wide);
    CHECK(reader.read("narrow") == narrow);
  }
  std::filesystem::remove_all(folder);
}

TEST_CASE("safetensors::Reader refuses ranges, shapes and shard names that do not add up, and what is not a file") {
  const std::string folder = "/tmp/weft_safetensors_bad_" + std::to_string(getpid());
  std::filesystem::create_directories(folder);
  const std::string file = folder + "/model.safetensors";
  craft(file, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}})", 12);
  expect_refused(file, "does not fit its byte range");
  // 2^32 x 2^32 x 4 elements wrap to 0 in 64 bits: they must not pass for the empty range [0, 0].
  craft(file, R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,0]}})", 0);
  expect_refused(file, "does not fit its byte range");
  // Offsets are whole numbers read exactly; 2^64 is refused rather than cast.
  craft(file, R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551616,0]}})", 8);
  expect_refused(file, "number too large");
  craft(file, R"({"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", 8);
  expect_refused(file, "unknown dtype Q4");
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    const std::uint64_t length = std::uint64_t{1} << 40;  // a header longer than the file
    out.write(reinterpret_cast<const char*>(&length), 8);
  }
  expect_refused(file, "not a safetensors file (header length 1099511627776 in a file of 8 bytes)");
  // A sharded folder's index may name only files in the folder itself.
  std::filesystem::remove(file);
  std::ofstream(folder + "/model.safetensors.index.json") << R"({"weight_map": {"w": "../outside.safetensors"}})";
  expect_refused(folder, "weight_map[w] is not a file name in this folder");
  std::ofstream(folder + "/model.safetensors.index.json") << R"({"weight_map": {"w": "shard.safetensors"}})";
  REQUIRE(::mkfifo((folder + "/shard.safetensors").c_str(), 0600) == 0);
  expect_refused(folder, "shard.safetensors: cannot read safetensors file: it is a FIFO");  // never blocks
  std::filesystem::remove_all(folder);
}
