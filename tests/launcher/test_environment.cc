// Rank detection from the variables mpirun, srun and PMI set.
#include <catch2/catch.hpp>

#include <map>

#include "launcher/environment.h"
#include "runtime/error.h"

using namespace weft;

namespace {

DetectedRank detect(const std::map<std::string, std::string>& env) {
  return detect_rank([&env](const char* name) -> std::optional<std::string> {
    auto found = env.find(name);
    return found == env.end() ? std::nullopt : std::optional<std::string>(found->second);
  });
}

}  // namespace

TEST_CASE("no launcher variables make a 1-rank job") {
  const auto found = detect({});
  CHECK(found.launcher == "none");
  CHECK(found.info.world_size == 1);
  CHECK(found.info.rank == 0);
}

TEST_CASE("mpirun, srun and PMI variables give rank, world size and local rank") {
  auto mpi = detect({{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}});
  CHECK(mpi.launcher == "mpirun");
  CHECK((mpi.info.rank == 3 && mpi.info.world_size == 4 && mpi.info.local_rank == 1));
  auto slurm = detect({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}});
  CHECK(slurm.launcher == "srun");
  CHECK((slurm.info.rank == 5 && slurm.info.world_size == 8 && slurm.info.local_rank == 1));
  auto pmi = detect({{"PMI_RANK", "1"}, {"PMI_SIZE", "2"}});
  CHECK(pmi.launcher == "pmi");
  CHECK((pmi.info.rank == 1 && pmi.info.world_size == 2 && pmi.info.local_rank == 0));
  // Open MPI under srun sets both; its own variables win and agree.
  auto both = detect({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}});
  CHECK(both.launcher == "mpirun");
}

TEST_CASE("malformed launcher variables are usage errors naming the variable") {
  try {
    detect({{"SLURM_PROCID", "two"}, {"SLURM_NTASKS", "4"}});
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kUsage);
    CHECK_THAT(e.what(), Catch::Contains("SLURM_PROCID=two"));
  }
  CHECK_THROWS_AS(detect({{"PMI_RANK", "4"}, {"PMI_SIZE", "4"}}), Error);
}
