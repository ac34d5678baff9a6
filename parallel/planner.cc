#include "parallel/planner.h"

#include <fmt/format.h>

#include "collectives/communicator.h"
#include "model/model.h"
#include "parallel/bucket_layout.h"
#include "parallel/data_parallel.h"
#include "parallel/pipeline/stage_plan.h"
#include "parallel/pipeline/stages.h"
#include "parallel/step_program.h"
#include "parallel/zero.h"
#include "runtime/json_writer.h"

namespace weft {
namespace {

std::int64_t bus(OpKind op, std::int64_t bytes, int n) {
  return static_cast<std::int64_t>(bus_bytes(op, static_cast<std::uint64_t>(bytes), n));
}

// Mirrors Trainer, ParamStore and GradientReducer: every collective one dp rank issues in a step.
std::int64_t dp_bytes_per_step(const Config& config, const ParamLayout& params, const BucketLayout& layout,
                               ZeroPlan zero) {
  const int n = layout.dp();
  const auto element = static_cast<std::int64_t>(dtype_size(config.precision.compute));
  const int micro_batches = config.accumulation_steps();
  const std::int64_t exact_double = n * 8;  // dp_sum: 8 bytes per rank, all-gathered
  std::int64_t total = bus(OpKind::kAllGather, exact_double, n);  // the step's loss
  if (zero.optimizer_sharded) total += bus(OpKind::kAllGather, exact_double, n);  // the gradient norm
  if (config.precision.compute == DType::kF16) total += bus(OpKind::kAllGather, exact_double, n);  // overflow
  for (const Bucket& b : layout.buckets()) {
    const std::int64_t bytes = b.padded_size * element;
    if (!zero.optimizer_sharded) {
      total += bus(OpKind::kAllReduce, bytes, n);
    } else if (!zero.gradients_sharded) {
      total += bus(OpKind::kReduceScatter, bytes, n) + bus(OpKind::kAllGather, bytes, n);
    } else {
      // Reduce-scattered per micro-batch, or once per step in a pipeline (GradientReducer's Accumulation).
      const int reductions = accumulation_for(config.parallel) == Accumulation::kPerStep ? 1 : micro_batches;
      total += reductions * bus(OpKind::kReduceScatter, bytes, n);
      if (!zero.parameters_sharded) total += bus(OpKind::kAllGather, bytes, n);
    }
  }
  // ZeRO 3: the gathers the step program issues (per use or per step, parallel.zero3_gather).
  if (zero.parameters_sharded)
    for (const StepAction& action : step_program_for(config, 0, params, layout).actions)
      if (action.op == StepOp::kGather)
        total += bus(OpKind::kAllGather,
                     layout.buckets()[static_cast<std::size_t>(layout.bucket_of(action.segment))].padded_size * element,
                     n);
  return total;
}

// Mirrors the model's tensor-parallel layers (model/tp_layers.h): per micro-batch, all-reduces of the residual stream (batch x seq x d_model)
// for the embedding, two per block forward, two per block backward (two more when recomputed), the head's
// backward, and the vocab-parallel loss statistics; then the norm's exact gather.
// With sequence parallelism each all-reduce of the stream becomes a reduce-scatter plus an all-gather (the same
// bytes), and the LayerNorm weight gradients (2 x d_model floats each) are all-reduced per micro-batch.
// For pipeline stage `span`: the embedding's reduction on the first stage, the blocks', and the head's and
// loss statistics' on the last.
std::int64_t tp_bytes_per_step(const Config& config, const StageSpan& span, bool first_stage) {
  const int t = config.parallel.tp;
  const std::int64_t rows = static_cast<std::int64_t>(config.train.micro_batch) * config.model.seq_len;
  const std::int64_t stream = rows * config.model.d_model * 4;
  int layers = 0;
  for (const LayerRange& chunk : span.chunks) layers += chunk.end - chunk.begin;
  const int per_block = config.train.recompute == Recompute::kBlock ? 6 : 4;
  const std::int64_t stream_ops = (first_stage ? 1 : 0) + (span.head ? 1 : 0) + per_block * layers;
  std::int64_t per_micro =
      span.head ? bus(OpKind::kAllReduce, rows * 4, t) + bus(OpKind::kAllReduce, 2 * rows * 4, t) : 0;
  if (config.parallel.sequence_parallel && t > 1) {
    per_micro += stream_ops * (bus(OpKind::kReduceScatter, stream, t) + bus(OpKind::kAllGather, stream, t));
    per_micro += ((span.head ? 1 : 0) + 2 * layers) * bus(OpKind::kAllReduce, 2 * config.model.d_model * 4, t);
  } else {
    per_micro += stream_ops * bus(OpKind::kAllReduce, stream, t);
  }
  return config.accumulation_steps() * per_micro + bus(OpKind::kAllGather, t * 8, t);
}

// Pipeline rank 0 (the first stage) sends each micro-batch's output stream forward, its copy of the tied
// embeddings' gradient to the last stage, and takes part in the exact sums of the loss and the norm.
std::int64_t pp_bytes_per_step(const Config& config, const ParamLayout& first_stage) {
  const int pp = config.parallel.pp;
  if (pp == 1) return 0;
  const int t = config.parallel.tp;
  const bool sp = config.parallel.sequence_parallel && t > 1;
  const std::int64_t rows = static_cast<std::int64_t>(config.train.micro_batch) * config.model.seq_len;
  const std::int64_t stream = (sp ? rows / t : rows) * config.model.d_model * 4;
  // The first stage sends each micro-batch forward once per chunk it holds (none is the model's last), and
  // backward once per chunk but its first (chunk 0 has no predecessor).
  const int sends_per_micro = 2 * config.parallel.virtual_stages - 1;
  return config.accumulation_steps() * sends_per_micro * bus(OpKind::kSend, stream, pp) +
         bus(OpKind::kSend, first_stage.embeddings().size() * 4, pp) + 2 * bus(OpKind::kAllGather, pp * 8, pp);
}

std::vector<std::vector<int>> groups_along(const ParallelConfig& p, int world, int MeshCoordinates::*axis) {
  std::vector<std::vector<int>> groups;
  for (int rank = 0; rank < world; ++rank) {
    if (mesh_coordinates(rank, p).*axis != 0) continue;
    std::vector<int> group;
    for (int other = 0; other < world; ++other) {
      MeshCoordinates a = mesh_coordinates(rank, p), b = mesh_coordinates(other, p);
      a.*axis = b.*axis = 0;
      if (a.dp == b.dp && a.tp == b.tp && a.pp == b.pp) group.push_back(other);
    }
    groups.push_back(group);
  }
  return groups;
}

std::string join(const std::vector<int>& ranks) {
  std::string text;
  for (int r : ranks) {
    if (!text.empty()) text += ',';
    text += std::to_string(r);
  }
  return text;
}

double mib(std::int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

}  // namespace

Plan make_plan(const Config& config, int world_size) {
  Plan plan;
  plan.world_size = world_size;
  plan.parallel = config.parallel;
  const ParallelConfig& p = plan.parallel;
  plan.dp_groups = groups_along(p, world_size, &MeshCoordinates::dp);
  plan.tp_groups = groups_along(p, world_size, &MeshCoordinates::tp);
  plan.pp_groups = groups_along(p, world_size, &MeshCoordinates::pp);
  // Chunk c of the model runs on pipeline stage c % pp (interleaving puts several chunks on each stage).
  for (int chunk : chunk_of_layer(config)) plan.stage_of_layer.push_back(chunk % p.pp);

  // Rank 0's figures: the first pipeline stage, tp rank 0 (every tp rank of a stage holds the same amount).
  const StageSpan span = stage_span(config, 0);
  const ModelFamily& family = model_family(config.model);
  const ParamLayout params = family.layout(config.model, 0, p.tp, span);
  plan.parameters = family.layout(config.model, 0, 1, {}).total();
  const ZeroPlan zero = ZeroPlan::for_stage(p.zero);
  const BucketLayout layout(params, config.comm.bucket_mb, p.dp,
                            zero.parameters_sharded ? BucketGranularity::kOnePerSegment : BucketGranularity::kBySize);
  const auto element = static_cast<std::int64_t>(dtype_size(config.precision.compute));
  const std::int64_t full = layout.padded_total(), shard = layout.shard_size();
  plan.memory.params = element * (zero.parameters_sharded ? shard : full);
  plan.memory.grads = element * (zero.gradients_sharded ? shard : full);
  // Adam m and v (plus fp32 masters under 16-bit compute) for the whole model or the own chunks.
  std::int64_t optimizer_elements = 0;
  for (const Bucket& b : layout.buckets()) optimizer_elements += zero.optimizer_sharded ? layout.chunk(b) : b.flat.size();
  plan.memory.optimizer = optimizer_elements * 4 * (config.precision.compute == DType::kF32 ? 2 : 3);
  ModelOptions options;
  options.recompute = config.train.recompute;
  options.sequence_parallel = p.sequence_parallel;
  options.stage = span;
  options.activation_slots = activation_slots(config, 0);  // the schedule's peak for the first stage
  plan.memory.activations = family.activation_bytes(config.model, config.train.micro_batch, options, p.tp);
  plan.comm.dp = dp_bytes_per_step(config, params, layout, zero);
  plan.comm.tp = tp_bytes_per_step(config, span, true);
  plan.comm.pp = pp_bytes_per_step(config, params);
  if (p.pp > 1) plan.bubble_fraction = simulate(pipeline_schedule(config)).bubble_fraction;
  return plan;
}

std::string format_plan(const Plan& plan, const Config& config) {
  const ParallelConfig& p = plan.parallel;
  std::string out = fmt::format("weft plan: {} on {} rank(s): dp {} x tp {} x pp {}, ZeRO {}, {}, {} parameters\n",
                                config.source_path, plan.world_size, p.dp, p.tp, p.pp, p.zero,
                                dtype_name(config.precision.compute), plan.parameters);
  out += "mesh (rank = tp + tp_size * (dp + dp_size * pp)):\n";
  for (const auto& g : plan.dp_groups) out += fmt::format("  dp group: ranks {}\n", join(g));
  for (const auto& g : plan.tp_groups) out += fmt::format("  tp group: ranks {}\n", join(g));
  for (const auto& g : plan.pp_groups) out += fmt::format("  pp group: ranks {}\n", join(g));
  out += "layers -> pipeline stage:";
  for (std::size_t l = 0; l < plan.stage_of_layer.size(); ++l) out += fmt::format(" h.{}:{}", l, plan.stage_of_layer[l]);
  if (p.pp > 1)
    out += fmt::format("\npipeline: {} schedule, {} micro-batches, {} virtual stage(s), bubble {:.1f}% (simulated; "
                       "textbook (p-1)/(vm+p-1) = {:.1f}%); figures below are rank 0's (the first stage)",
                       config.parallel.schedule == PipelineSchedule::kGpipe         ? "GPipe"
                       : config.parallel.schedule == PipelineSchedule::kInterleaved ? "interleaved 1F1B"
                                                                                     : "1F1B",
                       config.accumulation_steps(), p.virtual_stages, 100.0 * plan.bubble_fraction,
                       100.0 * (p.pp - 1) /
                           (static_cast<double>(p.virtual_stages) * config.accumulation_steps() + p.pp - 1.0));
  out += fmt::format("\nper-rank memory: params {:.2f} MiB, grads {:.2f} MiB, optimizer {:.2f} MiB, activations {:.2f} MiB "
                     "(model states {:.2f} MiB)\n",
                     mib(plan.memory.params), mib(plan.memory.grads), mib(plan.memory.optimizer),
                     mib(plan.memory.activations), mib(plan.memory.model_states()));
  out += fmt::format("per-step bytes sent per rank: dp {} ({:.2f} MiB), tp {}, pp {}\n", plan.comm.dp, mib(plan.comm.dp),
                     plan.comm.tp, plan.comm.pp);
  out += "every ZeRO stage for this layout:\n  stage   params MiB   grads MiB   optimizer MiB   states MiB   dp MiB/step\n";
  for (int stage = 0; stage <= 3; ++stage) {
    if (p.pp > 1 && stage > 1) {
      out += fmt::format("  {:>5}  refused with pipelining (see docs/planner.md)\n", stage);
      continue;
    }
    Config variant = config;
    variant.parallel.zero = stage;
    const Plan other = make_plan(variant, plan.world_size);
    out += fmt::format("  {:>5}{:>13.2f}{:>12.2f}{:>16.2f}{:>13.2f}{:>14.2f}\n", stage, mib(other.memory.params),
                       mib(other.memory.grads), mib(other.memory.optimizer), mib(other.memory.model_states()),
                       mib(other.comm.dp));
  }
  return out;
}

std::string plan_json(const Plan& plan) {
  JsonWriter json;
  json.begin_object().field("world_size", plan.world_size).field("parameters", plan.parameters);
  json.begin_object("mesh").field("dp", plan.parallel.dp).field("tp", plan.parallel.tp).field("pp", plan.parallel.pp);
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
  json.begin_object("mem")
      .field("params", plan.memory.params)
      .field("grads", plan.memory.grads)
      .field("optimizer", plan.memory.optimizer)
      .field("activations", plan.memory.activations)
      .end_object();
  json.field("bubble_fraction", plan.bubble_fraction);
  json.begin_object("comm_bytes").field("dp", plan.comm.dp).field("tp", plan.comm.tp).field("pp", plan.comm.pp).end_object();
  json.end_object();
  return json.str();
}

}  // namespace weft
