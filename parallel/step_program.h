// StepProgram: one rank's training step as a list of actions. The pipeline schedule's per-rank program (chunks
// of micro-batches) is lowered to segment-level compute, the transfers at chunk boundaries, and ZeRO-3's gathers
// and releases, placed by one prefetch policy. A plain step is the schedule of one stage.
#pragma once

#include <string>
#include <vector>

#include "model/param_layout.h"
#include "parallel/bucket_layout.h"
#include "parallel/pipeline/schedule.h"
#include "runtime/config.h"

namespace weft {

enum class StepOp {
  kLoadBatch,                                   // the micro-batch's token ids into its activation slot
  kEmbedForward, kBlockForward, kHeadForward,   // kHeadForward ends in the loss
  kHeadBackward, kBlockBackward, kEmbedBackward,
  kRecvActivation, kSendActivation, kRecvGradient, kSendGradient,  // the stream at a chunk boundary
  kGather,   // start gathering a sharded segment's parameters (ZeRO 3); its first user waits for it
  kRelease,  // free a gathered segment
};

struct StepAction {
  StepOp op;
  int micro_batch = 0;
  int layer = -1;    // kBlockForward, kBlockBackward
  int segment = -1;  // kGather, kRelease
  int chunk = -1;    // model chunk: computed, or (transfers) whose boundary tensor moves, as in Action
  int peer = -1;     // transfers: the pipeline rank sent to or received from
};

// Whether the parameters the model reads are always there (fp32, unsharded) or transient copies (ZeRO 3 gathers
// them, 16-bit storage widens them) made for each use and freed after it (kPerUse), or made once per step and freed
// after their last use in it (kPerStep: ZeRO 3 with parallel.zero3_gather = step).
enum class ParamResidency { kResident, kPerUse, kPerStep };

struct StepProgram {
  std::vector<StepAction> actions;
  int micro_batches = 1;
};

// Lowers pipeline rank `stage`'s program of `schedule` for a model part laid out by `params` and cut into
// `layout`'s segments. Each forward chunk loads its micro-batch's ids (cheap: the first chunk embeds the inputs,
// the last scores the targets).
//
// Prefetch policy: before each compute action, start gathering what the next compute action will need, and what
// this one needs if it is not already on its way. kPerUse: the next action of the same micro-batch, and after
// each action release what that one does not need; so at most two actions' segments are gathered at a time, and
// each micro-batch gathers every segment twice (forward and backward) but the head's, which stays from the loss
// to its backward. kPerStep: the next action of the step, and each segment is released after its last use, so it
// is gathered once per step.
StepProgram lower_schedule(const Schedule& schedule, int stage, const ParamLayout& params, const BucketLayout& layout,
                           ParamResidency residency);

// The segments a compute action reads parameters of (empty for transfers and the embedding backward).
std::vector<int> segments_read(const StepAction& action, const ParamLayout& params, const BucketLayout& layout);

// The program pipeline rank `pp_rank` runs for `config`: its schedule (the one-stage schedule when pp = 1) lowered
// with the residency the config's ZeRO stage, zero3_gather and precision call for. The trainer runs it; the
// planner counts its gathers.
StepProgram step_program_for(const Config& config, int pp_rank, const ParamLayout& params, const BucketLayout& layout);

// The same program without the backward pass (evaluation): forwards, their transfers, gathers and releases.
StepProgram forward_program_for(const Config& config, int pp_rank, const ParamLayout& params,
                                const BucketLayout& layout);

std::string describe(const StepAction& action);

}  // namespace weft
