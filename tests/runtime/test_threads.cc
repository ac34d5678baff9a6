// train.threads: what auto, OMP_NUM_THREADS and an explicit count resolve to, and how ranks per host are read.
#include <catch2/catch.hpp>

#include <map>

#include "runtime/config.h"
#include "runtime/error.h"
#include "runtime/threads.h"

using namespace weft;

namespace {

auto environment(std::map<std::string, std::string> values) {
  return [values](const char* name) -> std::optional<std::string> {
    auto found = values.find(name);
    return found == values.end() ? std::nullopt : std::optional<std::string>(found->second);
  };
}

}  // namespace

TEST_CASE("train.threads auto is 1 per rank when ranks share the host, every usable core for a lone rank") {
  CHECK(choose_threads(0, std::nullopt, 4, 16).threads == 1);
  CHECK(choose_threads(0, std::nullopt, 1, 16).threads == 16);
  CHECK(choose_threads(0, std::nullopt, 1, 16).source == "auto");
}

TEST_CASE("OMP_NUM_THREADS decides under auto, an explicit train.threads over both, capped at the usable cores") {
  CHECK(choose_threads(0, 3, 1, 16).threads == 3);
  CHECK(choose_threads(0, 3, 1, 16).source == "OMP_NUM_THREADS");
  CHECK(choose_threads(2, 3, 4, 16).threads == 2);
  const ThreadChoice capped = choose_threads(8, std::nullopt, 1, 2);
  CHECK(capped.threads == 2);
  CHECK(capped.clamped);
  CHECK(capped.describe().find("lowered to the usable cores") != std::string::npos);
  CHECK(choose_threads(0, 64, 1, 4).threads == 4);
}

TEST_CASE("ranks on the host come from Open MPI, SLURM or Hydra, else 1") {
  CHECK(ranks_on_host(environment({})) == 1);
  CHECK(ranks_on_host(environment({{"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}})) == 4);
  CHECK(ranks_on_host(environment({{"SLURM_STEP_TASKS_PER_NODE", "8(x2)"}})) == 8);
  CHECK(ranks_on_host(environment({{"MPI_LOCALNRANKS", "3"}})) == 3);
  CHECK(ranks_on_host(environment({{"OMPI_COMM_WORLD_LOCAL_SIZE", "garbage"}})) == 1);
}

TEST_CASE("this process may run on at least one core") { CHECK(usable_cores() >= 1); }

TEST_CASE("train.threads reads auto or a positive count, from the file or --set") {
  CHECK(parse_config_text("train: {threads: auto}", "run.yaml", {}, 1).train.threads == 0);
  CHECK(parse_config_text("train: {threads: 3}", "run.yaml", {}, 1).train.threads == 3);
  CHECK(parse_config_text("train: {steps: 2}", "run.yaml", {parse_override("train.threads=2")}, 1).train.threads == 2);
  CHECK_THROWS_AS(parse_config_text("train: {threads: 0}", "run.yaml", {}, 1), Error);
}
