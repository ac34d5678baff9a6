// Hostile, unbounded or impossible input through the weft binary: refused with one line naming it and exit 2 before
// anything runs, never a crash, a hang or a silent default (issue 13, items 4-8, 11, 13, 14).
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "checkpoint/dir_lock.h"
#include "checkpoint/safetensors.h"
#include "manifest.pb.h"
#include "tests/launcher/cli_util.h"

namespace fs = std::filesystem;
using weft::testing::Outcome;
using weft::testing::run_weft;
using weft::testing::run_weft_within;
using weft::testing::tiny;

namespace {

// A fresh path of this test process (ctest runs test cases of one file side by side).
std::string scratch(const std::string& name) {
  const std::string path = "/tmp/weft_bounded_" + std::to_string(getpid()) + "_" + name;
  fs::remove_all(path);
  return path;
}

// With Started::kNo, nothing may have begun training either (a resume builds the model first, then reads).
enum class Started { kNo, kMayHave };

void expect_refused(const Outcome& outcome, int code, const std::vector<std::string>& fragments,
                    Started started = Started::kNo) {
  INFO(outcome.output);
  CHECK(outcome.exit_code == code);
  for (const std::string& fragment : fragments) CHECK_THAT(outcome.output, Catch::Contains(fragment));
  CHECK_THAT(outcome.output, !Catch::Contains("unexpected error"));
  if (started == Started::kNo) CHECK_THAT(outcome.output, !Catch::Contains("training "));
}

}  // namespace

TEST_CASE("comm.timeout_s outside 0.1 to 604800 s is refused, never turned into a zero or overflowed deadline") {
  for (const std::string value : {"0.0005", "1e16", "0", "inf"})
    expect_refused(run_weft_within(30, "train " + tiny() + " --set comm.timeout_s=" + value), 2,
                   {"comm.timeout_s = " + value, "expected a number in [0.1, 604800]"});
}

TEST_CASE("a config, text or token path that is a device, a FIFO or too large is refused without reading it") {
  const std::string fifo = scratch("fifo");
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  expect_refused(run_weft_within(30, "train /dev/zero"), 2, {"/dev/zero: cannot read config: it is a character device"});
  expect_refused(run_weft_within(30, "train " + fifo), 2, {fifo + ": cannot read config: it is a FIFO"});
  expect_refused(run_weft_within(30, "train " + tiny() + " --set data.source=text --set data.path=/dev/urandom"), 2,
                 {"data.path = /dev/urandom: is a character device"});
  expect_refused(run_weft_within(30, "train " + tiny() + " --set data.source=tokens --set data.path=" + fifo), 2,
                 {"data.path = " + fifo + ": is a FIFO"});
  expect_refused(run_weft_within(30, "data prepare --input " + fifo + " --output " + scratch("out.tok")), 2,
                 {fifo + ": cannot read text: it is a FIFO"});
  const std::string big = scratch("big.yaml");
  std::ofstream(big) << std::string(std::size_t{2} << 20, '#');
  expect_refused(run_weft_within(30, "train " + big), 2, {big + ": the config is 2.0 MiB, more than the 1.0 MiB"});
  fs::remove(fifo);
  fs::remove(big);
}

TEST_CASE("metrics on a full device exit 1 naming the file, an unwritable trace path stops before training") {
  const Outcome full = run_weft("train " + tiny() + " --set train.steps=2 --metrics /dev/full");
  INFO(full.output);
  CHECK(full.exit_code == 1);
  CHECK_THAT(full.output, Catch::Contains("--metrics /dev/full: writing failed: No space left on device"));
  expect_refused(run_weft("train " + tiny() + " --set train.steps=2 --trace /nonexistent/dir/t.json"), 2,
                 {"--trace /nonexistent/dir/t.json: cannot create a file beside it: No such file or directory"});
}

TEST_CASE("checkpoint.init_from's config.json and safetensors files are refused when FIFOs, oversized or absurd") {
  const std::string folder = scratch("hugging_face"), config = folder + "/config.json";
  const std::string tensors = folder + "/model.safetensors";
  fs::create_directories(folder);
  weft::safetensors::write(tensors, {{"x", {1}, {0.5f}}});  // opens; its tensors are checked after config.json
  const std::string train = "train " + tiny() + " --set train.steps=1 --set checkpoint.init_from=" + folder;
  REQUIRE(mkfifo(config.c_str(), 0600) == 0);
  expect_refused(run_weft_within(30, train), 2, {config + ": cannot read config.json: it is a FIFO"});
  fs::remove(config);
  std::ofstream(config) << std::string(std::size_t{2} << 20, ' ');
  expect_refused(run_weft_within(30, train), 2, {config + ": the config.json is 2.0 MiB, more than the 1.0 MiB"});
  const std::string gpt2 = R"({"model_type": "gpt2", "n_embd": 64, "n_head": 4, "vocab_size": 256, "n_positions": 64, )";
  std::ofstream(config, std::ios::trunc) << gpt2 << R"("n_layer": 1e300})";
  expect_refused(run_weft_within(30, train), 2, {config + ": n_layer = 1e+300; expected a whole number in [1, "});
  std::ofstream(config, std::ios::trunc) << gpt2 << R"("n_layer": 2})";
  fs::remove(tensors);
  REQUIRE(mkfifo(tensors.c_str(), 0600) == 0);
  expect_refused(run_weft_within(30, train), 2, {tensors + ": cannot read safetensors file: it is a FIFO"});
  fs::remove_all(folder);
}

TEST_CASE("a config that cannot fit in this host's memory is refused with what it needs and what there is") {
  // Far too many parameters: refused on a bound the planner is not even asked for.
  expect_refused(run_weft("train " + tiny() + " --set model.d_model=65536 --set model.heads=64 --set model.layers=96"),
                 2, {"parameters", "GiB available"});
  // Few parameters, enormous activations: the planner's figures, by category.
  expect_refused(run_weft("train " + tiny() + " --set model.seq_len=65536 --set train.micro_batch=256 "
                                              "--set train.global_batch=256"),
                 2, {"activations", "GiB available"});
}

TEST_CASE("two jobs cannot save into one checkpoint.dir: the second is refused naming the holder") {
  const std::string dir = scratch("locked");
  {
    const weft::checkpoint::DirectoryLock held(dir);
    expect_refused(run_weft("train " + tiny() + " --set train.steps=1 --set checkpoint.dir=" + dir), 2,
                   {"checkpoint.dir " + dir + ": another job is saving checkpoints there (pid " +
                    std::to_string(getpid())});
  }
  // Released (as by a job that ended, however it ended): the directory is free again.
  const Outcome free = run_weft("train " + tiny() + " --set train.steps=1 --set checkpoint.dir=" + dir);
  INFO(free.output);
  CHECK(free.exit_code == 0);
  fs::remove_all(dir);
}

TEST_CASE("a 4-byte token id with its top bit set is refused with the file and its byte offset, not masked") {
  const std::string path = scratch("top_bit.tok");
  std::vector<std::uint32_t> tokens(100, 7);
  tokens[2] = 0x80000001u;
  char header[32] = {'W', 'E', 'F', 'T', 'T', 'O', 'K', '1'};
  const std::uint32_t version = 1, width = 4, vocab = 70000;
  const std::uint64_t count = tokens.size();
  std::memcpy(header + 8, &version, 4);
  std::memcpy(header + 12, &width, 4);
  std::memcpy(header + 16, &count, 8);
  std::memcpy(header + 24, &vocab, 4);
  std::ofstream out(path, std::ios::binary);
  out.write(header, 32);
  out.write(reinterpret_cast<const char*>(tokens.data()), static_cast<std::streamsize>(4 * tokens.size()));
  out.close();
  expect_refused(run_weft("train " + tiny() + " --set model.vocab_size=70000 --set data.source=tokens --set data.path=" +
                          path),
                 2, {path + ": token 2 (at byte offset 40) is id 2147483649, but model.vocab_size = 70000"});
  fs::remove(path);
}

TEST_CASE("weft data prepare refuses to write over its input, under any name") {
  const std::string text = scratch("input.txt"), link = scratch("link.txt");
  std::ofstream(text) << std::string(500, 'a');
  REQUIRE(::link(text.c_str(), link.c_str()) == 0);
  for (const std::string& output : {text, link})
    expect_refused(run_weft("data prepare --input " + text + " --output " + output), 2, {"is the input file"});
  CHECK(fs::file_size(text) == 500);  // untouched
  fs::remove(text);
  fs::remove(link);
}

TEST_CASE("weft ckpt export refuses an output inside the checkpoint, which it would destroy") {
  const std::string dir = scratch("export_ckpt"), ckpt = weft::testing::one_step_checkpoint(dir);
  for (const std::string& output : {ckpt + "/manifest.pb", ckpt + "/shard_r0.bin", ckpt, ckpt + "/new.safetensors"})
    expect_refused(run_weft("ckpt export " + ckpt + " --safetensors " + output), 2, {"is inside the checkpoint"});
  CHECK(run_weft("ckpt inspect " + ckpt).exit_code == 0);  // still whole
  // A good export leaves the file and nothing beside it.
  const std::string out = scratch("model.safetensors");
  const Outcome exported = run_weft("ckpt export " + ckpt + " --safetensors " + out);
  INFO(exported.output);
  CHECK(exported.exit_code == 0);
  int beside = 0;
  for (const auto& entry : fs::directory_iterator("/tmp"))
    beside += entry.path().string().rfind(out + ".tmp", 0) == 0 ? 1 : 0;
  CHECK(beside == 0);
  fs::remove_all(dir);
  fs::remove(out);
}

TEST_CASE("a crafted manifest is refused alike by inspect, export, resume and generate: paths out, links, overflows") {
  const std::string dir = scratch("crafted"), ckpt = weft::testing::one_step_checkpoint(dir);
  const std::string manifest_path = ckpt + "/manifest.pb";
  weft::checkpoint::Manifest good;
  {
    std::ifstream in(manifest_path, std::ios::binary);
    REQUIRE(good.ParseFromIstream(&in));
  }
  REQUIRE(good.files(0).runs_size() > 2);
  struct Craft {
    std::string what, expected;
    std::function<void(weft::checkpoint::Manifest&)> change;
  };
  const std::vector<Craft> crafts = {
      {"a relative path out", "is not a plain file name", [](auto& m) { m.mutable_files(0)->set_path("../../../../etc/passwd"); }},
      {"an absolute path", "is not a plain file name", [](auto& m) { m.mutable_files(0)->set_path("/etc/passwd"); }},
      {"an overflowing count", "lies outside", [](auto& m) { m.mutable_files(0)->mutable_runs(0)->set_count(INT64_C(1) << 61); }},
      {"a negative start", "lies outside", [](auto& m) { m.mutable_files(0)->mutable_runs(0)->set_global_start(-8); }},
      {"an offset past the file", "does not follow the previous one",
       [](auto& m) { m.mutable_files(0)->mutable_runs(1)->set_file_offset(INT64_C(1) << 62); }},
      {"two runs of one element", "two runs hold element",
       [](auto& m) {
         auto* second = m.mutable_files(0)->mutable_runs(1);
         const auto& first = m.files(0).runs(0);
         second->set_tensor(first.tensor());
         second->set_state(first.state());
         second->set_global_start(first.global_start());
       }},
      {"a step past int", "step", [](auto& m) { m.set_step(INT64_C(1) << 40); }},
      // fuzz/regressions/manifest/tensor_name_with_a_newline: the name was printed raw, breaking the one-line rule.
      {"a tensor name with a newline", "unknown tensor 'wte.weight\\x0aX'",
       [](auto& m) { m.mutable_tensors(0)->set_name("wte.weight\nX"); }},
      {"a model the files cannot hold", "the model would have", [](auto& m) { m.mutable_model()->set_d_model(1 << 30); m.mutable_model()->set_heads(1); }},
      // The model family and the tokenizer are read from the manifest too (resume's layout, weft generate's text).
      {"an unknown model family", "model family 'gpt5\\x0a'", [](auto& m) { m.mutable_model()->set_family("gpt5\n"); }},
      {"a Llama whose key/value heads do not divide its heads", "llama kv_heads 3",
       [](auto& m) { m.mutable_model()->set_family("llama"); m.mutable_model()->set_kv_heads(3); }},
      {"an unknown tokenizer", "tokenizer 'bytes\\x0awordpiece'", [](auto& m) { m.set_tokenizer("bytes\nwordpiece"); }},
  };
  const std::string save = "train " + tiny() + " --set train.steps=2 --set checkpoint.resume=" + ckpt;
  for (const Craft& craft : crafts) {
    weft::checkpoint::Manifest crafted = good;
    craft.change(crafted);
    std::ofstream(manifest_path, std::ios::binary | std::ios::trunc) << crafted.SerializeAsString();
    INFO(craft.what);
    for (const std::string& command : {"ckpt inspect " + ckpt, "ckpt export " + ckpt + " --safetensors " +
                                       scratch("crafted.safetensors"), save, "generate " + ckpt + " --prompt a --tokens 2"})
      expect_refused(run_weft(command), 2, {manifest_path, craft.expected}, Started::kMayHave);
  }
  // A shard that is a symbolic link (to a copy of itself, even) is refused: it could point anywhere.
  std::ofstream(manifest_path, std::ios::binary | std::ios::trunc) << good.SerializeAsString();
  const std::string shard = ckpt + "/shard_r0.bin", elsewhere = scratch("elsewhere.bin");
  fs::copy_file(shard, elsewhere);
  fs::remove(shard);
  fs::create_symlink(elsewhere, shard);
  expect_refused(run_weft("ckpt inspect " + ckpt), 2, {shard, "not a regular file"});
  fs::remove_all(dir);
  fs::remove(elsewhere);
}
