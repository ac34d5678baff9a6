// StepProgram: one rank's training step as a list of actions. The pipeline schedule's per-rank program (chunks
// of micro-batches) is lowered to segment-level compute, the transfers at chunk boundaries, and ZeRO-3's gathers
// and releases, placed by one prefetch policy. A plain step is the schedule of one stage.
#pragma once

#include <string>
#include <vector>

#include "model/param_layout.h"
#include "parallel/bucket_layout.h"
#include "parallel/pipeline/schedule.h"

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

// Whether the parameters the model reads are always there (fp32, unsharded) or transient copies made for each
// use (ZeRO 3 gathers them, 16-bit storage widens them) and freed after it.
enum class ParamResidency { kResident, kTransient };

struct StepProgram {
  std::vector<StepAction> actions;
  int micro_batches = 1;
};

// Lowers pipeline rank `stage`'s program of `schedule` for a model part laid out by `params` and cut into
// `layout`'s segments. Each forward chunk loads its micro-batch's ids (cheap: the first chunk embeds the inputs,
// the last scores the targets).
//
// Prefetch policy (kTransient): before each compute action, start gathering what the next compute action of the
// same micro-batch will need, and what this one needs if it is not already on its way; after it, release what
// the next compute action of the same micro-batch does not need. So at most two actions' segments are gathered
// at a time, and each micro-batch gathers every segment twice (forward and backward) but the head's, which stays
// from the loss to its backward.
StepProgram lower_schedule(const Schedule& schedule, int stage, const ParamLayout& params, const BucketLayout& layout,
                           ParamResidency residency);

// The segments a compute action reads parameters of (empty for transfers and the embedding backward).
std::vector<int> segments_read(const StepAction& action, const ParamLayout& params, const BucketLayout& layout);

std::string describe(const StepAction& action);

}  // namespace weft
