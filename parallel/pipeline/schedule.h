// Pipeline schedules as per-rank action lists (GPipe, 1F1B, interleaved 1F1B) and a simulator that checks them
// without a model: matched sends and receives, no deadlock, forward before backward, the bubble, peak memory.
#pragma once

#include <string>
#include <vector>

#include "runtime/config.h"

namespace weft {

// The model is cut into pp * virtual_stages chunks of consecutive layers; chunk c runs on pipeline rank
// c % pp (Megatron's interleaving: rank r holds chunks r, r + pp, r + 2 pp, ...).
enum class ActionKind { kForward, kBackward, kSendActivation, kRecvActivation, kSendGradient, kRecvGradient };

struct Action {
  ActionKind kind;
  int micro_batch;
  int chunk;  // the model chunk computed (kForward, kBackward) or whose boundary tensor moves
  int peer;   // pipeline rank sent to or received from; -1 for compute
  friend bool operator==(const Action&, const Action&) = default;
};

struct Schedule {
  PipelineSchedule kind;
  int stages = 1;          // pp
  int micro_batches = 1;
  int virtual_stages = 1;  // chunks per rank
  std::vector<std::vector<Action>> programs;  // one per pipeline rank, executed in order
  int chunks() const { return stages * virtual_stages; }
  int rank_of_chunk(int chunk) const { return chunk % stages; }
};

// Throws Error(kUsage) for combinations a schedule cannot run (e.g. interleaving without virtual stages).
Schedule make_schedule(PipelineSchedule kind, int stages, int micro_batches, int virtual_stages);

struct Simulation {
  bool ok = false;
  std::string problem;             // why not, naming the rank and action
  double makespan = 0.0;           // in units of one stage's forward time
  double bubble_fraction = 0.0;    // idle share of rank-time
  std::vector<int> peak_in_flight;  // per rank: most micro-batch chunks whose activations are alive at once
  // per rank: the widest span of micro-batch numbers alive at once (first forward started, last backward not
  // done), so slot m % span never holds two live micro-batches
  std::vector<int> peak_micro_window;
};

// Runs the programs with blocking receives and buffered sends; a chunk's forward costs 1 / virtual_stages and
// its backward `backward_cost` / virtual_stages (a stage's forward is the unit).
Simulation simulate(const Schedule& schedule, double backward_cost = 2.0);

// The textbook bubble: (p - 1) / (m + p - 1), and (p - 1) / (v m + p - 1) when interleaved.
double ideal_bubble_fraction(const Schedule& schedule);

std::string describe(const Action& action);

}  // namespace weft
