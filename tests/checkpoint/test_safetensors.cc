// The safetensors writer's inputs: any UTF-8 name round-trips through the header, anything else is refused, and the
// written file is read back before it replaces the old one.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
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
