// What a valid config is (contract.md, "Config"): the key table, scalar conversion, and the cross-key
// invariants with the values their messages suggest instead.
#include "runtime/config_schema.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "runtime/file_io.h"

namespace weft::config_internal {
namespace {

// Builds the store callback for `config.*section.*field`, whatever the field's type.
template <typename Section, typename Field>
std::function<void(Config&, const Converted&)> member(Section Config::*section, Field Section::*field) {
  return [section, field](Config& config, const Converted& value) {
    Field& target = config.*section.*field;
    if constexpr (std::is_enum_v<Field>) {
      target = static_cast<Field>(value.choice);
    } else if constexpr (std::is_same_v<Field, bool>) {
      target = value.flag;
    } else if constexpr (std::is_same_v<Field, int>) {
      target = static_cast<int>(value.integer);
    } else if constexpr (std::is_same_v<Field, std::uint64_t>) {
      target = value.unsigned_integer;
    } else if constexpr (std::is_same_v<Field, double>) {
      target = value.number;
    } else {
      target = value.text;
    }
  };
}

// One key per entry reads better than one field per line.
// clang-format off
std::vector<KeySpec> build_schema() {
  using C = Config;
  using K = ValueKind;
  return {
      {.section = "model", .name = "layers", .kind = K::kInt, .low = 1,
       .store = member(&C::model, &ModelConfig::layers)},
      {.section = "model", .name = "d_model", .kind = K::kInt, .low = 1,
       .store = member(&C::model, &ModelConfig::d_model)},
      {.section = "model", .name = "heads", .kind = K::kInt, .low = 1, .store = member(&C::model, &ModelConfig::heads)},
      {.section = "model", .name = "vocab_size", .kind = K::kInt, .low = 2,
       .store = member(&C::model, &ModelConfig::vocab_size)},
      {.section = "model", .name = "family", .kind = K::kChoice, .choices = {"gpt2", "llama"},
       .store = member(&C::model, &ModelConfig::family)},
      {.section = "model", .name = "kv_heads", .kind = K::kInt, .low = 1,
       .store = member(&C::model, &ModelConfig::kv_heads)},
      {.section = "model", .name = "ffn_hidden", .kind = K::kIntOrAuto, .low = 1,
       .store = member(&C::model, &ModelConfig::ffn_hidden)},
      {.section = "model", .name = "rope_theta", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::model, &ModelConfig::rope_theta)},
      {.section = "model", .name = "norm_eps", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::model, &ModelConfig::norm_eps)},
      {.section = "model", .name = "tie_embeddings", .kind = K::kBool,
       .store = member(&C::model, &ModelConfig::tie_embeddings)},
      {.section = "model", .name = "seq_len", .kind = K::kInt, .low = 1,
       .store = member(&C::model, &ModelConfig::seq_len)},

      {.section = "train", .name = "steps", .kind = K::kInt, .low = 1, .store = member(&C::train, &TrainConfig::steps)},
      {.section = "train", .name = "global_batch", .kind = K::kInt, .low = 1,
       .store = member(&C::train, &TrainConfig::global_batch)},
      {.section = "train", .name = "micro_batch", .kind = K::kInt, .low = 1,
       .store = member(&C::train, &TrainConfig::micro_batch)},
      {.section = "train", .name = "lr", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::train, &TrainConfig::lr)},
      {.section = "train", .name = "warmup_steps", .kind = K::kInt, .low = 0,
       .store = member(&C::train, &TrainConfig::warmup_steps)},
      {.section = "train", .name = "min_lr_ratio", .kind = K::kNumber, .low = 0, .high = 1, .has_high = true,
       .store = member(&C::train, &TrainConfig::min_lr_ratio)},
      {.section = "train", .name = "weight_decay", .kind = K::kNumber, .low = 0,
       .store = member(&C::train, &TrainConfig::weight_decay)},
      {.section = "train", .name = "grad_clip", .kind = K::kNumber, .low = 0,
       .store = member(&C::train, &TrainConfig::grad_clip)},
      {.section = "train", .name = "beta1", .kind = K::kNumber, .low = 0, .high = 1, .has_high = true,
       .high_open = true, .store = member(&C::train, &TrainConfig::beta1)},
      {.section = "train", .name = "beta2", .kind = K::kNumber, .low = 0, .high = 1, .has_high = true,
       .high_open = true, .store = member(&C::train, &TrainConfig::beta2)},
      {.section = "train", .name = "eps", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::train, &TrainConfig::eps)},
      {.section = "train", .name = "seed", .kind = K::kUint64, .store = member(&C::train, &TrainConfig::seed)},
      {.section = "train", .name = "log_every", .kind = K::kInt, .low = 1,
       .store = member(&C::train, &TrainConfig::log_every)},
      {.section = "train", .name = "eval_every", .kind = K::kInt, .low = 0,
       .store = member(&C::train, &TrainConfig::eval_every)},
      {.section = "train", .name = "eval_batches", .kind = K::kInt, .low = 1,
       .store = member(&C::train, &TrainConfig::eval_batches)},
      {.section = "train", .name = "recompute", .kind = K::kChoice, .choices = {"none", "block"},
       .store = member(&C::train, &TrainConfig::recompute)},
      {.section = "train", .name = "threads", .kind = K::kIntOrAuto, .low = 1,
       .store = member(&C::train, &TrainConfig::threads)},

      {.section = "data", .name = "source", .kind = K::kChoice, .choices = {"builtin", "text", "tokens"},
       .store = member(&C::data, &DataConfig::source)},
      {.section = "data", .name = "path", .kind = K::kString, .store = member(&C::data, &DataConfig::path)},
      {.section = "data", .name = "format", .kind = K::kChoice, .choices = {"auto", "weft", "llmc", "uint16", "uint32"},
       .store = member(&C::data, &DataConfig::format)},
      {.section = "data", .name = "valid_path", .kind = K::kString,
       .store = member(&C::data, &DataConfig::valid_path)},
      {.section = "data", .name = "valid_fraction", .kind = K::kNumber, .low = 0, .high = 1, .has_high = true,
       .high_open = true, .store = member(&C::data, &DataConfig::valid_fraction)},

      {.section = "parallel", .name = "dp", .kind = K::kIntOrAuto, .low = 1,
       .store = member(&C::parallel, &ParallelConfig::dp)},
      {.section = "parallel", .name = "tp", .kind = K::kInt, .low = 1,
       .store = member(&C::parallel, &ParallelConfig::tp)},
      {.section = "parallel", .name = "pp", .kind = K::kInt, .low = 1,
       .store = member(&C::parallel, &ParallelConfig::pp)},
      {.section = "parallel", .name = "zero", .kind = K::kInt, .low = 0, .high = 3, .has_high = true,
       .store = member(&C::parallel, &ParallelConfig::zero)},
      {.section = "parallel", .name = "schedule", .kind = K::kChoice, .choices = {"gpipe", "1f1b", "interleaved"},
       .store = member(&C::parallel, &ParallelConfig::schedule)},
      {.section = "parallel", .name = "microbatches", .kind = K::kIntOrAuto, .low = 1,
       .store = member(&C::parallel, &ParallelConfig::microbatches)},
      {.section = "parallel", .name = "virtual_stages", .kind = K::kInt, .low = 1,
       .store = member(&C::parallel, &ParallelConfig::virtual_stages)},
      {.section = "parallel", .name = "layers_per_stage", .kind = K::kString,
       .store = member(&C::parallel, &ParallelConfig::layers_per_stage)},
      {.section = "parallel", .name = "sequence_parallel", .kind = K::kBool,
       .store = member(&C::parallel, &ParallelConfig::sequence_parallel)},
      {.section = "parallel", .name = "offload", .kind = K::kChoice, .choices = {"none", "host", "disk"},
       .store = member(&C::parallel, &ParallelConfig::offload)},
      {.section = "parallel", .name = "offload_dir", .kind = K::kString,
       .store = member(&C::parallel, &ParallelConfig::offload_dir)},
      {.section = "parallel", .name = "zero3_gather", .kind = K::kChoice, .choices = {"step", "microbatch"},
       .store = member(&C::parallel, &ParallelConfig::zero3_gather)},
      {.section = "parallel", .name = "grad_sum", .kind = K::kChoice, .choices = {"fast", "exact"},
       .store = member(&C::parallel, &ParallelConfig::grad_sum)},

      {.section = "precision", .name = "compute", .kind = K::kChoice, .choices = {"fp32", "bf16", "fp16"},
       .store = member(&C::precision, &PrecisionConfig::compute)},
      {.section = "precision", .name = "loss_scale", .kind = K::kNumber, .low = 1,
       .store = member(&C::precision, &PrecisionConfig::loss_scale)},
      {.section = "precision", .name = "loss_scale_window", .kind = K::kInt, .low = 1,
       .store = member(&C::precision, &PrecisionConfig::loss_scale_window)},

      {.section = "comm", .name = "bucket_mb", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::comm, &CommConfig::bucket_mb)},
      {.section = "comm", .name = "overlap", .kind = K::kBool, .store = member(&C::comm, &CommConfig::overlap)},
      // Below 0.1 s start-up itself times out; a week is longer than any collective should ever wait, and keeps
      // every deadline representable.
      {.section = "comm", .name = "timeout_s", .kind = K::kNumber, .low = 0.1, .high = 604800, .has_high = true,
       .store = member(&C::comm, &CommConfig::timeout_s)},

      {.section = "", .name = "device", .kind = K::kChoice, .choices = {"auto", "cpu", "cuda"},
       .store = [](Config& config, const Converted& value) {
         config.device = static_cast<DeviceChoice>(value.choice);
       }},

      {.section = "cluster", .name = "gpu", .kind = K::kChoice, .choices = {"custom", "a100", "h100"},
       .store = member(&C::cluster, &ClusterConfig::gpu)},
      {.section = "cluster", .name = "kernels", .kind = K::kChoice, .choices = {"weft", "fused"},
       .store = member(&C::cluster, &ClusterConfig::kernels)},
      {.section = "cluster", .name = "devices_per_node", .kind = K::kInt, .low = 1,
       .store = member(&C::cluster, &ClusterConfig::devices_per_node)},
      {.section = "cluster", .name = "nics_per_node", .kind = K::kInt, .low = 1,
       .store = member(&C::cluster, &ClusterConfig::nics_per_node)},
      {.section = "cluster", .name = "peak_tflops", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::cluster, &ClusterConfig::peak_tflops)},
      {.section = "cluster", .name = "memory_gib", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::cluster, &ClusterConfig::memory_gib)},
      {.section = "cluster", .name = "memory_GBps", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::cluster, &ClusterConfig::memory_GBps)},
      // The *_gbps spellings are the first release's names for the same GB/s figures (docs/planner.md).
      {.section = "cluster", .name = "intra_node_GBps", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::cluster, &ClusterConfig::intra_node_GBps)},
      {.section = "cluster", .name = "intra_node_gbps", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::cluster, &ClusterConfig::intra_node_GBps)},
      {.section = "cluster", .name = "inter_node_GBps", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::cluster, &ClusterConfig::inter_node_GBps)},
      {.section = "cluster", .name = "inter_node_gbps", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::cluster, &ClusterConfig::inter_node_GBps)},
      {.section = "cluster", .name = "gemm_efficiency", .kind = K::kNumber, .low = 0, .high = 1, .has_high = true,
       .low_open = true, .store = member(&C::cluster, &ClusterConfig::gemm_efficiency)},
      {.section = "cluster", .name = "compute_efficiency", .kind = K::kNumber, .low = 0, .high = 1, .has_high = true,
       .low_open = true, .store = member(&C::cluster, &ClusterConfig::gemm_efficiency)},
      {.section = "cluster", .name = "gemm_half_dim", .kind = K::kNumber, .low = 0,
       .store = member(&C::cluster, &ClusterConfig::gemm_half_dim)},
      {.section = "cluster", .name = "host_memory_gib", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::cluster, &ClusterConfig::host_memory_gib)},
      {.section = "cluster", .name = "host_memory_GBps", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::cluster, &ClusterConfig::host_memory_GBps)},
      {.section = "cluster", .name = "pcie_GBps", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::cluster, &ClusterConfig::pcie_GBps)},
      {.section = "cluster", .name = "disk_GBps", .kind = K::kNumber, .low = 0, .low_open = true,
       .store = member(&C::cluster, &ClusterConfig::disk_GBps)},

      {.section = "checkpoint", .name = "dir", .kind = K::kString,
       .store = member(&C::checkpoint, &CheckpointConfig::dir)},
      {.section = "checkpoint", .name = "every", .kind = K::kInt, .low = 0,
       .store = member(&C::checkpoint, &CheckpointConfig::every)},
      {.section = "checkpoint", .name = "keep", .kind = K::kInt, .low = 1,
       .store = member(&C::checkpoint, &CheckpointConfig::keep)},
      {.section = "checkpoint", .name = "resume", .kind = K::kString, .allow_empty = false,
       .store = member(&C::checkpoint, &CheckpointConfig::resume)},
      {.section = "checkpoint", .name = "init_from", .kind = K::kString,
       .store = member(&C::checkpoint, &CheckpointConfig::init_from)},
  };
}
// clang-format on

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// YAML 1.1 spellings of booleans that yaml-cpp also accepts.
std::optional<bool> parse_bool(std::string_view text) {
  std::string word = lower(text);
  if (word == "true" || word == "yes" || word == "on") return true;
  if (word == "false" || word == "no" || word == "off") return false;
  return std::nullopt;
}

// The whole text as a T (decimal integer or real), with an optional leading '+'; nullopt otherwise,
// including on overflow.
template <typename T>
std::optional<T> parse_whole(std::string_view text) {
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  T value{};
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

template <typename Value>
Violation violation(std::string_view path, const Value& value, std::string what) {
  return Violation{std::string(path), fmt::format("{}", value), std::move(what)};
}

// The name a choice key gives to `value`, e.g. "1f1b" for PipelineSchedule::k1F1B.
template <typename Enum>
std::string_view choice_name(std::string_view section, std::string_view name, Enum value) {
  return find_key(section, name)->choices.at(static_cast<std::size_t>(value));
}

}  // namespace

// How far a typo may be from a name and still be suggested: one edit for short names, more for long.
int typo_budget(std::string_view typed) { return typed.size() <= 3 ? 1 : typed.size() <= 8 ? 2 : 3; }

std::string join_or(const std::vector<std::string_view>& words) {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) {
    out += i == 0 ? "" : (i + 1 == words.size() ? " or " : ", ");
    out += words[i];
  }
  return out;
}

std::string KeySpec::path() const { return section.empty() ? std::string(name) : fmt::format("{}.{}", section, name); }

const std::vector<KeySpec>& config_schema() {
  static const std::vector<KeySpec> schema = build_schema();
  return schema;
}

const std::vector<std::string_view>& config_sections() {
  static const std::vector<std::string_view> sections = {"model",     "train", "data",      "parallel",
                                                         "precision", "comm",  "checkpoint", "cluster"};
  return sections;
}

const KeySpec* find_key(std::string_view section, std::string_view name) {
  for (const KeySpec& spec : config_schema()) {
    if (spec.section == section && spec.name == name) return &spec;
  }
  return nullptr;
}

bool is_section(std::string_view name) {
  const auto& sections = config_sections();
  return std::find(sections.begin(), sections.end(), name) != sections.end();
}

std::string expectation(const KeySpec& spec) {
  switch (spec.kind) {
    case ValueKind::kInt:
      if (spec.has_high) return fmt::format("an integer in {}..{}", spec.low, spec.high);
      return fmt::format("an integer >= {}", spec.low);
    case ValueKind::kIntOrAuto:
      return fmt::format("an integer >= {} or auto", spec.low);
    case ValueKind::kUint64:
      return fmt::format("an integer in 0..{}", std::numeric_limits<std::uint64_t>::max());
    case ValueKind::kNumber:
      if (spec.has_high) {
        return fmt::format("a number in {}{}, {}{}", spec.low_open ? '(' : '[', spec.low, spec.high,
                           spec.high_open ? ')' : ']');
      }
      return fmt::format("a number {} {}", spec.low_open ? ">" : ">=", spec.low);
    case ValueKind::kBool:
      return "true or false";
    case ValueKind::kChoice:
      return "one of " + join_or(spec.choices);
    case ValueKind::kString:
      return spec.name == "resume" ? "auto, never or a checkpoint directory"
                                   : (spec.allow_empty ? "a string" : "a non-empty string");
  }
  return "a value";
}

std::optional<std::string> store_value(const KeySpec& spec, const Scalar& value, Config& config) {
  std::string expected = "expected " + expectation(spec);
  Converted converted;
  if (value.is_null && spec.kind != ValueKind::kString) return expected;
  switch (spec.kind) {
    case ValueKind::kIntOrAuto:
      if (value.text == "auto") break;  // integer 0 means auto
      [[fallthrough]];
    case ValueKind::kInt: {
      std::optional<std::int64_t> parsed = parse_whole<std::int64_t>(value.text);
      if (!parsed) return expected;
      bool too_big = *parsed > INT_MAX;
      if (too_big || *parsed < spec.low || (spec.has_high && *parsed > spec.high)) {
        if (too_big && !spec.has_high) return fmt::format("expected an integer in {}..{}", spec.low, INT_MAX);
        return expected;
      }
      converted.integer = *parsed;
      break;
    }
    case ValueKind::kUint64: {
      std::optional<std::uint64_t> parsed = parse_whole<std::uint64_t>(value.text);
      if (!parsed) return expected;
      converted.unsigned_integer = *parsed;
      break;
    }
    case ValueKind::kNumber: {
      std::optional<double> parsed = parse_whole<double>(value.text);
      if (!parsed || !std::isfinite(*parsed)) return expected;
      double x = *parsed;
      bool low_ok = spec.low_open ? x > spec.low : x >= spec.low;
      bool high_ok = !spec.has_high || (spec.high_open ? x < spec.high : x <= spec.high);
      if (!low_ok || !high_ok) return expected;
      converted.number = x;
      break;
    }
    case ValueKind::kBool: {
      std::optional<bool> parsed = parse_bool(value.text);
      if (!parsed) return expected;
      converted.flag = *parsed;
      break;
    }
    case ValueKind::kChoice: {
      auto found = std::find(spec.choices.begin(), spec.choices.end(), value.text);
      if (found == spec.choices.end()) {
        for (std::string_view choice : spec.choices) {
          if (edit_distance(value.text, choice) <= typo_budget(value.text)) {
            return fmt::format("{}; did you mean {}?", expected, choice);
          }
        }
        return expected;
      }
      converted.choice = static_cast<int>(found - spec.choices.begin());
      break;
    }
    case ValueKind::kString:
      if (!spec.allow_empty && (value.is_null || value.text.empty())) return expected;
      converted.text = value.is_null ? std::string() : value.text;
      break;
  }
  spec.store(config, converted);
  return std::nullopt;
}

std::optional<Violation> check_invariants(Config& config, int world_size) {
  const ModelConfig& model = config.model;
  ParallelConfig& parallel = config.parallel;

  // Defaults that follow other keys: as many key/value heads as heads, and the family's embedding tying.
  if (model.kv_heads == 0) config.model.kv_heads = model.heads;
  if (!config.origins.count("model.tie_embeddings"))
    config.model.tie_embeddings = model.family == ModelFamilyId::kGpt2;
  if (model.heads % model.kv_heads != 0) {
    return violation("model.kv_heads", model.kv_heads,
                     fmt::format("heads ({}) must be divisible by kv_heads (each key/value head serves a whole group of "
                                 "query heads); try kv_heads = {}",
                                 model.heads, nearest_divisors(model.heads, model.kv_heads)));
  }
  if (model.d_model % model.heads != 0) {
    return violation("model.heads", model.heads,
                     fmt::format("d_model ({}) must be divisible by heads; try heads = {}", model.d_model,
                                 nearest_divisors(model.d_model, model.heads)));
  }
  // dp = auto takes the ranks tp and pp leave; whether the layout fits the world (and every other rule of which
  // settings combine) is parallel/capabilities.cc's check_layout.
  const std::int64_t tp_pp = std::int64_t{parallel.tp} * parallel.pp;
  if (parallel.dp == 0 && world_size % tp_pp == 0) parallel.dp = static_cast<int>(world_size / tp_pp);

  const DataConfig& data = config.data;
  std::string_view source = choice_name("data", "source", data.source);
  if (data.source == DataSource::kBuiltin && !data.path.empty()) {
    return violation("data.path", shown(data.path),
                     "data.source builtin generates its own text and takes no path; set data.source to text or "
                     "tokens to read this file");
  }
  if (data.source != DataSource::kBuiltin) {
    if (data.path.empty()) {
      return violation("data.source", source, "needs data.path, the file to read");
    }
    std::error_code error;
    std::filesystem::file_status status = std::filesystem::status(data.path, error);
    if (!std::filesystem::exists(status)) {
      return violation("data.path", shown(data.path),
                       fmt::format("cannot read it: {} (relative paths start at the working directory)",
                                   error ? error.message() : std::strerror(ENOENT)));
    }
    if (std::filesystem::is_directory(status)) {
      return violation("data.path", shown(data.path), "is a directory; expected a file");
    }
    if (const std::string kind = non_regular_kind(data.path); !kind.empty()) {
      return violation("data.path", shown(data.path),
                       fmt::format("is {}; expected a regular file (a device or pipe never ends or blocks)", kind));
    }
  }
  if (!config.checkpoint.init_from.empty()) {
    std::error_code error;
    std::filesystem::file_status status = std::filesystem::status(config.checkpoint.init_from, error);
    if (!std::filesystem::is_directory(status)) {
      return violation("checkpoint.init_from", shown(config.checkpoint.init_from),
                       "expected a Hugging Face model folder (config.json and *.safetensors)");
    }
  }
  if (!data.valid_path.empty()) {
    if (data.valid_fraction > 0)
      return violation("data.valid_fraction", data.valid_fraction,
                       "and data.valid_path both name validation data; set one of them");
    if (data.source == DataSource::kBuiltin)
      return violation("data.valid_path", shown(data.valid_path),
                       "data.source builtin has no validation file; hold part of it out with data.valid_fraction");
    std::error_code error;
    if (!std::filesystem::is_regular_file(data.valid_path, error))
      return violation("data.valid_path", shown(data.valid_path), "is not a readable file");
  }
  if (config.train.eval_every > 0 && data.valid_path.empty() && data.valid_fraction <= 0)
    return violation("train.eval_every", config.train.eval_every,
                     "evaluates on validation data, but there is none: set data.valid_path or data.valid_fraction");
  if (data.source != DataSource::kTokens && model.vocab_size < 256) {
    return violation(
        "model.vocab_size", model.vocab_size,
        fmt::format("data.source {} uses byte-level tokens (0..255), so vocab_size must be >= 256", source));
  }
  return std::nullopt;
}

}  // namespace weft::config_internal

namespace weft {

// Divisors of `n` nearest to `wanted` from below and above, e.g. "4 or 8" (scans are bounded so that absurd
// values cannot stall the message).
std::string nearest_divisors(std::int64_t n, std::int64_t wanted) {
  std::vector<std::int64_t> found;
  std::int64_t d = std::min(wanted - 1, n);
  while (d > 1 && n % d != 0 && wanted - d < (1 << 20)) --d;
  if (d >= 1 && n % d == 0) found.push_back(d);
  for (d = wanted + 1; d <= n && d - wanted < (1 << 20); ++d) {
    if (n % d == 0) break;
  }
  if (d <= n && n % d == 0) found.push_back(d);
  return fmt::format("{}", fmt::join(found, " or "));
}

// The divisors of `n` above 1 as "2, 4 or 8" when there are a few, else the ones nearest `wanted`.
std::string divisor_choices(std::int64_t n, std::int64_t wanted) {
  std::vector<std::string> divisors;
  for (std::int64_t d = 2; d <= n && divisors.size() <= 6; ++d) {
    if (n % d == 0) divisors.push_back(std::to_string(d));
  }
  if (divisors.empty()) return "1";
  if (divisors.size() > 6) return nearest_divisors(n, wanted);
  return config_internal::join_or(std::vector<std::string_view>(divisors.begin(), divisors.end()));
}

}  // namespace weft
