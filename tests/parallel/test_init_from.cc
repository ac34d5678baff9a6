// checkpoint.init_from: training starts from a Hugging Face folder's weights, in any layout (offloaded too), and a
// folder that does not fit the config is a usage error naming the tensor (or config field) and both values.
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "checkpoint/hugging_face.h"
#include "model/model.h"
#include "runtime/error.h"
#include "tests/parallel/thread_run.h"
#include "tests/test_util.h"

using namespace weft;
using namespace weft::testing;
namespace fs = std::filesystem;

namespace {

const std::vector<ConfigOverride> kLlama = {{"model.family", "llama"}, {"model.kv_heads", "2"},
                                            {"model.layers", "2"},     {"train.micro_batch", "2"},
                                            {"model.rope_theta", "500"}};

struct Folder {
  fs::path path;
  std::vector<float> flat;  // the weights written, in weft's whole-model layout
  explicit Folder(const std::string& name) : path(fs::temp_directory_path() / ("weft-init-from-" + name)) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~Folder() { fs::remove_all(path); }
  std::string str() const { return path.string(); }
};

// Random weights (norms near one) for the model that configs/tiny.yaml with `sets` describes, written as a Hugging
// Face folder; `rename` may change the tensors' names or shapes before writing.
void write_folder(Folder& folder, const std::vector<ConfigOverride>& sets,
                  const std::function<void(std::vector<safetensors::NamedTensor>&)>& rename = {}) {
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", sets, 1);
  const ParamLayout whole = model_family(config.model).layout(config.model, 0, 1, {});
  folder.flat = random_normal_vector(static_cast<std::size_t>(whole.total()), 41, 0.05f);
  for (const ParamSpec& spec : whole.specs())
    if (spec.init == InitKind::kOnes)
      for (std::int64_t i = 0; i < spec.numel; ++i) folder.flat[static_cast<std::size_t>(spec.offset + i)] += 1.0f;
  auto tensors = hugging_face::export_tensors(config.model, whole, folder.flat);
  if (rename) rename(tensors);
  safetensors::write((folder.path / "model.safetensors").string(), tensors);
  std::ofstream(folder.path / "config.json") << hugging_face::config_json(config.model);
}

std::vector<ConfigOverride> with(std::vector<ConfigOverride> sets, const std::vector<ConfigOverride>& extra) {
  sets.insert(sets.end(), extra.begin(), extra.end());
  return sets;
}

std::string usage_error_of(const std::vector<ConfigOverride>& sets) {
  try {
    train_on_threads(1, 1, sets);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kUsage);
    return e.what();
  }
  FAIL("expected a usage error");
  return {};
}

}  // namespace

TEST_CASE("init_from starts every layout from a Hugging Face folder's weights, bit for bit on one rank") {
  for (const auto& family : {std::vector<ConfigOverride>{}, kLlama}) {
    Folder folder(family.empty() ? "gpt2" : "llama");
    write_folder(folder, family);
    const auto sets = with(family, {{"checkpoint.init_from", folder.str()}});
    INFO((family.empty() ? "gpt2" : "llama"));
    // A tiny learning rate leaves the imported weights readable after one step: they must be the file's.
    const RunResult still = train_on_threads(1, 1, with(sets, {{"train.lr", "1e-30"}}));
    CHECK(still.final_parameters == folder.flat);

    const RunResult one = train_on_threads(1, 4, sets);
    CHECK(one.losses.front() != train_on_threads(1, 1, family).losses.front());  // not the seed's weights
    for (const auto& layout : std::vector<std::vector<ConfigOverride>>{
             {{"parallel.tp", "2"}}, {{"parallel.pp", "2"}}, {{"parallel.zero", "3"}}}) {
      const RunResult run = train_on_threads(2, 4, with(sets, layout));
      INFO(layout[0].key);
      CHECK(max_relative_difference(run.losses, one.losses, 4) <= 1e-5);
    }
  }
}

TEST_CASE("init_from with ZeRO-Offload: the offloaded master weights start from the folder's weights too") {
  Folder folder("offload");
  write_folder(folder, {});
  // bf16: the parameters are rounded from the fp32 master weights after every step, so masters from anywhere but
  // the folder would show in the second step's loss and in the final parameters.
  const auto sets = std::vector<ConfigOverride>{
      {"checkpoint.init_from", folder.str()}, {"precision.compute", "bf16"}, {"parallel.offload_dir", "/tmp"}};
  const RunResult none = train_on_threads(1, 3, sets);
  for (const char* offload : {"host", "disk"}) {
    INFO("offload " << offload);
    const RunResult run = train_on_threads(1, 3, with(sets, {{"parallel.offload", offload}}));
    CHECK(run.losses == none.losses);
    CHECK(run.final_parameters == none.final_parameters);
  }
}

TEST_CASE("init_from reads GPT2LMHeadModel's prefixed names and Conv1D orientation") {
  Folder plain("plain"), prefixed("prefixed");
  write_folder(plain, {});
  write_folder(prefixed, {}, [](std::vector<safetensors::NamedTensor>& tensors) {
    for (auto& t : tensors) t.name = "transformer." + t.name;
  });
  const RunResult a = train_on_threads(1, 2, {{"checkpoint.init_from", plain.str()}});
  const RunResult b = train_on_threads(1, 2, {{"checkpoint.init_from", prefixed.str()}});
  CHECK(a.losses == b.losses);
  // The file holds c_attn as [d, 3d] (Conv1D): weft's [3d, d] rows are the file's columns.
  safetensors::Reader reader((plain.path / "model.safetensors").string());
  CHECK(reader.info("h.0.attn.c_attn.weight").shape == std::vector<std::int64_t>{64, 192});
}

TEST_CASE("init_from refuses a folder that does not fit the config, naming the tensor or field and both values") {
  Folder folder("bad");
  write_folder(folder, kLlama, [](std::vector<safetensors::NamedTensor>& tensors) {
    std::erase_if(tensors, [](const auto& t) { return t.name == "model.layers.1.mlp.up_proj.weight"; });
  });
  const auto sets = with(kLlama, {{"checkpoint.init_from", folder.str()}});
  CHECK_THAT(usage_error_of(sets), Catch::Contains("tensor model.layers.1.mlp.up_proj.weight is missing"));

  write_folder(folder, kLlama, [](std::vector<safetensors::NamedTensor>& tensors) {
    for (auto& t : tensors)
      if (t.name == "model.layers.0.self_attn.k_proj.weight") t.shape = {t.shape[1], t.shape[0]};
  });
  CHECK_THAT(usage_error_of(sets), Catch::Contains("tensor model.layers.0.self_attn.k_proj.weight has shape [64, 32] "
                                                   "in the file, the config needs [32, 64]"));

  write_folder(folder, kLlama);
  CHECK_THAT(usage_error_of(with(sets, {{"model.kv_heads", "4"}})),
             Catch::Contains("config.json has kv_heads = 2, the config asks for 4"));
  CHECK_THAT(usage_error_of(with(sets, {{"model.family", "gpt2"}, {"model.kv_heads", "4"}})),
             Catch::Contains("config.json is a llama model"));

  // Scaled rotary embeddings are another model: refused, not trained as plain RoPE.
  std::ofstream(folder.path / "config.json")
      << R"({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
             "num_key_value_heads": 2, "intermediate_size": 256, "vocab_size": 256, "max_position_embeddings": 64,
             "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0}})";
  CHECK_THAT(usage_error_of(sets), Catch::Contains("rope_parameters.rope_type \"llama3\""));
  std::ofstream(folder.path / "config.json") << "{ not json";
  CHECK_THAT(usage_error_of(sets), Catch::Contains("config.json: not valid JSON"));
  fs::remove(folder.path / "config.json");
  CHECK_THAT(usage_error_of(sets), Catch::Contains("no config.json in it"));

  // Not a folder at all: the config loader says so before any rank starts.
  try {
    load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml",
                {{"checkpoint.init_from", (folder.path / "missing").string()}}, 1);
    FAIL("expected a refusal");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kUsage);
    CHECK_THAT(e.what(), Catch::Contains("checkpoint.init_from") && Catch::Contains("Hugging Face model folder"));
  }
}
