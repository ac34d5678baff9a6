// `weft ckpt inspect` (what a checkpoint holds) and `weft ckpt export --safetensors` (the whole model with
// Hugging Face GPT-2 tensor names and layouts, loadable by PyTorch).
#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "checkpoint/format.h"
#include "launcher/commands.h"
#include "model/model.h"
#include "runtime/error.h"
#include "runtime/json_writer.h"

namespace weft {
namespace {

ModelConfig model_of(const checkpoint::Manifest& manifest) {
  const auto& m = manifest.model();
  return ModelConfig{m.layers(), m.d_model(), m.heads(), m.vocab_size(), m.seq_len()};
}

// Hugging Face GPT-2 keeps its projections as Conv1D weights of shape [in, out]; weft stores [out, in].
bool is_conv1d(const std::string& name) {
  return name.find("c_attn.weight") != std::string::npos || name.find("c_proj.weight") != std::string::npos ||
         name.find("c_fc.weight") != std::string::npos;
}

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
  fmt::print("model: {} layers, d_model {}, {} heads, vocab {}, seq {}\n", m.model().layers(), m.model().d_model(),
             m.model().heads(), m.model().vocab_size(), m.model().seq_len());
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
  const checkpoint::Reader reader(dir);
  const ModelConfig model = model_of(reader.manifest());
  const ParamLayout whole = model_family(model).layout(model, 0, 1, {});
  // safetensors: 8-byte little-endian header length, a JSON header of names, dtypes, shapes and byte ranges,
  // then the tensors' bytes back to back.
  JsonWriter header;
  header.begin_object();
  header.begin_object("__metadata__").field("format", "pt").field("source", "weft").end_object();
  std::string data;
  for (const ParamSpec& spec : whole.specs()) {
    std::vector<float> values(static_cast<std::size_t>(spec.numel));
    reader.read(spec.name, "param", 0, spec.numel, values.data());
    std::vector<std::int64_t> shape = spec.shape;
    if (is_conv1d(spec.name)) {
      std::vector<float> transposed(values.size());
      const std::int64_t rows = spec.shape[0], cols = spec.shape[1];
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t c = 0; c < cols; ++c)
          transposed[static_cast<std::size_t>(c * rows + r)] = values[static_cast<std::size_t>(r * cols + c)];
      values.swap(transposed);
      std::swap(shape[0], shape[1]);
    }
    header.begin_object(spec.name).field("dtype", "F32");
    header.begin_array("shape");
    for (auto extent : shape) header.field("", extent);
    header.end_array();
    header.begin_array("data_offsets")
        .field("", static_cast<std::int64_t>(data.size()))
        .field("", static_cast<std::int64_t>(data.size() + values.size() * sizeof(float)))
        .end_array()
        .end_object();
    data.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  }
  header.end_object();
  std::string json = header.str();
  json.append((8 - json.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  const std::uint64_t length = json.size();
  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  if (!out) fail_usage("--safetensors {}: cannot open for writing: {}", out_path, std::strerror(errno));
  out.write(reinterpret_cast<const char*>(&length), sizeof length);
  out << json << data;
  if (!out.flush()) fail_usage("--safetensors {}: writing failed: {}", out_path, std::strerror(errno));
  fmt::print("wrote {} ({} tensors, {} parameters) from {} step {}\n", out_path, whole.specs().size(), whole.total(),
             dir, reader.manifest().step());
  return 0;
}

}  // namespace weft
