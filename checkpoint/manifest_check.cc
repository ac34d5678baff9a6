#include "checkpoint/manifest_check.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <set>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "checkpoint/model_shape.h"
#include "model/model.h"
#include "runtime/error.h"

namespace weft::checkpoint {
namespace {

// Bounds on what a manifest may describe: far beyond any real model, small enough that the model's parameter list
// can be built and every size computed in 64 bits.
constexpr int kMaxLayers = 100000;
constexpr double kMaxParameters = 1e13;
constexpr std::int64_t kMaxFileBytes = std::int64_t{1} << 50;
constexpr const char* kStates[] = {"param", "adam_m", "adam_v"};

template <typename... Args>
[[noreturn]] void refuse(const std::string& path, fmt::format_string<Args...> format, Args&&... args) {
  fail_usage("{}: {}; the checkpoint is damaged or was not written by weft", path,
             fmt::format(format, std::forward<Args>(args)...));
}

// A name or path from the manifest as a message shows it: at most 64 characters, control characters escaped, so
// the message stays one line whatever the manifest holds.
std::string shown(const std::string& text) {
  std::string out;
  for (char c : text.substr(0, 64)) {
    const auto byte = static_cast<unsigned char>(c);
    out += byte < 0x20 || byte == 0x7f ? fmt::format("\\x{:02x}", byte) : std::string(1, c);
  }
  return text.size() > 64 ? out + "..." : out;
}

// A shard's path must name a file in the checkpoint directory itself: no directories, no "..", nothing absolute.
bool plain_file_name(const std::string& name) {
  if (name.empty() || name.size() > 255 || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
  });
}

ModelConfig model_of(const Manifest& m, const std::string& path) {
  const ModelShape& s = m.model();
  if (!s.family().empty() && s.family() != "gpt2" && s.family() != "llama")
    refuse(path, "model family '{}' (expected gpt2 or llama)", shown(s.family()));
  if (s.layers() < 1 || s.layers() > kMaxLayers || s.d_model() < 1 || s.heads() < 1 || s.vocab_size() < 1 ||
      s.seq_len() < 1 || s.d_model() % s.heads() != 0)
    refuse(path, "model layers {}, d_model {}, heads {}, vocab_size {}, seq_len {} is not a model's shape (all >= 1, "
                 "d_model divisible by heads, layers <= {})",
           s.layers(), s.d_model(), s.heads(), s.vocab_size(), s.seq_len(), kMaxLayers);
  const ModelConfig model = recorded_model(s);
  const bool llama = model.family == ModelFamilyId::kLlama;
  if (llama && (model.kv_heads < 1 || model.heads % model.kv_heads != 0 || model.ffn_hidden < 1 ||
                !(model.rope_theta > 0 && std::isfinite(model.rope_theta)) ||
                !(model.norm_eps > 0 && std::isfinite(model.norm_eps))))
    refuse(path, "llama kv_heads {}, ffn_hidden {}, rope_theta {}, norm_eps {} (expected kv_heads dividing heads {}, "
                 "ffn_hidden >= 1, finite rope_theta and norm_eps > 0)",
           model.kv_heads, model.ffn_hidden, model.rope_theta, model.norm_eps, model.heads);
  // An upper bound on either family's parameter count (gpt2's MLP is 4 d wide), in floating point so that no
  // crafted extent can overflow it.
  const double d = model.d_model, f = llama ? model.ffn_hidden : 4.0 * d;
  const double parameters = (2.0 * model.vocab_size + model.seq_len) * d + model.layers * (4.0 * d * d + 3.0 * d * f + 13.0 * d);
  if (parameters > kMaxParameters) refuse(path, "the model would have {:.3g} parameters", parameters);
  return model;
}

void check_layout(const Manifest& m, const ModelConfig& model, const std::string& path) {
  const Layout& l = m.layout();
  const std::int64_t product = std::int64_t{l.dp()} * l.tp() * l.pp();
  if (l.world_size() < 1 || l.dp() < 1 || l.tp() < 1 || l.pp() < 1 || product != l.world_size())
    refuse(path, "layout world_size {}, dp {}, tp {}, pp {} (expected all >= 1 and dp x tp x pp = world_size)",
           l.world_size(), l.dp(), l.tp(), l.pp());
  // The family's own rules (tp against heads, key/value heads and the MLP; gpt2's fixed shape), as for a config.
  ParallelConfig parallel;
  parallel.tp = l.tp();
  if (const auto problem = model_family(model).layout_problem(model, parallel))
    refuse(path, "the model and layout do not fit ({} = {}: {})", problem->key, shown(problem->value), problem->why);
  if (l.zero() < 0 || l.zero() > 3 || l.virtual_stages() < 1)
    refuse(path, "layout zero {}, virtual_stages {} (expected 0..3 and >= 1)", l.zero(), l.virtual_stages());
  if (l.precision() != "fp32" && l.precision() != "bf16" && l.precision() != "fp16")
    refuse(path, "layout precision '{}' (expected fp32, bf16 or fp16)", shown(l.precision()));
  if (m.step() < 0 || m.step() > INT_MAX || m.samples_consumed() < 0)
    refuse(path, "step {}, samples consumed {} (expected 0..{} and >= 0)", m.step(), m.samples_consumed(), INT_MAX);
  if (!std::isfinite(m.loss_scale()) || m.loss_scale() <= 0.0 || m.loss_scale_clean_steps() < 0)
    refuse(path, "loss scale {}, clean steps {} (expected a finite scale > 0 and >= 0 steps)", m.loss_scale(),
           m.loss_scale_clean_steps());
  if (!m.tokenizer().empty() && m.tokenizer() != "bytes" && m.tokenizer() != "sentencepiece")
    refuse(path, "tokenizer '{}' (expected bytes, sentencepiece or none)", shown(m.tokenizer()));
  if (m.files_size() != l.world_size())
    refuse(path, "{} shard files for {} ranks (one per rank expected)", m.files_size(), l.world_size());
}

}  // namespace

void check_manifest(const Manifest& m, const std::string& path) {
  const ModelConfig model = model_of(m, path);
  check_layout(m, model, path);

  // The tensors: exactly the model's, with the global shapes the saving layout's tp gives them.
  const ParamLayout expected = model_family(model).layout(model, 0, m.layout().tp(), {});
  std::unordered_map<std::string, std::size_t> index;
  std::vector<std::int64_t> numel, needed;
  for (const ParamSpec& spec : expected.specs()) {
    std::int64_t elements = 1;
    for (std::int64_t extent : spec.global_shape) elements *= extent;
    index[spec.name] = numel.size();
    numel.push_back(elements);
    // Padding rows (a vocabulary padded for tp) are never saved; every other element must be.
    needed.push_back(spec.real_rows < 0 ? elements : spec.real_rows * (elements / spec.global_shape[0]));
  }
  if (m.tensors_size() != static_cast<int>(expected.specs().size()))
    refuse(path, "{} tensors, but the model has {}", m.tensors_size(), expected.specs().size());
  std::set<std::string> seen_tensors;
  for (const TensorInfo& tensor : m.tensors()) {
    const auto found = index.find(tensor.name());
    if (found == index.end()) refuse(path, "unknown tensor '{}'", shown(tensor.name()));
    if (!seen_tensors.insert(tensor.name()).second) refuse(path, "tensor {} is listed twice", shown(tensor.name()));
    const std::vector<std::int64_t>& shape = expected.specs()[found->second].global_shape;
    if (!std::equal(shape.begin(), shape.end(), tensor.global_shape().begin(), tensor.global_shape().end()))
      refuse(path, "tensor {} has another shape than the model gives it", shown(tensor.name()));
  }

  // The files and their runs: each run inside its tensor, and the runs of a file tiling it in order.
  struct Span {
    std::int64_t begin, end;
  };
  std::vector<std::vector<Span>> spans(numel.size() * 3);
  std::set<std::string> paths;
  std::set<int> ranks;
  for (const ShardFile& file : m.files()) {
    if (!plain_file_name(file.path()))
      refuse(path, "shard path '{}' is not a plain file name inside the checkpoint", shown(file.path()));
    if (!paths.insert(file.path()).second) refuse(path, "shard file {} is listed twice", shown(file.path()));
    if (file.rank() < 0 || file.rank() >= m.layout().world_size() || !ranks.insert(file.rank()).second)
      refuse(path, "{}: rank {} is out of range or repeated", file.path(), file.rank());
    if (file.bytes() < 0 || file.bytes() > kMaxFileBytes) refuse(path, "{}: size {}", file.path(), file.bytes());
    std::int64_t offset = 0;
    for (const Run& run : file.runs()) {
      const auto tensor = index.find(run.tensor());
      const auto* state = std::find(std::begin(kStates), std::end(kStates), run.state());
      if (tensor == index.end() || state == std::end(kStates))
        refuse(path, "{}: a run of unknown tensor '{}' or state '{}'", file.path(), shown(run.tensor()),
               shown(run.state()));
      const std::int64_t limit = numel[tensor->second];
      if (run.global_start() < 0 || run.count() < 0 || run.global_start() > limit ||
          run.count() > limit - run.global_start())
        refuse(path, "{}: a run of {} ({} at {}) lies outside the tensor's {} elements", file.path(), run.tensor(),
               run.count(), run.global_start(), limit);
      if (run.file_offset() != offset || run.count() > (file.bytes() - offset) / 4)
        refuse(path, "{}: a run of {} at byte {} ({} values) does not follow the previous one inside the file's {} "
                     "bytes",
               file.path(), run.tensor(), run.file_offset(), run.count(), file.bytes());
      offset += 4 * run.count();
      if (run.count() > 0)
        spans[tensor->second * 3 + static_cast<std::size_t>(state - std::begin(kStates))].push_back(
            {run.global_start(), run.global_start() + run.count()});
    }
    if (offset != file.bytes()) refuse(path, "{}: its runs hold {} of its {} bytes", file.path(), offset, file.bytes());
  }

  // Every element of every state held exactly once (resume reads all three states).
  for (const ParamSpec& spec : expected.specs()) {
    const std::size_t t = index[spec.name];
    for (std::size_t s = 0; s < 3; ++s) {
      std::vector<Span>& list = spans[t * 3 + s];
      std::sort(list.begin(), list.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
      std::int64_t covered = 0;
      for (const Span& span : list) {
        if (span.begin < covered)
          refuse(path, "two runs hold element {} of {} ({})", span.begin, spec.name, kStates[s]);
        if (span.begin > covered && covered < needed[t]) break;
        covered = span.end;
      }
      if (covered < needed[t])
        refuse(path, "no run holds element {} of {} ({}): the checkpoint does not cover the model", covered,
               spec.name, kStates[s]);
    }
  }
}

}  // namespace weft::checkpoint
