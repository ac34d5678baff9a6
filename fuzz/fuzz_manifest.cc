// libFuzzer target: the checkpoint manifest reader (what `weft ckpt inspect`, `ckpt export` and resume open). Any
// manifest bytes, next to real shard files, must either be refused with one usage error naming the manifest or a
// shard, or describe the model completely, so that every value of every tensor reads back from a checked file.
//
// Input: the manifest bytes. At start-up the target writes a real two-rank checkpoint of a tiny model into a
// temporary directory (rank 0's shard holds the parameters, rank 1's the Adam moments); its manifest is the seed.
// With WEFT_FUZZ_WRITE_SEED=FILE set it writes that manifest to FILE too.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoint/format.h"
#include "fuzz/fuzz_check.h"
#include "model/gpt_layout.h"

namespace {

namespace fs = std::filesystem;

// layers 1, d_model 8, heads 2, vocab 16, seq_len 4: every code path of a real model, in 2 kB of values.
weft::ModelConfig tiny_model() { return weft::ModelConfig{1, 8, 2, 16, 4}; }

std::string make_checkpoint() {
  const std::string root = (fs::temp_directory_path() / ("weft_fuzz_manifest_" + std::to_string(getpid()))).string();
  fs::remove_all(root);
  const std::string staging = weft::checkpoint::checkpoint_path(root, 1) + ".tmp";
  fs::create_directories(staging);
  const weft::ParamLayout params = weft::gpt2_layout(tiny_model());
  std::vector<float> values(static_cast<std::size_t>(params.total()));
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = 0.01f * static_cast<float>(i % 97);
  for (int rank = 0; rank < 2; ++rank) {
    std::vector<weft::checkpoint::RunData> runs;
    for (const weft::ParamSpec& spec : params.specs())
      for (const char* state : rank == 0 ? std::vector<const char*>{"param"} : std::vector<const char*>{"adam_m", "adam_v"})
        runs.push_back({spec.name, state, 0,
                        std::span<const float>(values.data() + spec.offset, static_cast<std::size_t>(spec.numel))});
    weft::checkpoint::write_shard(staging, rank, runs);
  }
  weft::checkpoint::Manifest manifest;
  const weft::ModelConfig model = tiny_model();
  auto* shape = manifest.mutable_model();
  shape->set_layers(model.layers);
  shape->set_d_model(model.d_model);
  shape->set_heads(model.heads);
  shape->set_vocab_size(model.vocab_size);
  shape->set_seq_len(model.seq_len);
  auto* layout = manifest.mutable_layout();
  layout->set_world_size(2);
  layout->set_dp(2);
  layout->set_tp(1);
  layout->set_pp(1);
  layout->set_zero(1);
  layout->set_virtual_stages(1);
  layout->set_precision("fp32");
  manifest.set_seed(1234);
  manifest.set_loss_scale(1.0);
  for (const weft::ParamSpec& spec : params.specs()) {
    auto* tensor = manifest.add_tensors();
    tensor->set_name(spec.name);
    for (std::int64_t extent : spec.global_shape) tensor->add_global_shape(extent);
  }
  weft::checkpoint::commit(root, 1, manifest, 2, 1);
  return root;
}

// The checkpoint directory, made once and removed when the fuzzer exits.
const std::string& directory() {
  static const std::string root = make_checkpoint();
  static const std::string dir = weft::checkpoint::checkpoint_path(root, 1);
  static const bool cleanup = [] { return std::atexit([] { fs::remove_all(root); }) == 0; }();
  (void)cleanup;
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* seed = std::getenv("WEFT_FUZZ_WRITE_SEED"))
    fs::copy_file(directory() + "/manifest.pb", seed, fs::copy_options::overwrite_existing);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& dir = directory();
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const weft::checkpoint::Reader reader(dir, bytes);
    reader.verify_all();
    // A manifest that opened describes the whole model: every value of every state must read.
    for (const auto& tensor : reader.manifest().tensors()) {
      std::int64_t count = 1;
      for (std::int64_t extent : tensor.global_shape()) count *= extent;
      const auto& model = reader.manifest().model();
      if (tensor.name() == "wte.weight") count = std::int64_t{model.vocab_size()} * model.d_model();  // not padding
      std::vector<float> out(static_cast<std::size_t>(count));
      for (const char* state : {"param", "adam_m", "adam_v"}) reader.read(tensor.name(), state, 0, count, out.data());
    }
  } catch (const weft::Error& error) {
    weft::fuzz::require_usage_error(error, {dir});
  }
  return 0;
}
