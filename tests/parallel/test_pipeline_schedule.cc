// Pipeline schedules checked without a model: the simulator runs every action list and proves that sends meet
// receives, nothing deadlocks, each micro-batch runs forward then backward on every chunk, and measures the
// bubble and the activations alive per rank.
#include <catch2/catch.hpp>

#include "parallel/pipeline/schedule.h"
#include "runtime/error.h"

using namespace weft;

TEST_CASE("GPipe and 1F1B run every micro-batch with the textbook bubble (p-1)/(m+p-1)") {
  for (PipelineSchedule kind : {PipelineSchedule::kGpipe, PipelineSchedule::k1F1B}) {
    for (int pp : {2, 3, 4}) {
      for (int m : {1, 2, 3, 5, 8, 9}) {  // below, at and above pp
        const Schedule schedule = make_schedule(kind, pp, m, 1);
        const Simulation sim = simulate(schedule);
        INFO((kind == PipelineSchedule::kGpipe ? "gpipe" : "1f1b") << " pp " << pp << " m " << m << ": " << sim.problem);
        REQUIRE(sim.ok);
        CHECK(sim.bubble_fraction == Approx(ideal_bubble_fraction(schedule)).margin(1e-12));
        for (int r = 0; r < pp; ++r) {
          // 1F1B keeps at most pp - r micro-batches' activations on rank r; GPipe keeps all m.
          const int bound = kind == PipelineSchedule::k1F1B ? std::min(pp - r, m) : m;
          CHECK(sim.peak_in_flight[static_cast<std::size_t>(r)] == bound);
        }
      }
    }
  }
}

TEST_CASE("interleaved 1F1B with 2 virtual stages shrinks the bubble to (p-1)/(vm+p-1) when m divides by p") {
  for (int pp : {2, 3, 4}) {
    for (int m : {1, 2, 3, 4, 6, 8, 9, 12}) {
      const Schedule schedule = make_schedule(PipelineSchedule::kInterleaved, pp, m, 2);
      const Simulation sim = simulate(schedule);
      INFO("pp " << pp << " m " << m << ": " << sim.problem);
      REQUIRE(sim.ok);
      if (m % pp == 0) {
        CHECK(sim.bubble_fraction == Approx(ideal_bubble_fraction(schedule)).margin(1e-12));
        const Simulation plain = simulate(make_schedule(PipelineSchedule::k1F1B, pp, m, 1));
        CHECK(sim.bubble_fraction < plain.bubble_fraction);
      }
      for (int r = 0; r < pp; ++r)
        CHECK(sim.peak_in_flight[static_cast<std::size_t>(r)] <= std::min(2 * m, (pp - r - 1) * 2 + pp + 1));
    }
  }
}

TEST_CASE("every send in a schedule has a matching receive on its peer") {
  const Schedule schedule = make_schedule(PipelineSchedule::kInterleaved, 3, 6, 2);
  int sends = 0, receives = 0;
  for (int r = 0; r < schedule.stages; ++r)
    for (const Action& a : schedule.programs[static_cast<std::size_t>(r)]) {
      if (a.kind == ActionKind::kSendActivation || a.kind == ActionKind::kSendGradient) {
        ++sends;
        const ActionKind expected =
            a.kind == ActionKind::kSendActivation ? ActionKind::kRecvActivation : ActionKind::kRecvGradient;
        const auto& peer = schedule.programs[static_cast<std::size_t>(a.peer)];
        CHECK(std::count(peer.begin(), peer.end(), Action{expected, a.micro_batch, a.chunk, r}) == 1);
      }
      if (a.kind == ActionKind::kRecvActivation || a.kind == ActionKind::kRecvGradient) ++receives;
    }
  // 6 micro-batches cross 5 chunk boundaries forward and backward.
  CHECK(sends == 6 * 5 * 2);
  CHECK(receives == sends);
}

TEST_CASE("the simulator catches a schedule that deadlocks or computes out of order") {
  Schedule broken = make_schedule(PipelineSchedule::k1F1B, 2, 2, 1);
  // Sends are buffered, so an out-of-order program shows as a computation that runs before its input arrives.
  auto& rank1 = broken.programs[1];
  std::swap(rank1[0], rank1[1]);  // forward of micro-batch 0 before receiving its activation
  CHECK_FALSE(simulate(broken).ok);
  Schedule stuck = make_schedule(PipelineSchedule::kGpipe, 2, 1, 1);
  stuck.programs[0].erase(stuck.programs[0].begin() + 1);  // rank 0 never sends its activation
  const Simulation sim = simulate(stuck);
  CHECK_FALSE(sim.ok);
  CHECK_THAT(sim.problem, Catch::Contains("deadlock") && Catch::Contains("rank 1"));
}

TEST_CASE("interleaving without virtual stages is refused") {
  CHECK_THROWS_AS(make_schedule(PipelineSchedule::kInterleaved, 2, 4, 1), Error);
  CHECK_THROWS_AS(make_schedule(PipelineSchedule::k1F1B, 2, 4, 2), Error);
}
