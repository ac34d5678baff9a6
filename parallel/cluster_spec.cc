#include "parallel/cluster_spec.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include <fmt/format.h>

#include "runtime/error.h"

namespace weft {
namespace {

// A preset's figures in the config's units. Sources in docs/planner.md ("Presets").
struct Preset {
  double peak_16bit_tflops, peak_fp32_tflops;  // dense tensor-core bf16/fp16; fp32 without TF32 (cublasSgemm)
  double memory_gib, memory_GBps;              // datasheet HBM capacity and bandwidth
  double intra_node_GBps;                      // nccl-tests bus bandwidth of 8 GPUs over NVLink
  double inter_node_GBps;                      // what NCCL gets from one InfiniBand card
  int nics_per_node;
  double gemm_efficiency, gemm_half_dim;       // MAMF plateau; one K-loop pipeline depth
  double host_memory_gib, host_memory_GBps, pcie_GBps, disk_GBps;  // DGX node datasheets
};

// DGX A100 (A100-SXM4-80GB, 8x HDR 200 Gb/s) and DGX H100 (H100-SXM5-80GB, 8x NDR 400 Gb/s).
const Preset kA100{312.0, 19.5, 80.0, 2039.0, 200.0, 23.5, 8, 0.859, 128.0, 2048.0, 409.6, 25.0, 25.0};
const Preset kH100{989.4, 66.9, 80.0, 3352.0, 370.0, 47.0, 8, 0.801, 256.0, 2048.0, 614.4, 50.0, 50.0};

// One numeric key of the section: where it lives, how it may be misspelt by an older config, what it is.
struct Figure {
  const char* key;
  const char* alias;      // the first release's spelling, or nullptr
  double ClusterConfig::*field;
  double preset_value;
  // Above this no device of the decade gets; the message then says what the value probably meant.
  double ceiling;
  const char* unit;
};

[[noreturn]] void implausible(const Config& c, const std::string& key, double value, const std::string& why) {
  fail_config_key(c, key, fmt::format("{:g}", value), why);
}

// The key the user wrote for `f` (its alias when only that was set).
std::string written_key(const Config& c, const Figure& f) {
  const std::string key = fmt::format("cluster.{}", f.key);
  if (f.alias && !c.origins.count(key) && c.origins.count(fmt::format("cluster.{}", f.alias)))
    return fmt::format("cluster.{}", f.alias);
  return key;
}

// What a too-large value most likely is: a quantity in base units where the key wants a scaled one, or bits
// where it wants bytes.
std::string probable_meaning(const Figure& f, double value) {
  if (std::string(f.unit) == "TFLOP/s" && value >= 1e9)
    return fmt::format("that is FLOP/s, and the key is in TFLOP/s: you probably meant {:g}", value / 1e12);
  if (std::string(f.unit) == "GiB" && value >= 1e8)
    return fmt::format("that looks like bytes, and the key is in GiB: you probably meant {:g}",
                       value / (1024.0 * 1024.0 * 1024.0));
  if (std::string(f.unit) == "GB/s" && value >= 1e8)
    return fmt::format("that looks like bytes per second, and the key is in GB/s: you probably meant {:g}", value / 1e9);
  if (std::string(f.unit) == "GB/s")
    return fmt::format("no such link is made (the ceiling for this key is {:g} GB/s); if {:g} is in Gb/s (bits), "
                       "that is {:g} GB/s",
                       f.ceiling, value, value / 8.0);
  return fmt::format("that is beyond any device made (the ceiling for this key is {:g} {})", f.ceiling, f.unit);
}

}  // namespace

double ClusterSpec::gemm_efficiency_at(double smallest_dim) const {
  if (gemm_half_dim <= 0.0) return gemm_efficiency;
  return gemm_efficiency * smallest_dim / (smallest_dim + gemm_half_dim);
}

double ClusterSpec::gemm_seconds(double m, double n, double k, double batch) const {
  if (m <= 0 || n <= 0 || k <= 0 || batch <= 0) return 0.0;
  return 2.0 * m * n * k * batch / (peak_flops * gemm_efficiency_at(std::min({m, n, k})));
}

double ClusterSpec::group_Bps(const std::vector<std::vector<int>>& groups) const {
  if (groups.empty() || groups.front().size() < 2) return intra_node_Bps;
  int per_node = 0;  // ranks of one group on its first rank's node
  bool spans = false;
  const std::vector<int>& group = groups.front();
  for (int rank : group) {
    if (rank / devices_per_node == group.front() / devices_per_node) ++per_node;
    else spans = true;
  }
  if (!spans) return intra_node_Bps;
  const double share = nic_Bps * nics_per_node / devices_per_node;  // one rank's share of the node's cards
  return std::min(intra_node_Bps, share * per_node);
}

double ClusterSpec::pipeline_Bps(const std::vector<std::vector<int>>& pp_groups) const {
  if (pp_groups.empty() || pp_groups.front().size() < 2) return intra_node_Bps;
  const std::vector<int>& group = pp_groups.front();
  if (group[0] / devices_per_node == group[1] / devices_per_node) return intra_node_Bps;
  return nic_Bps * std::min(1.0, static_cast<double>(nics_per_node) / devices_per_node);
}

ClusterSpec resolve_cluster(const Config& c) {
  const ClusterConfig& given = c.cluster;
  const Preset* preset = given.gpu == GpuPreset::kA100 ? &kA100 : given.gpu == GpuPreset::kH100 ? &kH100 : nullptr;
  const bool sixteen_bit = c.precision.compute != DType::kF32;
  const double preset_peak = preset ? (sixteen_bit ? preset->peak_16bit_tflops : preset->peak_fp32_tflops) : 0.0;
  // The ceilings sit a few times above today's largest parts (B200: 2250 dense 16-bit TFLOP/s, 8 TB/s HBM, NVLink5
  // 900 GB/s each way, 800 Gb/s network cards), so only a slip of units or of bits for bytes crosses them.
  const Figure figures[] = {
      {"peak_tflops", nullptr, &ClusterConfig::peak_tflops, preset_peak, 20000.0, "TFLOP/s"},
      {"memory_gib", nullptr, &ClusterConfig::memory_gib, preset ? preset->memory_gib : 0.0, 4096.0, "GiB"},
      {"memory_GBps", nullptr, &ClusterConfig::memory_GBps, preset ? preset->memory_GBps : 0.0, 50000.0, "GB/s"},
      {"intra_node_GBps", "intra_node_gbps", &ClusterConfig::intra_node_GBps, preset ? preset->intra_node_GBps : 0.0,
       5000.0, "GB/s"},
      {"inter_node_GBps", "inter_node_gbps", &ClusterConfig::inter_node_GBps, preset ? preset->inter_node_GBps : 0.0,
       150.0, "GB/s"},
      {"gemm_efficiency", "compute_efficiency", &ClusterConfig::gemm_efficiency,
       preset ? preset->gemm_efficiency : 0.5, 1.0, ""},
      {"gemm_half_dim", nullptr, &ClusterConfig::gemm_half_dim, preset ? preset->gemm_half_dim : 0.0, 65536.0, ""},
      {"host_memory_gib", nullptr, &ClusterConfig::host_memory_gib, preset ? preset->host_memory_gib : 0.0, 65536.0,
       "GiB"},
      {"host_memory_GBps", nullptr, &ClusterConfig::host_memory_GBps, preset ? preset->host_memory_GBps : 0.0,
       20000.0, "GB/s"},
      {"pcie_GBps", nullptr, &ClusterConfig::pcie_GBps, preset ? preset->pcie_GBps : 0.0, 500.0, "GB/s"},
      {"disk_GBps", nullptr, &ClusterConfig::disk_GBps, preset ? preset->disk_GBps : 0.0, 2000.0, "GB/s"},
  };
  std::map<std::string, double> value;
  for (const Figure& f : figures) {
    const std::string key = fmt::format("cluster.{}", f.key);
    if (f.alias && c.origins.count(key) && c.origins.count(fmt::format("cluster.{}", f.alias)))
      fail_config_key(c, key, fmt::format("{:g}", given.*f.field),
                      fmt::format("cluster.{} is the older name of the same figure; set only one of them", f.alias));
    const bool set = c.origins.count(key) || (f.alias && c.origins.count(fmt::format("cluster.{}", f.alias)));
    const double v = set ? given.*f.field : f.preset_value;
    if (set && v > f.ceiling) implausible(c, written_key(c, f), v, probable_meaning(f, v));
    // A GB/s figure below 1 is almost surely TB/s.
    if (set && std::string(f.unit) == "GB/s" && v < 1.0)
      implausible(c, written_key(c, f), v,
                  fmt::format("below 1 GB/s no accelerator link is this slow; if {:g} is in TB/s, that is {:g} GB/s", v,
                              v * 1000.0));
    value[f.key] = v;
  }
  // Without a preset the first release's four figures are needed; a single node needs no network card.
  const char* required[] = {"peak_tflops", "memory_gib", "intra_node_GBps", "inter_node_GBps"};
  for (const char* key : required)
    if (value[key] <= 0.0)
      fail_usage("{}: cluster: {} is needed to predict step time (or set cluster.gpu: a100 or h100 for a preset; "
                 "docs/planner.md)",
                 c.source_path, key);
  ClusterSpec s;
  s.kernels = given.kernels;
  s.devices_per_node = given.devices_per_node;
  s.nics_per_node = given.nics_per_node > 0 ? given.nics_per_node : (preset ? preset->nics_per_node : given.devices_per_node);
  s.peak_flops = value["peak_tflops"] * 1e12;
  s.memory_bytes = value["memory_gib"] * 1024.0 * 1024.0 * 1024.0;
  s.memory_Bps = value["memory_GBps"] * 1e9;
  s.intra_node_Bps = value["intra_node_GBps"] * 1e9;
  s.nic_Bps = value["inter_node_GBps"] * 1e9;
  s.gemm_efficiency = value["gemm_efficiency"];
  s.gemm_half_dim = value["gemm_half_dim"];
  s.host_memory_bytes = value["host_memory_gib"] * 1024.0 * 1024.0 * 1024.0;
  s.host_memory_Bps = value["host_memory_GBps"] * 1e9;
  s.pcie_Bps = value["pcie_GBps"] * 1e9;
  s.disk_Bps = value["disk_GBps"] * 1e9;
  return s;
}

}  // namespace weft
