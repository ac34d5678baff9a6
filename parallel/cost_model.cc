#include "parallel/cost_model.h"

#include <algorithm>

#include <fmt/format.h>

#include "model/model.h"
#include "parallel/capabilities.h"
#include "runtime/error.h"

namespace weft {
namespace {

// Ranks are laid out node by node; a group stays inside a node when its members' ranks all share one.
double group_bandwidth(const std::vector<std::vector<int>>& groups, const ClusterConfig& c) {
  for (const auto& group : groups)
    for (int rank : group)
      if (rank / c.devices_per_node != group.front() / c.devices_per_node) return c.inter_node_gbps;
  return c.intra_node_gbps;
}

double transfer_ms(std::int64_t bytes, double gbps) { return bytes / (gbps * 1e9) * 1e3; }

}  // namespace

Prediction predict(const Config& config, const Plan& plan) {
  const ClusterConfig& c = config.cluster;
  if (!c.given() || c.memory_gib <= 0 || c.intra_node_gbps <= 0 || c.inter_node_gbps <= 0)
    fail_usage("{}: cluster: peak_tflops, memory_gib, intra_node_gbps and inter_node_gbps are all needed to "
               "predict step time",
               config.source_path);
  Prediction p;
  const double tokens = static_cast<double>(config.train.global_batch) * config.model.seq_len;
  const double step_flops = model_family(config.model).flops_per_token(config.model) * tokens;
  const double rate = c.peak_tflops * 1e12 * c.compute_efficiency;
  p.compute_ms = step_flops / plan.world_size / rate * 1e3;
  p.bubble_ms = plan.bubble_fraction > 0 ? p.compute_ms * plan.bubble_fraction / (1.0 - plan.bubble_fraction) : 0.0;
  p.tp_ms = transfer_ms(plan.comm.tp, group_bandwidth(plan.tp_groups, c));
  p.pp_ms = transfer_ms(plan.comm.pp, group_bandwidth(plan.pp_groups, c));
  // Bucketed data-parallel reduction overlaps backward, two thirds of the compute (backward is 2x forward).
  const double dp_ms = transfer_ms(plan.comm.dp, group_bandwidth(plan.dp_groups, c));
  p.dp_exposed_ms = config.comm.overlap ? std::max(0.0, dp_ms - p.compute_ms * 2.0 / 3.0) : dp_ms;
  p.step_ms = p.compute_ms + p.bubble_ms + p.tp_ms + p.pp_ms + p.dp_exposed_ms;
  p.mfu = step_flops / plan.world_size / (p.step_ms / 1e3) / (c.peak_tflops * 1e12);
  p.memory_bytes = static_cast<double>(plan.memory.model_states() + plan.memory.activations);
  // 10% of the device left for the framework, buffers in flight and fragmentation.
  p.fits = p.memory_bytes <= 0.9 * c.memory_gib * 1024.0 * 1024.0 * 1024.0;
  return p;
}

std::vector<RankedLayout> rank_layouts(const Config& config, int world_size) {
  std::vector<RankedLayout> ranking;
  for (int tp = 1; tp <= world_size; ++tp) {
    if (world_size % tp) continue;
    for (int pp = 1; pp <= world_size / tp; ++pp) {
      if ((world_size / tp) % pp) continue;
      for (int zero = 0; zero <= 3; ++zero) {
        Config variant = config;
        variant.world_size = world_size;
        variant.parallel.dp = world_size / (tp * pp);
        variant.parallel.tp = tp;
        variant.parallel.pp = pp;
        variant.parallel.zero = zero;
        if (pp == 1) {
          variant.parallel.schedule = PipelineSchedule::k1F1B;
          variant.parallel.virtual_stages = 1;
          variant.parallel.layers_per_stage.clear();
        }
        // Only what weft train would run: the same check it makes.
        if (find_layout_problem(variant)) continue;
        const Plan plan = make_plan(variant, world_size);
        ranking.push_back({variant.parallel, plan, predict(variant, plan)});
      }
    }
  }
  std::stable_sort(ranking.begin(), ranking.end(), [](const RankedLayout& a, const RankedLayout& b) {
    if (a.prediction.fits != b.prediction.fits) return a.prediction.fits;
    return a.prediction.step_ms < b.prediction.step_ms;
  });
  return ranking;
}

std::string format_prediction(const Prediction& p) {
  return fmt::format("predicted step {:.1f} ms (compute {:.1f}, bubble {:.1f}, tp {:.1f}, pp {:.1f}, exposed dp {:.1f}), "
                     "MFU {:.1f}%, {:.2f} GiB on rank 0 ({})",
                     p.step_ms, p.compute_ms, p.bubble_ms, p.tp_ms, p.pp_ms, p.dp_exposed_ms, 100.0 * p.mfu,
                     p.memory_bytes / (1024.0 * 1024.0 * 1024.0), p.fits ? "fits" : "does not fit");
}

std::string format_ranking(const std::vector<RankedLayout>& ranking, const Config& config) {
  std::string out = fmt::format("weft plan --auto: {} layouts for {} ranks, fastest first ({} GiB per device)\n",
                                ranking.size(), ranking.empty() ? 0 : ranking.front().plan.world_size,
                                config.cluster.memory_gib);
  out += "   dp   tp   pp  zero    step ms    MFU   GiB/rank  fits\n";
  for (const auto& r : ranking)
    out += fmt::format("{:>5}{:>5}{:>5}{:>6}{:>11.1f}{:>6.1f}%{:>10.2f}  {}\n", r.parallel.dp, r.parallel.tp,
                       r.parallel.pp, r.parallel.zero, r.prediction.step_ms, 100.0 * r.prediction.mfu,
                       r.prediction.memory_bytes / (1024.0 * 1024.0 * 1024.0), r.prediction.fits ? "yes" : "no");
  return out;
}

}  // namespace weft
