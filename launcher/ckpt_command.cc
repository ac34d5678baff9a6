// `weft ckpt inspect` (what a checkpoint holds) and `weft ckpt export --safetensors` (the whole model with
// Hugging Face's tensor names and layouts for its family, loadable by PyTorch).
#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

#include "checkpoint/format.h"
#include "checkpoint/hugging_face.h"
#include "checkpoint/model_shape.h"
#include "checkpoint/safetensors.h"
#include "launcher/commands.h"
#include "model/model.h"
#include "runtime/error.h"
#include "runtime/file_io.h"

namespace weft {
namespace {

namespace fs = std::filesystem;

}  // namespace

int run_ckpt_inspect(const std::string& dir) {
  const checkpoint::Reader reader(dir);
  reader.verify_all();
  const auto& m = reader.manifest();
  const auto& l = m.layout();
  std::int64_t bytes = 0, runs = 0;
  for (const auto& file : m.files()) {
    bytes += file.bytes();
    runs += file.runs_size();
  }
  fmt::print("checkpoint {}: format {}, step {}, {} samples consumed, seed {}\n", dir, m.format_version(), m.step(),
             m.samples_consumed(), m.seed());
  fmt::print("model: {}\n", checkpoint::describe_model(checkpoint::recorded_model(m.model())));
  fmt::print("saved by: {} rank(s), dp {} x tp {} x pp {}, ZeRO {}, {} virtual stage(s), {}; loss scale {:g}\n",
             l.world_size(), l.dp(), l.tp(), l.pp(), l.zero(), l.virtual_stages(), l.precision(), m.loss_scale());
  fmt::print("{} shard files, {} bytes, {} runs (all checksums verified):\n", m.files_size(), bytes, runs);
  for (const auto& file : m.files())
    fmt::print("  {}  rank {}  {} bytes  checksum {:016x}  {} runs\n", file.path(), file.rank(), file.bytes(),
               file.checksum(), file.runs_size());
  fmt::print("{} tensors (param, adam_m, adam_v each):\n", m.tensors_size());
  for (const auto& tensor : m.tensors()) {
    std::string shape;
    for (auto extent : tensor.global_shape()) shape += (shape.empty() ? "" : " x ") + std::to_string(extent);
    fmt::print("  {}  [{}]\n", tensor.name(), shape);
  }
  return 0;
}

int run_ckpt_export(const std::string& dir, const std::string& out_path) {
  // The output must not land inside the checkpoint: exporting onto its manifest or a shard would destroy it.
  std::error_code error;
  const fs::path checkpoint = fs::weakly_canonical(dir, error);
  const fs::path output = fs::weakly_canonical(out_path, error);
  const auto [inside, rest] = std::mismatch(checkpoint.begin(), checkpoint.end(), output.begin(), output.end());
  if (!error && inside == checkpoint.end())
    fail_usage("--safetensors {}: is inside the checkpoint {}; write the export somewhere else", out_path, dir);
  const checkpoint::Reader reader(dir);
  const ModelConfig model = checkpoint::recorded_model(reader.manifest().model());
  const ParamLayout whole = model_family(model).layout(model, 0, 1, {});
  std::vector<float> flat(static_cast<std::size_t>(whole.total()));
  for (const ParamSpec& spec : whole.specs()) reader.read(spec.name, "param", 0, spec.numel, flat.data() + spec.offset);
  const std::vector<safetensors::NamedTensor> tensors = hugging_face::export_tensors(model, whole, flat);
  // Written to a temporary beside the output and renamed over it once read back: a failed export leaves the
  // previous file as it was.
  safetensors::write(out_path, tensors, {{"format", "pt"}, {"source", "weft"}}, "--safetensors " + out_path);
  // Beside it, what makes the folder a Hugging Face model: config.json, and the SentencePiece model if one made
  // the training data's ids.
  const fs::path folder = fs::path(out_path).parent_path();
  const std::string config_path = (folder / "config.json").string();
  write_file_atomically(config_path, hugging_face::config_json(model), config_path);
  std::string extra;
  if (reader.manifest().tokenizer() == "sentencepiece") {
    const std::string tokenizer_path = (folder / "tokenizer.model").string();
    write_file_atomically(tokenizer_path, reader.manifest().tokenizer_model(), tokenizer_path);
    extra = " and tokenizer.model";
  }
  fmt::print("wrote {} ({} tensors, {} parameters) from {} step {}, with config.json{}\n", out_path,
             whole.specs().size(), whole.total(), dir, reader.manifest().step(), extra);
  return 0;
}

}  // namespace weft
