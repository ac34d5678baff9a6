// Layer-to-stage assignment balanced by cost, against brute force over every possible cut.
#include <catch2/catch.hpp>

#include <functional>

#include "parallel/pipeline/stages.h"
#include "runtime/error.h"

using namespace weft;

namespace {

double most_expensive(const std::vector<int>& chunk_of_layer, int chunks, const SegmentCosts& c) {
  std::vector<double> load(static_cast<std::size_t>(chunks), 0.0);
  for (int chunk : chunk_of_layer) load[static_cast<std::size_t>(chunk)] += c.block;
  load.front() += c.embedding;
  load.back() += c.head;
  return *std::max_element(load.begin(), load.end());
}

// The optimum by trying every way to cut `layers` into `chunks` non-empty runs.
double brute_force(int layers, int chunks, const SegmentCosts& c) {
  double best = 1e300;
  std::vector<int> assignment(static_cast<std::size_t>(layers));
  std::function<void(int, int)> place = [&](int layer, int chunk) {
    if (layer == layers) {
      if (chunk == chunks - 1) best = std::min(best, most_expensive(assignment, chunks, c));
      return;
    }
    assignment[static_cast<std::size_t>(layer)] = chunk;
    if (layer > 0 || chunk == 0) place(layer + 1, chunk);
    if (layer > 0 && chunk + 1 < chunks) {
      assignment[static_cast<std::size_t>(layer)] = chunk + 1;
      place(layer + 1, chunk + 1);
    }
  };
  place(0, 0);
  return best;
}

}  // namespace

TEST_CASE("layers are split into contiguous, non-empty chunks whose largest cost is the optimum") {
  for (const SegmentCosts costs : {SegmentCosts{.embedding = 0.0, .block = 1.0, .head = 0.0},
                                  SegmentCosts{.embedding = 0.3, .block = 1.0, .head = 2.5},
                                  SegmentCosts{.embedding = 1.7, .block = 1.0, .head = 0.2}}) {
    for (int layers = 1; layers <= 9; ++layers) {
      for (int chunks = 1; chunks <= layers; ++chunks) {
        const auto assignment = assign_layers(layers, chunks, costs);
        INFO("layers " << layers << " chunks " << chunks << " head " << costs.head);
        REQUIRE(static_cast<int>(assignment.size()) == layers);
        CHECK(assignment.front() == 0);
        CHECK(assignment.back() == chunks - 1);
        for (std::size_t l = 1; l < assignment.size(); ++l) CHECK(assignment[l] - assignment[l - 1] <= 1);
        for (std::size_t l = 1; l < assignment.size(); ++l) CHECK(assignment[l] >= assignment[l - 1]);
        CHECK(most_expensive(assignment, chunks, costs) == Approx(brute_force(layers, chunks, costs)));
      }
    }
  }
}

TEST_CASE("a heavy output head moves layers off the last stage, too few layers is a usage error") {
  const SegmentCosts heavy_head{.embedding = 0.0, .block = 1.0, .head = 2.0};
  CHECK(assign_layers(6, 2, heavy_head) == std::vector<int>{0, 0, 0, 0, 1, 1});
  CHECK_THROWS_AS(assign_layers(3, 4, heavy_head), Error);
}
