// Config: the typed, validated contents of a weft YAML config (contract.md, "Config"), with --set overrides.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "runtime/dtype.h"

namespace weft {

enum class ModelFamilyId { kGpt2, kLlama };

struct ModelConfig {
  int layers = 2;
  int d_model = 64;
  int heads = 4;
  int vocab_size = 256;
  int seq_len = 64;
  ModelFamilyId family = ModelFamilyId::kGpt2;
  int kv_heads = 0;            // key/value heads (grouped-query attention); the loader resolves 0 to heads
  int ffn_hidden = 0;          // the MLP's width; 0 = the family's rule (gpt2: 4 d_model; llama: 8/3 d_model to 256)
  double rope_theta = 10000.0; // llama: the rotary embeddings' base
  double norm_eps = 1e-5;      // llama: RMSNorm's epsilon (gpt2's LayerNorm keeps 1e-5)
  bool tie_embeddings = true;  // the output projection is the input embedding; the loader sets the family's default
  int key_value_heads() const { return kv_heads > 0 ? kv_heads : heads; }
};

enum class Recompute { kNone, kBlock };

struct TrainConfig {
  int steps = 100;
  int global_batch = 16;
  int micro_batch = 4;
  double lr = 3.0e-4;
  int warmup_steps = 10;
  double min_lr_ratio = 0.1;  // cosine decay ends at lr * min_lr_ratio
  double weight_decay = 0.1;
  double grad_clip = 1.0;      // 0 disables clipping
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1.0e-8;
  std::uint64_t seed = 1234;
  int log_every = 10;
  Recompute recompute = Recompute::kNone;
  int eval_every = 0;    // steps between validation losses (0: none)
  int eval_batches = 8;  // global batches of validation samples per evaluation
  int threads = 0;  // compute threads per rank; 0 = auto (runtime/threads.h)
};

enum class DataSource { kBuiltin, kText, kTokens };
// How a token file is laid out: weft's or llm.c's (told apart by their magic numbers under kAuto), or a raw array.
enum class TokenFormat { kAuto, kWeft, kLlmc, kUint16, kUint32 };

struct DataConfig {
  DataSource source = DataSource::kBuiltin;
  std::string path;  // for text and tokens
  TokenFormat format = TokenFormat::kAuto;  // for tokens
  std::string valid_path;       // validation data, read as `source` says
  double valid_fraction = 0.0;  // or: the last fraction of `path` held out for validation
};

enum class PipelineSchedule { kGpipe, k1F1B, kInterleaved };
// Where the fp32 master weights, Adam's moments and the optimizer step live (ZeRO-Offload).
enum class Offload { kNone, kHost, kDisk };
// How often ZeRO 3 gathers a stage's parameters: once per step (kept until their last use), or for every use
// (each micro-batch's forward and backward; less memory, more traffic).
enum class Zero3Gather { kStep, kMicroBatch };
// How a dp rank's micro-batch gradients meet the other ranks' (parallel.grad_sum). kFast: each rank sums its own,
// then the ranks' sums are reduced. kExact: with several micro-batches per rank, every micro-batch's gradient is
// all-gathered and each rank sums them all in global micro-batch order, as one rank running them does, so any dp
// layout gives the 1-rank run's bits (at the cost of gathering every micro-batch's gradient).
enum class GradSum { kFast, kExact };

struct ParallelConfig {
  int dp = 0;            // 0 = auto: world size / (tp * pp)
  int tp = 1;
  int pp = 1;
  int zero = 0;
  PipelineSchedule schedule = PipelineSchedule::k1F1B;
  int microbatches = 0;  // 0 = auto
  int virtual_stages = 1;
  bool sequence_parallel = false;
  std::string layers_per_stage;  // e.g. "3,3,2": blocks per pipeline chunk, overriding the cost balance
  Offload offload = Offload::kNone;
  std::string offload_dir;       // offload: disk puts the optimizer state in files here
  Zero3Gather zero3_gather = Zero3Gather::kStep;
  GradSum grad_sum = GradSum::kFast;
};

struct PrecisionConfig {
  DType compute = DType::kF32;
  double loss_scale = 65536.0;  // fp16: the initial dynamic loss scale
  int loss_scale_window = 1000; // fp16: clean steps before the scale doubles
};

struct CommConfig {
  double bucket_mb = 25.0;
  bool overlap = true;
  double timeout_s = 300.0;
};

enum class DeviceChoice { kAuto, kCpu, kCuda };

struct CheckpointConfig {
  std::string dir;
  int every = 0;
  int keep = 2;
  std::string resume = "auto";  // auto | never | a checkpoint directory
  std::string init_from;        // a Hugging Face folder (config.json + *.safetensors) to start from
};

// The machine a plan predicts for (weft plan): optional; without it, plans give memory and traffic only. Bandwidths
// are in GB/s (10^9 bytes per second), compute in TFLOP/s; `gpu` fills every figure not set from a preset
// (parallel/cluster_spec.cc), and parallel/cluster_spec.h refuses implausible values.
enum class GpuPreset { kCustom, kA100, kH100 };
// Which kernels the step-time prediction assumes: weft's engine as built (fp32 activations, each GEMM casting its
// operands, bias, GeLU and residual adds as separate kernels), or a runtime that keeps activations in the compute
// precision and fuses them (Megatron-LM's fused bias-GeLU, bias-add and softmax kernels).
enum class KernelProfile { kWeft, kFused };

struct ClusterConfig {
  bool given() const { return gpu != GpuPreset::kCustom || peak_tflops > 0.0; }
  GpuPreset gpu = GpuPreset::kCustom;
  KernelProfile kernels = KernelProfile::kWeft;
  int devices_per_node = 8;
  int nics_per_node = 0;            // network cards per node; 0: one per device
  double peak_tflops = 0.0;         // one device's peak dense TFLOP/s for the compute precision
  double memory_gib = 0.0;          // one device's memory, GiB
  double memory_GBps = 0.0;         // one device's memory bandwidth (memory-bound kernels, the optimizer step)
  double intra_node_GBps = 0.0;     // per-device bus bandwidth of collectives inside a node (nccl-tests busbw)
  double inter_node_GBps = 0.0;     // one network card's bandwidth between nodes
  double gemm_efficiency = 0.5;     // the share of peak the largest GEMMs reach (alias: compute_efficiency)
  double gemm_half_dim = 0.0;       // a GEMM whose smallest dimension is this reaches half of gemm_efficiency
  double host_memory_gib = 0.0;     // one node's host memory (ZeRO-Offload)
  double host_memory_GBps = 0.0;    // one node's host memory bandwidth (the offloaded optimizer step)
  double pcie_GBps = 0.0;           // one device's host link, each way
  double disk_GBps = 0.0;           // one node's offload_dir bandwidth (offload: disk)
};

struct Config {
  std::string source_path;  // the YAML file it came from (for messages)
  ModelConfig model;
  TrainConfig train;
  DataConfig data;
  ParallelConfig parallel;
  PrecisionConfig precision;
  CommConfig comm;
  DeviceChoice device = DeviceChoice::kAuto;
  CheckpointConfig checkpoint;
  ClusterConfig cluster;

  int world_size = 1;  // the ranks it was loaded for
  // Where each key that was set came from, as a message prefix: "run.yaml:7:9: " or "--set parallel.tp=3: ".
  std::map<std::string, std::string> origins;

  // Micro-batches per optimizer step on each data-parallel rank.
  int accumulation_steps() const { return train.global_batch / (train.micro_batch * parallel.dp); }
  // The message prefix for a problem with key `path`: where it was set, or the file for a default.
  std::string where(const std::string& path) const;
};

// One broken rule of a config: the key to change, its value as written, and why (with what would work).
struct ConfigProblem {
  std::string key;
  std::string value;
  std::string why;
};

// Throws Error(kUsage) "<where path was set><path> = <value>: <what>", the form of every config error.
[[noreturn]] void fail_config_key(const Config& config, const std::string& path, const std::string& value,
                                  const std::string& what);
// Suggestions for messages: the divisors of n nearest to `wanted` ("4 or 8"), or all of them when few ("2, 4 or 8").
std::string nearest_divisors(std::int64_t n, std::int64_t wanted);
std::string divisor_choices(std::int64_t n, std::int64_t wanted);

// One `--set key.path=value` override, applied after the file is read.
struct ConfigOverride {
  std::string key;
  std::string value;
};

// A config is a few hundred bytes; anything much larger is the wrong file (or /dev/zero) and is refused unread.
inline constexpr std::size_t kMaxConfigBytes = std::size_t{1} << 20;

// Reads, overrides and validates a config; throws Error(kUsage) with file:line:column, the key path, the
// value and what was expected. `world_size` resolves dp: auto (when tp * pp divides it). Whether the layout
// can run (dp * tp * pp == world_size and every other rule of which settings combine) is parallel/
// capabilities.h's check_layout, which every command calls next.
Config load_config(const std::string& path, const std::vector<ConfigOverride>& overrides, int world_size);
Config parse_config_text(const std::string& yaml_text, const std::string& source_name,
                         const std::vector<ConfigOverride>& overrides, int world_size);
// Parses "key.path=value" as given on the command line.
ConfigOverride parse_override(const std::string& assignment);

}  // namespace weft
