#include "parallel/capabilities.h"

#include <cstdint>
#include <limits>

#include <fmt/format.h>

#include "model/model.h"
#include "parallel/pipeline/stage_plan.h"

namespace weft {
namespace {

std::string_view schedule_name(PipelineSchedule schedule) {
  switch (schedule) {
    case PipelineSchedule::kGpipe: return "gpipe";
    case PipelineSchedule::k1F1B: return "1f1b";
    case PipelineSchedule::kInterleaved: return "interleaved";
  }
  return "?";
}

template <typename Value>
ConfigProblem problem(std::string key, const Value& value, std::string why) {
  return ConfigProblem{std::move(key), fmt::format("{}", value), std::move(why)};
}

// The mesh against the world size, and the batch against the mesh.
std::optional<ConfigProblem> mesh_problem(const Config& c) {
  const ParallelConfig& p = c.parallel;
  const std::int64_t tp_pp = std::int64_t{p.tp} * p.pp;
  if (p.dp == 0)  // auto, left unresolved by the loader because tp * pp does not divide the world
    return problem("parallel.dp", "auto",
                   fmt::format("dp = world size / (tp * pp) needs the world size ({}) to be divisible by tp ({}) * pp "
                               "({}) = {}; change tp or pp, or run a multiple of {} ranks",
                               c.world_size, p.tp, p.pp, tp_pp, tp_pp));
  std::int64_t ranks = 0;  // dp * tp * pp, saturated: absurd values must not overflow
  if (__builtin_mul_overflow(tp_pp, std::int64_t{p.dp}, &ranks)) ranks = std::numeric_limits<std::int64_t>::max();
  if (ranks != c.world_size) {
    const std::string fix = c.world_size % tp_pp == 0 ? fmt::format("try dp = {} or dp = auto", c.world_size / tp_pp)
                                                      : fmt::format("change tp or pp, or run {} ranks", ranks);
    return problem("parallel.dp", p.dp,
                   fmt::format("dp ({}) * tp ({}) * pp ({}) = {} must equal the world size ({}); {}", p.dp, p.tp, p.pp,
                               ranks, c.world_size, fix));
  }
  const TrainConfig& train = c.train;
  const std::int64_t unit = std::int64_t{train.micro_batch} * p.dp;
  if (train.global_batch % unit != 0) {
    const std::int64_t below = train.global_batch / unit * unit, above = below + unit;
    const std::int64_t suggestion = below > 0 && train.global_batch - below <= above - train.global_batch ? below : above;
    const std::string micro =
        train.global_batch % p.dp == 0
            ? fmt::format(", or micro_batch = {}", nearest_divisors(train.global_batch / p.dp, train.micro_batch))
            : "";
    return problem("train.global_batch", train.global_batch,
                   fmt::format("global_batch = micro_batch * accumulation * dp must be a multiple of micro_batch ({}) "
                               "* dp ({}) = {}; try global_batch = {}{}",
                               train.micro_batch, p.dp, unit, suggestion, micro));
  }
  return std::nullopt;
}

// Sequence parallelism splits each micro-batch's tokens over tp.
std::optional<ConfigProblem> sequence_problem(const Config& c) {
  const ParallelConfig& p = c.parallel;
  const std::int64_t tokens = std::int64_t{c.train.micro_batch} * c.model.seq_len;
  if (p.sequence_parallel && p.tp > 1 && tokens % p.tp != 0)
    return problem("parallel.sequence_parallel", "true",
                   fmt::format("the {} tokens of a micro-batch (micro_batch {} x seq_len {}) must split evenly over "
                               "tp = {}",
                               tokens, c.train.micro_batch, c.model.seq_len, p.tp));
  return std::nullopt;
}

// The pipeline's shape: the schedule against virtual stages, and chunks against layers.
std::optional<ConfigProblem> pipeline_shape_problem(const Config& c) {
  const ParallelConfig& p = c.parallel;
  const bool interleaved = p.schedule == PipelineSchedule::kInterleaved;
  if (interleaved && p.virtual_stages <= 1)
    return problem("parallel.schedule", "interleaved",
                   fmt::format("the interleaved schedule needs parallel.virtual_stages > 1 (it is {}); try "
                               "virtual_stages = 2",
                               p.virtual_stages));
  if (!interleaved && p.virtual_stages > 1)
    return problem("parallel.virtual_stages", p.virtual_stages,
                   fmt::format("virtual_stages > 1 needs parallel.schedule = interleaved (it is {})",
                               schedule_name(p.schedule)));
  const std::int64_t chunks = std::int64_t{c.model.layers} * p.virtual_stages;
  if (chunks % p.pp != 0)
    return problem("parallel.pp", p.pp,
                   fmt::format("layers ({}) * virtual_stages ({}) = {} must be divisible by pp; try pp = {}",
                               c.model.layers, p.virtual_stages, chunks, nearest_divisors(chunks, p.pp)));
  return std::nullopt;
}

// Pipeline parallelism once the mesh holds: chunks against layers, the micro-batches, what pipelines cannot
// combine with yet, and whether the schedule runs at all.
std::optional<ConfigProblem> pipeline_problem(const Config& c) {
  const ParallelConfig& p = c.parallel;
  if (p.pp == 1) return std::nullopt;
  if (std::int64_t{p.pp} * p.virtual_stages > c.model.layers)
    return problem("parallel.virtual_stages", p.virtual_stages,
                   fmt::format("the pipeline cuts model.layers = {} into pp x virtual_stages = {} chunks and needs at "
                               "least one layer per chunk",
                               c.model.layers, std::int64_t{p.pp} * p.virtual_stages));
  if (auto broken = layers_per_stage_problem(c)) return broken;
  const int micro_batches = c.accumulation_steps();
  if (p.microbatches != 0 && p.microbatches != micro_batches)
    return problem("parallel.microbatches", p.microbatches,
                   fmt::format("the pipeline runs global_batch / (micro_batch x dp) = {} micro-batches per step; set "
                               "it to {} or auto",
                               micro_batches, micro_batches));
  // The schedule itself: the simulator must prove this stage count, micro-batch count and interleaving run.
  const Simulation simulation = simulate(pipeline_schedule(c));
  if (!simulation.ok)
    return problem("parallel.schedule", schedule_name(p.schedule),
                   fmt::format("with pp = {}, {} micro-batches per step and {} virtual stages the schedule cannot run "
                               "({}); change the number of micro-batches (global_batch / (micro_batch x dp)) or the "
                               "schedule",
                               p.pp, micro_batches, p.virtual_stages, simulation.problem));
  return std::nullopt;
}

}  // namespace

std::optional<ConfigProblem> find_layout_problem(const Config& c) {
  // In the order a user would fix them: the shape of the pipeline and the model's split first, then the mesh
  // against the world and the batch against the mesh, then what depends on all of these.
  if (auto broken = pipeline_shape_problem(c)) return broken;
  if (auto broken = model_family(c.model).layout_problem(c.model, c.parallel)) return broken;
  if (auto broken = mesh_problem(c)) return broken;
  if (auto broken = sequence_problem(c)) return broken;
  if (auto broken = pipeline_problem(c)) return broken;
  // The directory itself is checked where its file is made (OptimizerOffload): it belongs to the machine that
  // trains, not to the layout.
  if (c.parallel.offload == Offload::kDisk && c.parallel.offload_dir.empty())
    return problem("parallel.offload", "disk",
                   "needs parallel.offload_dir, the directory for the optimizer state's files (a fast local disk)");
  if (c.parallel.grad_sum == GradSum::kExact && c.parallel.pp > 1)
    return problem("parallel.grad_sum", "exact",
                   "needs pp = 1: a pipeline's stages sum their micro-batches over the whole step before reducing");
  if (c.parallel.grad_sum == GradSum::kExact && c.parallel.offload != Offload::kNone)
    return problem("parallel.grad_sum", "exact",
                   "needs parallel.offload: none (offloaded gradients stream to the host as each bucket is reduced)");
  if (c.checkpoint.every > 0 && c.checkpoint.dir.empty())
    return problem("checkpoint.every", c.checkpoint.every, "needs checkpoint.dir, the directory to save into");
  return std::nullopt;
}

void check_layout(const Config& config) {
  if (auto broken = find_layout_problem(config)) fail_config_key(config, broken->key, broken->value, broken->why);
}

Config load_job_config(const std::string& path, const std::vector<ConfigOverride>& overrides, int world_size) {
  Config config = load_config(path, overrides, world_size);
  check_layout(config);
  return config;
}

}  // namespace weft
