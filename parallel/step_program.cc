#include "parallel/step_program.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "parallel/pipeline/stage_plan.h"
#include "parallel/zero.h"

namespace weft {
namespace {

bool is_compute(StepOp op) { return op <= StepOp::kEmbedBackward && op != StepOp::kLoadBatch; }

// The chunk-level program as compute and transfer actions, before any gather or release.
std::vector<StepAction> lower_compute(const Schedule& schedule, int stage, const ParamLayout& params) {
  std::vector<StepAction> out;
  const int chunks = schedule.chunks();
  for (const Action& a : schedule.programs[static_cast<std::size_t>(stage)]) {
    const int m = a.micro_batch, c = a.chunk;
    const LayerRange& layers = params.chunks()[static_cast<std::size_t>(c / schedule.stages)];
    switch (a.kind) {
      case ActionKind::kForward:
        out.push_back({StepOp::kLoadBatch, m, -1, -1, c});
        if (c == 0) out.push_back({StepOp::kEmbedForward, m, -1, -1, c});
        for (int l = layers.begin; l < layers.end; ++l) out.push_back({StepOp::kBlockForward, m, l, -1, c});
        if (c + 1 == chunks) out.push_back({StepOp::kHeadForward, m, -1, -1, c});
        break;
      case ActionKind::kBackward:
        if (c + 1 == chunks) out.push_back({StepOp::kHeadBackward, m, -1, -1, c});
        for (int l = layers.end - 1; l >= layers.begin; --l) out.push_back({StepOp::kBlockBackward, m, l, -1, c});
        if (c == 0) out.push_back({StepOp::kEmbedBackward, m, -1, -1, c});
        break;
      case ActionKind::kRecvActivation: out.push_back({StepOp::kRecvActivation, m, -1, -1, c, a.peer}); break;
      case ActionKind::kSendActivation: out.push_back({StepOp::kSendActivation, m, -1, -1, c, a.peer}); break;
      case ActionKind::kRecvGradient: out.push_back({StepOp::kRecvGradient, m, -1, -1, c, a.peer}); break;
      case ActionKind::kSendGradient: out.push_back({StepOp::kSendGradient, m, -1, -1, c, a.peer}); break;
    }
  }
  return out;
}

}  // namespace

std::vector<int> segments_read(const StepAction& action, const ParamLayout& params, const BucketLayout& layout) {
  switch (action.op) {
    case StepOp::kEmbedForward: return {layout.embedding_segment()};
    case StepOp::kBlockForward:
    case StepOp::kBlockBackward: return {layout.block_segment(action.layer)};
    case StepOp::kHeadForward:
    case StepOp::kHeadBackward:
      // The tied output projection reads the embeddings too.
      if (params.head_reads_embeddings()) return {layout.head_segment(), layout.embedding_segment()};
      return {layout.head_segment()};
    default: return {};
  }
}

StepProgram lower_schedule(const Schedule& schedule, int stage, const ParamLayout& params, const BucketLayout& layout,
                           ParamResidency residency) {
  StepProgram program;
  program.micro_batches = schedule.micro_batches;
  const std::vector<StepAction> compute = lower_compute(schedule, stage, params);
  if (residency == ParamResidency::kResident) {
    program.actions = compute;
    return program;
  }
  const bool per_step = residency == ParamResidency::kPerStep;
  // The next compute action after index i (of the same micro-batch unless gathering per step), if any.
  auto next_compute = [&](std::size_t i) -> const StepAction* {
    for (std::size_t j = i + 1; j < compute.size(); ++j)
      if (is_compute(compute[j].op) && (per_step || compute[j].micro_batch == compute[i].micro_batch))
        return &compute[j];
    return nullptr;
  };
  // Per step: the index of each segment's last use.
  std::map<int, std::size_t> last_use;
  for (std::size_t i = 0; i < compute.size(); ++i)
    if (is_compute(compute[i].op))
      for (int segment : segments_read(compute[i], params, layout)) last_use[segment] = i;
  std::set<int> gathered;  // segments gathered or being gathered
  auto gather = [&](int segment, int micro) {
    if (gathered.insert(segment).second) program.actions.push_back({StepOp::kGather, micro, -1, segment});
  };
  for (std::size_t i = 0; i < compute.size(); ++i) {
    const StepAction& action = compute[i];
    if (!is_compute(action.op)) {
      program.actions.push_back(action);
      continue;
    }
    const std::vector<int> mine = segments_read(action, params, layout);
    const StepAction* next = next_compute(i);
    const std::vector<int> upcoming = next ? segments_read(*next, params, layout) : std::vector<int>{};
    for (int segment : mine) gather(segment, action.micro_batch);
    for (int segment : upcoming) gather(segment, action.micro_batch);
    program.actions.push_back(action);
    for (int segment : mine) {
      const bool needed_next = std::find(upcoming.begin(), upcoming.end(), segment) != upcoming.end();
      if (per_step ? last_use[segment] != i : needed_next) continue;
      program.actions.push_back({StepOp::kRelease, action.micro_batch, -1, segment});
      gathered.erase(segment);
    }
  }
  return program;
}

namespace {

// A plain step is the one-stage schedule: forward then backward of each micro-batch in turn.
Schedule schedule_for(const Config& config) {
  return config.parallel.pp > 1 ? pipeline_schedule(config)
                                : make_schedule(PipelineSchedule::k1F1B, 1, config.accumulation_steps(), 1);
}

// Gathered (ZeRO 3) or widened (16-bit storage) parameters are transient; ZeRO 3 may keep them for the step.
ParamResidency residency_for(const Config& config) {
  const bool sharded = ZeroPlan::for_stage(config.parallel.zero).parameters_sharded;
  if (sharded && config.parallel.zero3_gather == Zero3Gather::kStep) return ParamResidency::kPerStep;
  if (sharded || config.precision.compute != DType::kF32) return ParamResidency::kPerUse;
  return ParamResidency::kResident;
}

}  // namespace

StepProgram step_program_for(const Config& config, int pp_rank, const ParamLayout& params, const BucketLayout& layout) {
  return lower_schedule(schedule_for(config), pp_rank, params, layout, residency_for(config));
}

StepProgram forward_program_for(const Config& config, int pp_rank, const ParamLayout& params,
                                const BucketLayout& layout) {
  // The training schedule without its backward half: each rank's forwards keep their order, and dropping the
  // backward passes only removes waits, so the program cannot deadlock where the schedule does not.
  Schedule schedule = schedule_for(config);
  for (auto& program : schedule.programs)
    std::erase_if(program, [](const Action& a) {
      return a.kind == ActionKind::kBackward || a.kind == ActionKind::kSendGradient ||
             a.kind == ActionKind::kRecvGradient;
    });
  return lower_schedule(schedule, pp_rank, params, layout, residency_for(config));
}

std::string describe(const StepAction& a) {
  static const char* names[] = {"load batch",     "embedding forward", "block forward",   "head forward",
                                "head backward",  "block backward",    "embedding backward", "recv activation",
                                "send activation", "recv gradient",    "send gradient",   "gather",
                                "release"};
  std::string text = fmt::format("{} mb{}", names[static_cast<int>(a.op)], a.micro_batch);
  if (a.layer >= 0) text += fmt::format(" h.{}", a.layer);
  if (a.segment >= 0) text += fmt::format(" segment {}", a.segment);
  if (a.peer >= 0) text += fmt::format(" chunk {} peer {}", a.chunk, a.peer);
  return text;
}

}  // namespace weft
