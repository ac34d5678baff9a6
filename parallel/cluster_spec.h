// ClusterSpec: a config's cluster: section resolved against its gpu preset, checked for plausibility, in SI units
// (FLOP/s, bytes, bytes per second), with the GEMM efficiency curve and the bandwidth a group of ranks gets.
#pragma once

#include <vector>

#include "runtime/config.h"

namespace weft {

struct ClusterSpec {
  KernelProfile kernels = KernelProfile::kWeft;
  int devices_per_node = 8;
  int nics_per_node = 8;
  double peak_flops = 0.0;       // dense FLOP/s for the config's compute precision
  double memory_bytes = 0.0;
  double memory_Bps = 0.0;       // 0: memory-bound kernels and the optimizer step are not modelled
  double intra_node_Bps = 0.0;   // per-device collective bus bandwidth inside a node
  double nic_Bps = 0.0;          // one network card
  double gemm_efficiency = 0.5;
  double gemm_half_dim = 0.0;
  double host_memory_bytes = 0.0;  // per node; 0: unknown
  double host_memory_Bps = 0.0;    // per node
  double pcie_Bps = 0.0;           // per device, each way
  double disk_Bps = 0.0;           // per node

  // The share of peak a GEMM reaches: gemm_efficiency x d / (d + gemm_half_dim), d its smallest dimension. A
  // dimension that spans few tiles, or a K loop that is mostly pipeline fill and drain, wastes the rest.
  double gemm_efficiency_at(double smallest_dim) const;
  // Seconds for `batch` GEMMs of m x n x k.
  double gemm_seconds(double m, double n, double k, double batch = 1.0) const;

  // Per-rank bus bandwidth of a collective over `groups` (global ranks, filled node by node): inside a node the
  // NVLink figure; across nodes, each node's cards shared by the groups that run at once, a group with k ranks on
  // a node driving k ranks' share of them (NCCL runs one ring per card), and never more than NVLink.
  double group_Bps(const std::vector<std::vector<int>>& groups) const;
  // Bandwidth of one rank's point-to-point sends to the next pipeline stage, every rank of a node sending at once:
  // over NVLink inside a node, else the rank's share of all the node's network cards.
  double pipeline_Bps(const std::vector<std::vector<int>>& pp_groups) const;
};

// Resolves and checks `config.cluster` for the config's compute precision. Throws Error(kUsage) naming the key,
// where it was set and what was probably meant for a missing, conflicting or implausible value (312e12 as
// TFLOP/s, 200 "GB/s" for a network card that is 200 Gb/s).
ClusterSpec resolve_cluster(const Config& config);

}  // namespace weft
