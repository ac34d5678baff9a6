// weft plan's report: the plan, its prediction and --auto's ranking as text and as JSON. The JSON carries everything
// the text shows (and whole group lists where the text summarises them).
#include <algorithm>
#include <string>

#include <fmt/format.h>

#include "parallel/capabilities.h"
#include "parallel/cluster_spec.h"
#include "parallel/cost_model.h"
#include "parallel/planner.h"
#include "runtime/json_writer.h"

namespace weft {
namespace {

double mib(double bytes) { return bytes / (1024.0 * 1024.0); }
double gib(double bytes) { return bytes / (1024.0 * 1024.0 * 1024.0); }

std::string join(const std::vector<int>& ranks, std::size_t limit) {
  std::string text;
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    if (i == limit && ranks.size() > limit + 1) {
      text += fmt::format(",...,{}", ranks.back());
      break;
    }
    text += fmt::format("{}{}", i ? "," : "", ranks[i]);
  }
  return text;
}

// A few groups are listed rank by rank; at thousands of ranks the text says how many groups there are, how large,
// their stride, and shows the first and the last.
std::string describe_groups(const char* kind, const std::vector<std::vector<int>>& groups) {
  constexpr std::size_t kListed = 8, kRanksShown = 16;
  std::string out;
  if (groups.size() <= kListed && (groups.empty() || groups.front().size() <= kRanksShown)) {
    for (const auto& g : groups) out += fmt::format("  {} group: ranks {}\n", kind, join(g, kRanksShown));
    return out;
  }
  const auto& g = groups.front();
  const int stride = g.size() > 1 ? g[1] - g[0] : 0;
  out += fmt::format("  {} groups: {} of {} rank(s) each, stride {}; first {}, last {}\n", kind, groups.size(), g.size(),
                     stride, join(g, 6), join(groups.back(), 6));
  return out;
}

// "h.0-11:0 h.12-23:1": runs of consecutive layers on one stage.
std::string describe_stages(const std::vector<int>& stage_of_layer) {
  std::string out;
  for (std::size_t begin = 0; begin < stage_of_layer.size();) {
    std::size_t end = begin;
    while (end + 1 < stage_of_layer.size() && stage_of_layer[end + 1] == stage_of_layer[begin]) ++end;
    out += begin == end ? fmt::format(" h.{}:{}", begin, stage_of_layer[begin])
                        : fmt::format(" h.{}-{}:{}", begin, end, stage_of_layer[begin]);
    begin = end + 1;
  }
  return out;
}

const char* schedule_text(PipelineSchedule s) {
  return s == PipelineSchedule::kGpipe ? "GPipe" : s == PipelineSchedule::kInterleaved ? "interleaved 1F1B" : "1F1B";
}
const char* offload_name(Offload o) { return o == Offload::kHost ? "host" : o == Offload::kDisk ? "disk" : "none"; }
const char* gather_name(Zero3Gather g) { return g == Zero3Gather::kStep ? "step" : "microbatch"; }
const char* kernels_name(KernelProfile k) { return k == KernelProfile::kFused ? "fused" : "weft"; }

double textbook_bubble(const Plan& plan, const Config& config) {
  const ParallelConfig& p = plan.parallel;
  return (p.pp - 1) / (static_cast<double>(p.virtual_stages) * config.accumulation_steps() + p.pp - 1.0);
}

// The same layout at every ZeRO stage: what the capability check says, or the memory and traffic.
struct StageRow {
  int stage;
  std::string refused;  // empty when the layout runs
  Plan plan;
};

std::vector<StageRow> zero_stage_rows(const Plan& plan, const Config& config) {
  std::vector<StageRow> rows;
  for (int stage = 0; stage <= 3; ++stage) {
    Config variant = config;
    variant.parallel.zero = stage;
    if (auto problem = find_layout_problem(variant)) {
      rows.push_back({stage, problem->why, {}});
      continue;
    }
    rows.push_back({stage, "", stage == plan.parallel.zero ? plan : make_plan(variant, plan.world_size)});
  }
  return rows;
}

void memory_json(JsonWriter& json, const MemoryPlan& m) {
  json.begin_object("mem")
      .field("params", m.params)
      .field("grads", m.grads)
      .field("optimizer", m.optimizer)
      .field("activations", m.activations)
      .field("gathered_params", m.gathered)
      .field("widened_fp32", m.widened)
      .field("gradient_scratch_fp32", m.gradient_scratch)
      .field("micro_gradients", m.micro_gradients)
      .field("device_total", m.device_total())
      .field("host", m.host)
      .field("disk", m.disk)
      .end_object();
}

void breakdown_json(JsonWriter& json, const Prediction& p) {
  json.field("step_ms", p.step_ms);
  json.begin_object("breakdown")
      .field("gemm_ms", p.time.gemm_ms)
      .field("memory_bound_ms", p.time.memory_bound_ms)
      .field("recompute_ms", p.time.recompute_ms)
      .field("tp_ms", p.time.tp_ms)
      .field("bubble_ms", p.time.bubble_ms)
      .field("pp_ms", p.time.pp_ms)
      .field("dp_exposed_ms", p.time.dp_exposed_ms)
      .field("optimizer_ms", p.time.optimizer_ms)
      .end_object();
  json.field("mfu", p.mfu)
      .field("model_tflops_per_device", p.model_tflops_per_device)
      .field("hardware_tflops_per_device", p.hardware_tflops_per_device)
      .field("tokens_per_s", p.tokens_per_s)
      .field("slowest_stage", p.slowest_stage)
      .field("device_bytes", p.device_bytes)
      .field("device_capacity_bytes", p.device_capacity_bytes)
      .field("host_bytes", p.host_bytes)
      .field("host_capacity_bytes_per_node", p.host_capacity_bytes)
      .field("disk_bytes", p.disk_bytes)
      .field("fits", p.fits)
      .field("memory_bound_modelled", p.memory_bound_modelled)
      .field("kernels", kernels_name(p.kernels));
}

}  // namespace

std::string format_plan(const Plan& plan, const Config& config) {
  const ParallelConfig& p = plan.parallel;
  std::string out = fmt::format("weft plan: {} on {} rank(s): dp {} x tp {} x pp {}, ZeRO {}, {}, {} parameters\n",
                                config.source_path, plan.world_size, p.dp, p.tp, p.pp, p.zero,
                                dtype_name(config.precision.compute), plan.parameters);
  out += "mesh (rank = tp + tp_size * (dp + dp_size * pp)):\n";
  out += describe_groups("dp", plan.dp_groups) + describe_groups("tp", plan.tp_groups) +
         describe_groups("pp", plan.pp_groups);
  out += "layers -> pipeline stage:" + describe_stages(plan.stage_of_layer);
  if (p.pp > 1)
    out += fmt::format("\npipeline: {} schedule, {} micro-batches, {} virtual stage(s), bubble {:.1f}% (simulated; "
                       "textbook (p-1)/(vm+p-1) = {:.1f}%); figures below are rank 0's (the first stage)",
                       schedule_text(p.schedule), config.accumulation_steps(), p.virtual_stages,
                       100.0 * plan.bubble_fraction, 100.0 * textbook_bubble(plan, config));
  const MemoryPlan& m = plan.memory;
  out += fmt::format("\nper-rank memory: params {:.2f} MiB, grads {:.2f} MiB, optimizer {:.2f} MiB, activations {:.2f} MiB "
                     "(model states {:.2f} MiB)\n",
                     mib(m.params), mib(m.grads), mib(m.optimizer), mib(m.activations), mib(m.model_states()));
  if (m.gathered || m.widened || m.gradient_scratch)
    out += fmt::format("  transient: gathered ZeRO-3 parameters {:.2f} MiB (zero3_gather: {}), fp32 copy of the segment "
                       "in use {:.2f} MiB, fp32 gradient scratch {:.2f} MiB; device total {:.2f} MiB\n",
                       mib(m.gathered), gather_name(p.zero3_gather), mib(m.widened), mib(m.gradient_scratch),
                       mib(m.device_total()));
  if (m.micro_gradients)
    out += fmt::format("  grad_sum exact: every micro-batch's gradients {:.2f} MiB, kept until each bucket is "
                       "all-gathered (the gathered buckets in flight come on top)\n",
                       mib(m.micro_gradients));
  if (p.offload != Offload::kNone)
    out += fmt::format("  offload {}: host {:.2f} MiB, disk {:.2f} MiB per rank; {:.2f} MiB over the host link and "
                       "{:.2f} MiB to disk per step\n",
                       offload_name(p.offload), mib(m.host), mib(m.disk), mib(plan.offload_link_bytes),
                       mib(plan.offload_disk_bytes));
  out += fmt::format("per-step bytes sent per rank: dp {} ({:.2f} MiB), tp {}, pp {}\n", plan.comm.dp, mib(plan.comm.dp),
                     plan.comm.tp, plan.comm.pp);
  out += "every ZeRO stage for this layout:\n  stage   params MiB   grads MiB   optimizer MiB   states MiB   dp MiB/step\n";
  for (const StageRow& row : zero_stage_rows(plan, config)) {
    if (!row.refused.empty()) {
      out += fmt::format("  {:>5}  refused: {}\n", row.stage, row.refused);
      continue;
    }
    const MemoryPlan& o = row.plan.memory;
    out += fmt::format("  {:>5}{:>13.2f}{:>12.2f}{:>16.2f}{:>13.2f}{:>14.2f}\n", row.stage, mib(o.params), mib(o.grads),
                       mib(o.optimizer), mib(o.model_states()), mib(row.plan.comm.dp));
  }
  return out;
}

std::string plan_json(const Plan& plan, const Config& config) {
  const ParallelConfig& p = plan.parallel;
  JsonWriter json;
  json.begin_object().field("world_size", plan.world_size).field("parameters", plan.parameters);
  json.field("precision", dtype_name(config.precision.compute));
  json.begin_object("mesh").field("dp", p.dp).field("tp", p.tp).field("pp", p.pp).field("zero", p.zero);
  json.field("offload", offload_name(p.offload)).field("zero3_gather", gather_name(p.zero3_gather));
  for (const auto& [name, groups] : {std::pair{"dp_groups", &plan.dp_groups}, std::pair{"tp_groups", &plan.tp_groups},
                                     std::pair{"pp_groups", &plan.pp_groups}}) {
    json.begin_array(name);
    for (const auto& g : *groups) {
      json.begin_array();
      for (int r : g) json.field("", r);
      json.end_array();
    }
    json.end_array();
  }
  json.end_object();
  json.begin_array("stage_of_layer");
  for (int s : plan.stage_of_layer) json.field("", s);
  json.end_array();
  json.begin_object("pipeline")
      .field("schedule", schedule_text(p.schedule))
      .field("micro_batches", config.accumulation_steps())
      .field("virtual_stages", p.virtual_stages)
      .field("bubble_fraction", plan.bubble_fraction)
      .field("textbook_bubble_fraction", p.pp > 1 ? textbook_bubble(plan, config) : 0.0)
      .end_object();
  memory_json(json, plan.memory);
  json.field("bubble_fraction", plan.bubble_fraction);
  json.begin_object("comm_bytes").field("dp", plan.comm.dp).field("tp", plan.comm.tp).field("pp", plan.comm.pp).end_object();
  json.field("dp_bytes_per_micro_batch", plan.dp_per_micro_batch)
      .field("offload_link_bytes", plan.offload_link_bytes)
      .field("offload_disk_bytes", plan.offload_disk_bytes);
  json.begin_array("zero_stages");
  for (const StageRow& row : zero_stage_rows(plan, config)) {
    json.begin_object().field("stage", row.stage).field("runs", row.refused.empty());
    if (!row.refused.empty()) json.field("refused", row.refused);
    else memory_json(json.field("dp_bytes", row.plan.comm.dp), row.plan.memory);
    json.end_object();
  }
  json.end_array();
  if (config.cluster.given()) {
    json.begin_object("prediction");
    breakdown_json(json, predict(config, plan));
    json.end_object();
  }
  json.end_object();
  return json.str();
}

std::string format_prediction(const Prediction& p) {
  const StepBreakdown& t = p.time;
  std::string out = fmt::format(
      "predicted step {:.4g} ms (slowest stage {}): GEMMs {:.4g}, memory-bound {:.4g}{}, recompute {:.4g}, tp {:.4g}, "
      "bubble {:.4g}, pp {:.4g}, exposed dp {:.4g}, optimizer {:.4g} ms\n",
      p.step_ms, p.slowest_stage, t.gemm_ms, t.memory_bound_ms, p.memory_bound_modelled ? "" : " (not modelled: set "
      "cluster.memory_GBps)", t.recompute_ms, t.tp_ms, t.bubble_ms, t.pp_ms, t.dp_exposed_ms, t.optimizer_ms);
  out += fmt::format("MFU {:.1f}%, {:.4g} model TFLOP/s per device ({:.4g} with recomputation), {:.0f} tokens/s; "
                     "{:.3g} GiB on rank 0's device of {:.0f} GiB",
                     100.0 * p.mfu, p.model_tflops_per_device, p.hardware_tflops_per_device, p.tokens_per_s,
                     gib(p.device_bytes), gib(p.device_capacity_bytes));
  if (p.host_bytes > 0) out += fmt::format(", {:.2f} GiB host and {:.2f} GiB disk per rank", gib(p.host_bytes), gib(p.disk_bytes));
  out += fmt::format(" ({}); kernels: {}", p.fits ? "fits" : "does not fit", kernels_name(p.kernels));
  return out;
}

std::string prediction_json(const Prediction& p) {
  JsonWriter json;
  json.begin_object();
  breakdown_json(json, p);
  json.end_object();
  return json.str();
}

std::string format_ranking(const Ranking& ranking, const Config& config, int world_size) {
  constexpr std::size_t kShown = 30;
  std::string out = fmt::format("weft plan --auto: {} layouts of {} considered run on {} ranks, fastest first ({:.0f} "
                                "GiB per device){}\n",
                                ranking.layouts.size(), ranking.considered, world_size,
                                gib(resolve_cluster(config).memory_bytes),
                                ranking.unpredictable
                                    ? fmt::format("; {} more need host figures the cluster section lacks",
                                                  ranking.unpredictable)
                                    : "");
  out += "   dp   tp   pp  zero  offload      gather     step ms    MFU   GiB/rank  fits\n";
  for (std::size_t i = 0; i < ranking.layouts.size() && i < kShown; ++i) {
    const RankedLayout& r = ranking.layouts[i];
    out += fmt::format("{:>5}{:>5}{:>5}{:>6}{:>9}{:>12}{:>12.4g}{:>6.1f}%{:>10.3g}  {}\n", r.parallel.dp, r.parallel.tp,
                       r.parallel.pp, r.parallel.zero, offload_name(r.parallel.offload),
                       r.parallel.zero == 3 ? gather_name(r.parallel.zero3_gather) : "-", r.prediction.step_ms,
                       100.0 * r.prediction.mfu, gib(r.prediction.device_bytes), r.prediction.fits ? "yes" : "no");
  }
  if (ranking.layouts.size() > kShown)
    out += fmt::format("  ... and {} more (--json lists every one)\n", ranking.layouts.size() - kShown);
  return out;
}

std::string ranking_json(const Ranking& ranking, int world_size) {
  JsonWriter json;
  json.begin_object()
      .field("world_size", world_size)
      .field("considered", ranking.considered)
      .field("unpredictable", ranking.unpredictable);
  json.begin_array("layouts");
  for (const RankedLayout& r : ranking.layouts) {
    const ParallelConfig& p = r.parallel;
    json.begin_object().field("dp", p.dp).field("tp", p.tp).field("pp", p.pp).field("zero", p.zero);
    json.field("offload", offload_name(p.offload)).field("zero3_gather", gather_name(p.zero3_gather));
    breakdown_json(json, r.prediction);
    json.end_object();
  }
  json.end_array();
  json.end_object();
  return json.str();
}

}  // namespace weft
