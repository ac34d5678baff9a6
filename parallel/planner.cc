#include "parallel/planner.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

#include "collectives/communicator.h"
#include "model/model.h"
#include "parallel/bucket_layout.h"
#include "parallel/data_parallel.h"
#include "parallel/engine.h"
#include "parallel/offload_layout.h"
#include "parallel/pipeline/stage_plan.h"
#include "parallel/pipeline/stages.h"
#include "parallel/step_program.h"
#include "parallel/zero.h"

namespace weft {
namespace {

std::int64_t bus(OpKind op, std::int64_t bytes, int n) {
  return static_cast<std::int64_t>(bus_bytes(op, static_cast<std::uint64_t>(bytes), n));
}

// Mirrors Trainer, ParamStore and GradientReducer: every collective one dp rank issues in a step, split into
// what is sent once per step and what is sent again for every micro-batch.
struct DpTraffic {
  std::int64_t per_step = 0, per_micro_batch = 0;
};

// What the reducer asks: parallel.grad_sum: exact where it changes what is sent and held.
bool ordered_grad_sum(const Config& config, int dp) {
  return sums_in_global_order(config.parallel.grad_sum, dp, config.accumulation_steps(),
                              accumulation_for(config.parallel));
}

// Rank 0's (the first pipeline stage's) data-parallel traffic.
DpTraffic dp_traffic(const Config& config, const ParamLayout& params, const BucketLayout& layout, ZeroPlan zero) {
  const int n = layout.dp();
  const auto element = static_cast<std::int64_t>(dtype_size(config.precision.compute));
  const std::int64_t exact_double = n * 8;  // dp_sum: 8 bytes per rank, all-gathered
  DpTraffic t;
  const bool ordered = ordered_grad_sum(config, n);
  // The step's loss: each rank's sum, or with an exact sum every micro-batch's (Trainer::global_loss_sum).
  t.per_step = bus(OpKind::kAllGather, exact_double * (ordered ? config.accumulation_steps() : 1), n);
  if (zero.optimizer_sharded) t.per_step += bus(OpKind::kAllGather, exact_double, n);  // the gradient norm
  if (config.precision.compute == DType::kF16) t.per_step += bus(OpKind::kAllGather, exact_double, n);  // overflow
  for (const Bucket& b : layout.buckets()) {
    const std::int64_t bytes = b.padded_size * element;
    if (ordered) {
      // Every micro-batch's gradient of the bucket, from every rank to every rank; then ZeRO 1/2 gather parameters.
      t.per_step += bus(OpKind::kAllGather, bytes * config.accumulation_steps() * n, n);
      if (zero.optimizer_sharded && !zero.parameters_sharded) t.per_step += bus(OpKind::kAllGather, bytes, n);
    } else if (!zero.optimizer_sharded) {
      t.per_step += bus(OpKind::kAllReduce, bytes, n);
    } else if (!zero.gradients_sharded) {
      t.per_step += bus(OpKind::kReduceScatter, bytes, n) + bus(OpKind::kAllGather, bytes, n);
    } else {
      // Reduce-scattered per micro-batch, or once per step in a pipeline (GradientReducer's Accumulation).
      if (accumulation_for(config.parallel) == Accumulation::kPerStep)
        t.per_step += bus(OpKind::kReduceScatter, bytes, n);
      else
        t.per_micro_batch += bus(OpKind::kReduceScatter, bytes, n);
      if (!zero.parameters_sharded) t.per_step += bus(OpKind::kAllGather, bytes, n);
    }
  }
  // ZeRO 3: the gathers the step program issues (per use or per step, parallel.zero3_gather), counted from the
  // program itself; gathered for every use they recur with every micro-batch.
  if (zero.parameters_sharded) {
    std::int64_t gathers = 0;
    for (const StepAction& action : step_program_for(config, 0, params, layout).actions)
      if (action.op == StepOp::kGather)
        gathers += bus(OpKind::kAllGather,
                       layout.buckets()[static_cast<std::size_t>(layout.bucket_of(action.segment))].padded_size *
                           element,
                       n);
    if (config.parallel.zero3_gather == Zero3Gather::kStep) t.per_step += gathers;
    else t.per_micro_batch += gathers / config.accumulation_steps();
  }
  return t;
}

// Mirrors the model's tensor-parallel layers (model/tp_layers.h): per micro-batch, all-reduces of the residual
// stream (batch x seq x d_model, `element` bytes each) for the embedding, two per block forward, two per block
// backward (two more when recomputed), the head's backward, and the vocab-parallel loss statistics (fp32); then the
// norm's exact gather. With sequence parallelism each all-reduce of the stream becomes a reduce-scatter plus an
// all-gather (the same bytes), and the LayerNorm weight gradients (2 x d_model floats each) are all-reduced per
// micro-batch. For pipeline stage `span`: the embedding's reduction on the first stage, the blocks', and the
// head's and loss statistics' on the last.
std::int64_t tp_bytes_per_step(const Config& config, const StageSpan& span, bool first_stage, int element) {
  const int t = config.parallel.tp;
  const std::int64_t rows = static_cast<std::int64_t>(config.train.micro_batch) * config.model.seq_len;
  const std::int64_t stream = rows * config.model.d_model * element;
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

// Stage `pp_rank` sends each micro-batch forward once per chunk it holds but the model's last, and backward once
// per chunk but the model's first; the first stage also sends its copy of the tied embeddings' gradient to the
// last, and every stage takes part in the exact sums of the loss and the norm.
std::int64_t pp_bytes_per_step(const Config& config, int pp_rank, std::int64_t embedding_elements, int element) {
  const int pp = config.parallel.pp;
  if (pp == 1) return 0;
  const int t = config.parallel.tp, v = config.parallel.virtual_stages;
  const bool sp = config.parallel.sequence_parallel && t > 1;
  const std::int64_t rows = static_cast<std::int64_t>(config.train.micro_batch) * config.model.seq_len;
  const std::int64_t stream = (sp ? rows / t : rows) * config.model.d_model * element;
  const int sends_per_micro = (v - (pp_rank == pp - 1 ? 1 : 0)) + (v - (pp_rank == 0 ? 1 : 0));
  const std::int64_t tied = pp_rank == 0 ? bus(OpKind::kSend, embedding_elements * 4, pp) : 0;
  return config.accumulation_steps() * sends_per_micro * bus(OpKind::kSend, stream, pp) + tied +
         2 * bus(OpKind::kAllGather, pp * 8, pp);
}

// Every group along `axis`, in the order of its first rank: one pass over the ranks (a group's first rank is the
// one whose coordinate on `axis` is 0).
std::vector<std::vector<int>> groups_along(const ParallelConfig& p, int world, int MeshCoordinates::*axis) {
  std::vector<std::vector<int>> groups;
  std::vector<int> index_of_key;  // by the rank's coordinates with `axis` zeroed
  for (int rank = 0; rank < world; ++rank) {
    MeshCoordinates c = mesh_coordinates(rank, p);
    const bool first = c.*axis == 0;
    c.*axis = 0;
    const auto key = static_cast<std::size_t>(mesh_rank(c, p));
    if (index_of_key.size() <= key) index_of_key.resize(key + 1, -1);
    if (first) {
      index_of_key[key] = static_cast<int>(groups.size());
      groups.emplace_back();
    }
    groups[static_cast<std::size_t>(index_of_key[key])].push_back(rank);
  }
  return groups;
}

// GradientReducer's fp32 scratch. Outside a pipeline, backward writes a micro-batch's gradients apart from the
// stored ones whenever those are not fp32 and whole, and for fp32's later micro-batches: a bucket at a time, plus
// the embeddings' bucket (the last) from the start when the tied head writes it first. 16-bit micro-batches that
// accumulate outside sharded gradients also keep every bucket's fp32 sum; a pipeline's per-step sums are all of it.
std::int64_t gradient_scratch_bytes(const Config& config, const ParamLayout& params, const BucketLayout& layout,
                                    const ZeroPlan& zero) {
  const bool sixteen_bit = config.precision.compute != DType::kF32;
  const bool accumulates = config.accumulation_steps() > 1;
  const std::vector<Bucket>& buckets = layout.buckets();
  const std::int64_t full = layout.padded_total();
  if (config.parallel.pp > 1) return sixteen_bit || zero.gradients_sharded ? 4 * full : 0;
  std::int64_t others = 0;
  for (std::size_t i = 0; i + 1 < buckets.size(); ++i) others = std::max(others, buckets[i].padded_size);
  const std::int64_t writing = params.head_reads_embeddings() && buckets.size() > 1
                                   ? buckets.back().padded_size + others
                                   : std::max(buckets.back().padded_size, others);
  std::int64_t bytes = 0;
  if (sixteen_bit || zero.gradients_sharded || accumulates) bytes = 4 * writing;
  // An exact sum keeps the micro-batches' gradients rounded instead (MemoryPlan::micro_gradients).
  if (sixteen_bit && accumulates && !zero.gradients_sharded && !ordered_grad_sum(config, layout.dp()))
    bytes += 4 * full;
  return bytes;
}

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
  plan.optimizer_elements = optimizer_elements;
  const std::int64_t state = optimizer_elements * 4 * (config.precision.compute == DType::kF32 ? 2 : 3);
  plan.memory.optimizer = state;
  ModelOptions options;
  options.recompute = config.train.recompute;
  options.sequence_parallel = p.sequence_parallel;
  options.stage = span;
  options.activation_slots = activation_slots(config, 0);  // the schedule's peak for the first stage
  options.activations = activation_storage_for(device_type_for(config), config.precision.compute);
  plan.memory.activations = family.activation_bytes(config.model, config.train.micro_batch, options, p.tp);

  // Transient copies: a segment is what one acquire gathers (one bucket each under ZeRO-3).
  std::int64_t largest = 0, second = 0;
  for (int s = 0; s < layout.segment_count(); ++s) {
    const std::int64_t size = zero.parameters_sharded
                                  ? layout.buckets()[static_cast<std::size_t>(layout.bucket_of(s))].padded_size
                                  : layout.segment(s).size();
    if (size > largest) second = std::exchange(largest, size);
    else second = std::max(second, size);
  }
  if (zero.parameters_sharded)
    plan.memory.gathered = element * (p.zero3_gather == Zero3Gather::kStep ? full : largest + second);
  if (config.precision.compute != DType::kF32) plan.memory.widened = 4 * largest;
  plan.memory.gradient_scratch = gradient_scratch_bytes(config, params, layout, zero);
  if (ordered_grad_sum(config, p.dp)) plan.memory.micro_gradients = element * full * config.accumulation_steps();
  const bool sixteen_bit = config.precision.compute != DType::kF32;
  const bool accumulates = config.accumulation_steps() > 1;

  // ZeRO-Offload moves the optimizer state, and the step, off the device (OptimizerOffload): what it holds in host
  // memory and in its file is offload_layout()'s, over this rank's update ranges.
  if (p.offload != Offload::kNone) {
    std::vector<std::int64_t> ranges;
    std::int64_t updated = 0;
    for (const Bucket& b : layout.buckets()) {
      ranges.push_back((zero.optimizer_sharded ? layout.owned_flat(b, 0) : b.flat).size());
      updated += ranges.back();
    }
    const OffloadLayout offload = offload_layout(p.offload, config.precision.compute, ranges);
    plan.memory.optimizer = 0;
    plan.memory.host = offload.host_total();
    plan.memory.disk = offload.file_bytes;
    plan.offload_link_bytes = 2 * element * updated;   // gradients to the host, parameters back
    plan.offload_disk_bytes = 2 * offload.file_bytes;  // every tile's region read, and written back
    // Each bucket's gradients leave the device once final, and the offload holds at most two of them (one being
    // copied, the next). With one micro-batch and nothing to reduce, that is all the device holds: the largest two
    // neighbouring buckets, plus the embeddings' bucket (the last) from the start when fp32 gradients go straight
    // into it and the tied head writes it first. Accumulated micro-batches keep every bucket until the last, but
    // 16-bit ones outside a pipeline accumulate in fp32 sums (gradient_scratch) and reach their buffer only after the
    // last micro-batch, as one micro-batch's do. With reductions in flight the count depends on when they land,
    // and the whole gradient is the bound.
    if ((!accumulates || (sixteen_bit && p.pp == 1)) && p.dp == 1 && !zero.gradients_sharded) {
      const std::vector<Bucket>& buckets = layout.buckets();
      const bool early = !sixteen_bit && params.head_reads_embeddings();
      const std::size_t last = buckets.size() - 1, streamed = early ? last : buckets.size();
      std::int64_t pair = 0;
      for (std::size_t i = 0; i < streamed; ++i)
        pair = std::max(pair, buckets[i].padded_size + (i > 0 ? buckets[i - 1].padded_size : 0));
      plan.memory.grads = element * (early ? buckets[last].padded_size + pair : pair);
    }
  }

  const DpTraffic dp = dp_traffic(config, params, layout, zero);
  plan.comm.dp = dp.per_step + config.accumulation_steps() * dp.per_micro_batch;
  plan.dp_per_micro_batch = dp.per_micro_batch;
  const StageTraffic traffic = stage_traffic(config, 0, 4);  // weft sends fp32 activations
  plan.comm.tp = traffic.tp;
  plan.comm.pp = traffic.pp;
  if (p.pp > 1) plan.bubble_fraction = simulate(pipeline_schedule(config)).bubble_fraction;
  return plan;
}

StageTraffic stage_traffic(const Config& config, int pp_rank, int element_bytes) {
  const StageSpan span = stage_span(config, pp_rank);
  const ModelFamily& family = model_family(config.model);
  StageTraffic t;
  t.tp = tp_bytes_per_step(config, span, pp_rank == 0, element_bytes);
  const std::int64_t embeddings =
      pp_rank == 0 ? family.layout(config.model, 0, config.parallel.tp, span).embeddings().size() : 0;
  t.pp = pp_bytes_per_step(config, pp_rank, embeddings, element_bytes);
  return t;
}

}  // namespace weft
