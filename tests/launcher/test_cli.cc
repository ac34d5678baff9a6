// The weft binary as a user runs it: exit codes, messages and the metrics file.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "checkpoint/safetensors.h"
#include "tests/launcher/cli_util.h"

using weft::testing::run_weft;
using weft::testing::tiny;
using weft::testing::write_temp;

TEST_CASE("weft train writes one metrics line per step and a summary, with the contract's fields") {
  const std::string metrics = "/tmp/weft_cli_metrics.jsonl";
  const auto outcome = run_weft("train " + tiny() + " --set train.steps=3 --set train.log_every=1 --metrics " + metrics);
  INFO(outcome.output);
  REQUIRE(outcome.exit_code == 0);
  CHECK_THAT(outcome.output, Catch::Contains("step 3/3") && Catch::Contains("done: 3 steps"));
  std::ifstream in(metrics);
  std::string line;
  int steps = 0;
  bool summary = false;
  while (std::getline(in, line)) {
    if (line.rfind("{\"summary\"", 0) == 0) {
      summary = true;
      CHECK_THAT(line, Catch::Contains("\"median_step_ms\"") && Catch::Contains("\"final_loss\"") &&
                           Catch::Contains("\"tokens_per_s\""));
      continue;
    }
    ++steps;
    CHECK_THAT(line, Catch::Contains("\"step\":" + std::to_string(steps)));
    for (const char* field : {"\"loss\":", "\"lr\":", "\"step_ms\":", "\"tokens_per_s\":", "\"mfu\":", "\"mem\":{",
                              "\"params\":", "\"grads\":", "\"optimizer\":", "\"activations\":", "\"peak\":",
                              "\"comm_bytes\":{\"dp\":0,\"tp\":0,\"pp\":0}"})
      CHECK_THAT(line, Catch::Contains(field));
  }
  CHECK(steps == 3);
  CHECK(summary);
}

TEST_CASE("bad configs and flags exit with code 2 and name what is wrong") {
  struct BadRun {
    std::string arguments;
    std::string expected;
  };
  const std::string unknown_key = write_temp("unknown.yaml", "model: {layers: 2}\ntrain: {stpes: 5}\n");
  const std::string bad_type = write_temp("type.yaml", "train:\n  lr: fast\n");
  const std::vector<BadRun> runs = {
      {"train " + unknown_key, "train.stpes"},
      {"train " + bad_type, "train.lr"},
      {"train " + bad_type, ":2:"},  // the line of the bad value
      {"train /nonexistent/run.yaml", "/nonexistent/run.yaml"},
      {"train " + tiny() + " --set model.heads=3", "heads"},
      {"train " + tiny() + " --set parallel.zero=7", "parallel.zero"},
      {"train " + tiny() + " --set nonsense", "nonsense"},
      {"train " + tiny() + " --no-such-flag", "--no-such-flag"},
      {"train " + tiny() + " --set data.source=text --set data.path=/nonexistent.txt", "/nonexistent.txt"},
      {"frobnicate", "frobnicate"},
      {"bench collectives --backend nccl-ish", "--backend: nccl-ish not in {mpi,socket}"},
      // weft launch watches its ranks as local processes: ranks on other hosts would look dead (tests/multihost).
      {"launch -n 2 --mpirun-args \"--hostfile hosts\" " + tiny(), "starts ranks on this host only"},
      {"launch -n 2 --mpirun-args \"-np 5\" " + tiny(), "the number of ranks is weft launch's own -n 2"},
  };
  for (const auto& run : runs) {
    const auto outcome = run_weft(run.arguments);
    INFO(run.arguments << "\n" << outcome.output);
    CHECK(outcome.exit_code == 2);
    CHECK_THAT(outcome.output, Catch::Contains(run.expected));
  }
}

TEST_CASE("weft launch with a temporary directory it cannot use exits 2 naming it") {
  const std::string file = write_temp("tmpdir_is_a_file", "x");
  for (const std::string& tmpdir : {std::string("/nonexistent/weft"), file}) {
    const auto outcome = weft::testing::run_weft_command("TMPDIR=" + tmpdir + " " + std::string(WEFT_BINARY) +
                                                         " launch -n 1 " + tiny() + " --set train.steps=1");
    INFO(outcome.output);
    CHECK(outcome.exit_code == 2);
    CHECK_THAT(outcome.output, Catch::Contains("temporary directory (TMPDIR=" + tmpdir + ")"));
  }
}

TEST_CASE("weft data prepare writes a token file that training reads, as does a text source") {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "weft reads every byte of this line as one token. ";
  const std::string text_path = write_temp("corpus.txt", text);
  const std::string token_path = "/tmp/weft_cli_corpus.tok";
  const auto prepared = run_weft("data prepare --input " + text_path + " --output " + token_path);
  INFO(prepared.output);
  REQUIRE(prepared.exit_code == 0);
  CHECK_THAT(prepared.output, Catch::Contains(std::to_string(text.size()) + " tokens"));
  const auto from_tokens =
      run_weft("train " + tiny() + " --set train.steps=2 --set data.source=tokens --set data.path=" + token_path);
  INFO(from_tokens.output);
  CHECK(from_tokens.exit_code == 0);
  const auto from_text =
      run_weft("train " + tiny() + " --set train.steps=2 --set data.source=text --set data.path=" + text_path);
  INFO(from_text.output);
  CHECK(from_text.exit_code == 0);
}

TEST_CASE("a damaged shard makes weft ckpt inspect and a resuming weft train exit 2 naming the file") {
  const std::string dir = "/tmp/weft_cli_damaged_ckpt";
  std::system(("rm -rf " + dir).c_str());
  const std::string save = "train " + tiny() + " --set checkpoint.dir=" + dir;
  const std::string ckpt = weft::testing::one_step_checkpoint(dir);
  CHECK(run_weft("ckpt inspect " + ckpt).exit_code == 0);
  const std::string shard = ckpt + "/shard_r0.bin";
  std::string bytes;
  {
    std::ifstream in(shard, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  REQUIRE(bytes.size() > 100);
  bytes[100] = static_cast<char>(bytes[100] ^ 0x10);
  std::ofstream(shard, std::ios::binary | std::ios::trunc) << bytes;
  for (const std::string& arguments : {"ckpt inspect " + ckpt, save + " --set train.steps=2"}) {
    const auto outcome = run_weft(arguments);
    INFO(arguments << "\n" << outcome.output);
    CHECK(outcome.exit_code == 2);
    CHECK_THAT(outcome.output, Catch::Contains("shard_r0.bin: checksum mismatch"));
  }
}

TEST_CASE("a Llama checkpoint passes inspect's checks and exports with Hugging Face's Llama names and shapes") {
  const std::string dir = "/tmp/weft_cli_llama_ckpt_" + std::to_string(getpid()), out = dir + "_model.safetensors";
  std::filesystem::remove_all(dir);
  const std::string ckpt = weft::testing::one_step_checkpoint(dir, "--set model.family=llama --set model.kv_heads=2");
  const weft::testing::Outcome inspected = run_weft("ckpt inspect " + ckpt);
  INFO(inspected.output);
  CHECK(inspected.exit_code == 0);
  CHECK_THAT(inspected.output, Catch::Contains("model: llama: layers 2, d_model 64, heads 4, vocab_size 256, seq_len 64, "
                                               "untied embeddings, kv_heads 2"));
  const weft::testing::Outcome exported = run_weft("ckpt export " + ckpt + " --safetensors " + out);
  INFO(exported.output);
  REQUIRE(exported.exit_code == 0);
  const weft::safetensors::Reader reader(out);
  CHECK(reader.info("model.layers.1.self_attn.k_proj.weight").shape == std::vector<std::int64_t>{32, 64});
  CHECK(reader.info("model.embed_tokens.weight").shape == std::vector<std::int64_t>{256, 64});
  CHECK(reader.contains("lm_head.weight"));
  std::filesystem::remove_all(dir);
  std::filesystem::remove(out);
}

// A CPU run loads no cuBLAS (it would add about 210 MB resident before the first tensor): the loader's own list of
// every library it maps, with oneDNN's as the proof that the list is read.
TEST_CASE("a CPU training run never loads cuBLAS") {
  const auto run = weft::testing::run_weft_command("LD_DEBUG=files " + std::string(WEFT_BINARY) + " train " + tiny() +
                                                   " --set train.steps=2");
  INFO(run.output.substr(0, 4000));
  REQUIRE(run.exit_code == 0);
  CHECK(run.output.find("file=libdnnl.so") != std::string::npos);
  CHECK(run.output.find("libcublas") == std::string::npos);
}

// An exact gradient sum where it cannot run is refused before anything trains, naming what to change.
TEST_CASE("parallel.grad_sum exact with a pipeline or with offload is exit 2 naming the reason") {
  const auto offloaded = run_weft("train " + tiny() + " --set parallel.grad_sum=exact --set parallel.offload=host");
  CHECK(offloaded.exit_code == 2);
  CHECK(offloaded.output.find("parallel.grad_sum = exact: needs parallel.offload: none") != std::string::npos);
  const auto piped = run_weft("plan " + tiny() + " -n 2 --set parallel.pp=2 --set parallel.grad_sum=exact");
  CHECK(piped.exit_code == 2);
  CHECK(piped.output.find("parallel.grad_sum = exact: needs pp = 1") != std::string::npos);
}
