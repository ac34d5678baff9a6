#include "parallel/pipeline/schedule.h"

#include <algorithm>
#include <deque>
#include <map>
#include <tuple>

#include <fmt/format.h>

#include "runtime/error.h"

namespace weft {
namespace {

struct Compute {
  bool forward;
  int micro_batch, chunk;
};

// The order in which one rank computes its (micro-batch, chunk) units. Interleaved schedules walk micro-batches
// in groups of pp, all of a group through one local chunk before the next (Narayanan et al. 2021, sec. 2.2).
std::vector<Compute> unit_order(const Schedule& s, int rank, bool forward) {
  std::vector<Compute> order;
  const int groups = (s.micro_batches + s.stages - 1) / s.stages;
  for (int group = 0; group < groups; ++group) {
    for (int local = 0; local < s.virtual_stages; ++local) {
      const int local_chunk = forward ? local : s.virtual_stages - 1 - local;
      const int chunk = local_chunk * s.stages + rank;
      for (int m = group * s.stages; m < std::min(s.micro_batches, (group + 1) * s.stages); ++m)
        order.push_back({forward, m, chunk});
    }
  }
  return order;
}

std::vector<Compute> compute_order(const Schedule& s, int rank) {
  const std::vector<Compute> forwards = unit_order(s, rank, true), backwards = unit_order(s, rank, false);
  const int total = static_cast<int>(forwards.size());
  if (s.kind == PipelineSchedule::kGpipe) {
    std::vector<Compute> order = forwards;
    order.insert(order.end(), backwards.begin(), backwards.end());
    return order;
  }
  // 1F1B: enough forwards to fill the pipeline behind this rank, then one forward and one backward in turn,
  // then the remaining backwards. Interleaving needs (v - 1) pp more to cover the other chunks.
  int warmup = s.kind == PipelineSchedule::kInterleaved ? (s.stages - rank - 1) * 2 + (s.virtual_stages - 1) * s.stages
                                                        : s.stages - rank - 1;
  warmup = std::min(warmup, total);
  std::vector<Compute> order(forwards.begin(), forwards.begin() + warmup);
  int next_forward = warmup, next_backward = 0;
  while (next_forward < total) {
    order.push_back(forwards[static_cast<std::size_t>(next_forward++)]);
    order.push_back(backwards[static_cast<std::size_t>(next_backward++)]);
  }
  while (next_backward < total) order.push_back(backwards[static_cast<std::size_t>(next_backward++)]);
  return order;
}

}  // namespace

std::string describe(const Action& a) {
  static const char* names[] = {"forward", "backward", "send activation", "recv activation", "send gradient",
                                "recv gradient"};
  std::string text = fmt::format("{} of micro-batch {} chunk {}", names[static_cast<int>(a.kind)], a.micro_batch, a.chunk);
  const bool sends = a.kind == ActionKind::kSendActivation || a.kind == ActionKind::kSendGradient;
  if (a.peer >= 0) text += fmt::format(" {} rank {}", sends ? "to" : "from", a.peer);
  return text;
}

Schedule make_schedule(PipelineSchedule kind, int stages, int micro_batches, int virtual_stages) {
  if (stages < 1 || micro_batches < 1 || virtual_stages < 1)
    fail_usage("pipeline: pp = {}, micro-batches = {}, virtual stages = {}: each must be at least 1", stages,
               micro_batches, virtual_stages);
  if ((kind == PipelineSchedule::kInterleaved) != (virtual_stages > 1))
    fail_usage("parallel.schedule: interleaved 1F1B needs virtual_stages > 1, and virtual_stages > 1 needs it");
  Schedule s{kind, stages, micro_batches, virtual_stages, {}};
  s.programs.resize(static_cast<std::size_t>(stages));
  for (int rank = 0; rank < stages; ++rank) {
    auto& program = s.programs[static_cast<std::size_t>(rank)];
    for (const Compute& unit : compute_order(s, rank)) {
      const int c = unit.chunk, m = unit.micro_batch;
      if (unit.forward) {
        // Receive the previous chunk's activation unless it ran here, compute, send to the next chunk's rank.
        if (c > 0 && s.rank_of_chunk(c - 1) != rank)
          program.push_back({ActionKind::kRecvActivation, m, c - 1, s.rank_of_chunk(c - 1)});
        program.push_back({ActionKind::kForward, m, c, -1});
        if (c + 1 < s.chunks() && s.rank_of_chunk(c + 1) != rank)
          program.push_back({ActionKind::kSendActivation, m, c, s.rank_of_chunk(c + 1)});
      } else {
        if (c + 1 < s.chunks() && s.rank_of_chunk(c + 1) != rank)
          program.push_back({ActionKind::kRecvGradient, m, c + 1, s.rank_of_chunk(c + 1)});
        program.push_back({ActionKind::kBackward, m, c, -1});
        if (c > 0 && s.rank_of_chunk(c - 1) != rank)
          program.push_back({ActionKind::kSendGradient, m, c, s.rank_of_chunk(c - 1)});
      }
    }
  }
  return s;
}

Simulation simulate(const Schedule& s, double backward_cost) {
  Simulation result;
  const int ranks = s.stages;
  const double forward_time = 1.0 / s.virtual_stages, backward_time = backward_cost / s.virtual_stages;
  std::vector<std::size_t> pc(static_cast<std::size_t>(ranks), 0);
  std::vector<double> clock(static_cast<std::size_t>(ranks), 0.0);
  std::vector<int> live(static_cast<std::size_t>(ranks), 0);
  result.peak_in_flight.assign(static_cast<std::size_t>(ranks), 0);
  result.peak_micro_window.assign(static_cast<std::size_t>(ranks), 0);
  // Per rank and micro-batch: chunk forwards and backwards done there.
  std::vector<std::vector<int>> forwards_here(static_cast<std::size_t>(ranks), std::vector<int>(static_cast<std::size_t>(s.micro_batches), 0));
  std::vector<std::vector<int>> backwards_here = forwards_here;
  const auto note_window = [&](int r) {
    int lowest = -1, highest = -1;
    for (int m = 0; m < s.micro_batches; ++m) {
      const bool alive = forwards_here[static_cast<std::size_t>(r)][static_cast<std::size_t>(m)] > 0 &&
                         backwards_here[static_cast<std::size_t>(r)][static_cast<std::size_t>(m)] < s.virtual_stages;
      if (!alive) continue;
      if (lowest < 0) lowest = m;
      highest = m;
    }
    if (lowest >= 0)
      result.peak_micro_window[static_cast<std::size_t>(r)] =
          std::max(result.peak_micro_window[static_cast<std::size_t>(r)], highest - lowest + 1);
  };
  // Messages in flight: (kind sent, from, to, micro-batch, chunk) -> the sender's clock when it was sent.
  std::map<std::tuple<int, int, int, int, int>, std::deque<double>> mailbox;
  std::map<std::pair<int, int>, int> forwarded, backwarded;  // (micro-batch, chunk) -> times computed
  // What each rank has received: (is gradient, micro-batch, chunk). A computation may only use its inputs once
  // they are here (from another rank) or computed (on this rank).
  std::vector<std::map<std::tuple<bool, int, int>, int>> received(static_cast<std::size_t>(ranks));
  const auto has_input = [&](int r, bool gradient, int m, int from_chunk) {
    if (s.rank_of_chunk(from_chunk) == r) return gradient ? backwarded.count({m, from_chunk}) > 0
                                                          : forwarded.count({m, from_chunk}) > 0;
    return received[static_cast<std::size_t>(r)].count({gradient, m, from_chunk}) > 0;
  };
  const auto done = [&](int r) { return pc[static_cast<std::size_t>(r)] >= s.programs[static_cast<std::size_t>(r)].size(); };

  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < ranks; ++r) {
      while (!done(r)) {
        const Action& a = s.programs[static_cast<std::size_t>(r)][pc[static_cast<std::size_t>(r)]];
        double& now = clock[static_cast<std::size_t>(r)];
        if (a.kind == ActionKind::kForward) {
          if (a.chunk > 0 && !has_input(r, false, a.micro_batch, a.chunk - 1)) {
            result.problem = fmt::format("rank {}: {} before it has the previous chunk's activation", r, describe(a));
            return result;
          }
          ++forwarded[{a.micro_batch, a.chunk}];
          ++forwards_here[static_cast<std::size_t>(r)][static_cast<std::size_t>(a.micro_batch)];
          note_window(r);
          now += forward_time;
          result.peak_in_flight[static_cast<std::size_t>(r)] =
              std::max(result.peak_in_flight[static_cast<std::size_t>(r)], ++live[static_cast<std::size_t>(r)]);
        } else if (a.kind == ActionKind::kBackward) {
          if (!forwarded.count({a.micro_batch, a.chunk}) ||
              (a.chunk + 1 < s.chunks() && !has_input(r, true, a.micro_batch, a.chunk + 1))) {
            result.problem = fmt::format("rank {}: {} before its forward or before the next chunk's gradient", r,
                                         describe(a));
            return result;
          }
          ++backwarded[{a.micro_batch, a.chunk}];
          ++backwards_here[static_cast<std::size_t>(r)][static_cast<std::size_t>(a.micro_batch)];
          now += backward_time;
          --live[static_cast<std::size_t>(r)];
        } else if (a.kind == ActionKind::kSendActivation || a.kind == ActionKind::kSendGradient) {
          mailbox[{static_cast<int>(a.kind), r, a.peer, a.micro_batch, a.chunk}].push_back(now);
        } else {
          const ActionKind sent =
              a.kind == ActionKind::kRecvActivation ? ActionKind::kSendActivation : ActionKind::kSendGradient;
          auto& queue = mailbox[{static_cast<int>(sent), a.peer, r, a.micro_batch, a.chunk}];
          if (queue.empty()) break;  // blocked until the peer sends
          now = std::max(now, queue.front());
          queue.pop_front();
          ++received[static_cast<std::size_t>(r)][{a.kind == ActionKind::kRecvGradient, a.micro_batch, a.chunk}];
        }
        ++pc[static_cast<std::size_t>(r)];
        progress = true;
      }
    }
  }
  for (int r = 0; r < ranks; ++r) {
    if (!done(r)) {
      result.problem = fmt::format("deadlock: rank {} waits forever at {}", r,
                                   describe(s.programs[static_cast<std::size_t>(r)][pc[static_cast<std::size_t>(r)]]));
      return result;
    }
  }
  for (const auto& [key, queue] : mailbox) {
    if (!queue.empty()) {
      result.problem = fmt::format("rank {} sent micro-batch {} chunk {} to rank {} but it was never received",
                                   std::get<1>(key), std::get<3>(key), std::get<4>(key), std::get<2>(key));
      return result;
    }
  }
  for (int m = 0; m < s.micro_batches; ++m) {
    for (int c = 0; c < s.chunks(); ++c) {
      if (forwarded[{m, c}] != 1 || backwarded[{m, c}] != 1) {
        result.problem = fmt::format("micro-batch {} chunk {} ran forward {} and backward {} times", m, c,
                                     forwarded[{m, c}], backwarded[{m, c}]);
        return result;
      }
    }
  }
  result.ok = true;
  result.makespan = *std::max_element(clock.begin(), clock.end());
  const double busy_per_rank = s.micro_batches * (1.0 + backward_cost);
  result.bubble_fraction = 1.0 - busy_per_rank / result.makespan;
  return result;
}

double ideal_bubble_fraction(const Schedule& s) {
  const double p = s.stages, m = s.micro_batches, v = s.virtual_stages;
  return (p - 1) / (v * m + p - 1);
}

}  // namespace weft
