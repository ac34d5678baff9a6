// Over a grid of layouts (pp 1-4, virtual stages 1-3, tp 1-4, ZeRO 0-3, fp32 and bf16, micro-batch counts below,
// equal to and above pp, odd global batches): `weft plan` accepts exactly the layouts the trainer runs, the trainer
// runs a step of every one it accepts, and no `weft plan` ever ends by a signal.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdio>
#include <fmt/format.h>

#include "collectives/threads_backend.h"
#include "parallel/capabilities.h"
#include "parallel/engine.h"
#include "parallel/planner.h"

using namespace weft;

namespace {

struct Layout {
  int pp, virtual_stages, tp, zero, global_batch;
  const char* precision;
  std::vector<ConfigOverride> overrides() const {
    return {{"model.layers", "12"},
            {"model.seq_len", "8"},
            {"train.micro_batch", "1"},
            {"train.global_batch", std::to_string(global_batch)},
            {"parallel.pp", std::to_string(pp)},
            {"parallel.tp", std::to_string(tp)},
            {"parallel.zero", std::to_string(zero)},
            {"parallel.virtual_stages", std::to_string(virtual_stages)},
            {"parallel.schedule", virtual_stages > 1 ? "interleaved" : "1f1b"},
            {"precision.compute", precision}};
  }
  std::string describe() const {
    return fmt::format("pp {} v {} tp {} zero {} global_batch {} {}", pp, virtual_stages, tp, zero, global_batch,
                       precision);
  }
};

std::vector<Layout> grid() {
  std::vector<Layout> layouts;
  for (int pp = 1; pp <= 4; ++pp)
    for (int v = 1; v <= 3; ++v)
      for (int tp = 1; tp <= 4; ++tp)
        for (int zero = 0; zero <= 3; ++zero)
          for (const char* precision : {"fp32", "bf16"})
            for (int batch : {std::max(1, pp - 1), pp, 2 * pp + 1})  // micro-batches (dp = 1): below, at, above pp (odd)
              layouts.push_back({pp, v, tp, zero, batch, precision});
  return layouts;
}

const std::string kConfig = std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml";

// What weft plan does: the loader, the layout check, the plan. A refusal must be a usage error.
bool plan_accepts(const Layout& layout) {
  try {
    const Config config = load_job_config(kConfig, layout.overrides(), layout.pp * layout.tp);
    make_plan(config, config.world_size);
    return true;
  } catch (const Error& e) {
    INFO(layout.describe() << ": " << e.what());
    CHECK(e.kind() == ErrorKind::kUsage);
    return false;
  }
}

// What weft train does after loading: build every rank's trainer and run a step (the trainer makes its own check).
bool train_accepts(const Layout& layout) {
  const Config config = load_config(kConfig, layout.overrides(), layout.pp * layout.tp);
  auto world = make_thread_group(layout.pp * layout.tp);
  std::vector<int> refused(world.size(), 0);
  run_on_threads(world, [&](Communicator& comm) {
    auto device = make_cpu_device();
    try {
      // A refusal comes before any communicator is split, so every rank refuses alike and none waits.
      check_layout(config);
    } catch (const Error& e) {
      refused[static_cast<std::size_t>(comm.rank())] = e.kind() == ErrorKind::kUsage ? 1 : 2;
      return;
    }
    ProcessGroups groups = make_process_groups(comm, config.parallel);
    Trainer trainer(config, groups, *device);
    trainer.train_step(1);
  });
  CHECK(std::all_of(refused.begin(), refused.end(), [&](int r) { return r == refused[0]; }));
  CHECK(refused[0] != 2);
  return refused[0] == 0;
}

}  // namespace

TEST_CASE("weft plan accepts exactly the layouts the trainer runs, and the trainer runs a step of each") {
  int accepted = 0, refused = 0;
  for (const Layout& layout : grid()) {
    INFO(layout.describe());
    const bool plan = plan_accepts(layout);
    CHECK(plan == train_accepts(layout));
    (plan ? accepted : refused)++;
  }
  // The grid must exercise both sides (and pipelines with several micro-batch counts among the accepted).
  CHECK(accepted > 150);
  CHECK(refused > 150);
}

TEST_CASE("weft plan never ends by a signal on the grid of layouts: it prints a plan or refuses with exit 2") {
  // Every 7th layout (7 is prime to every dimension of the grid, so all values of each appear): the in-process test
  // above covers every layout; this one covers the command around it (each start costs ~0.2 s).
  const std::vector<Layout> layouts = grid();
  int signals = 0, other = 0, planned = 0;
  for (std::size_t i = 0; i < layouts.size(); i += 7) {
    const Layout& layout = layouts[i];
    std::string command = fmt::format("{} plan {} -n {}", WEFT_BINARY, kConfig, layout.pp * layout.tp);
    for (const ConfigOverride& o : layout.overrides()) command += fmt::format(" --set {}={}", o.key, o.value);
    const int status = std::system((command + " > /dev/null 2>&1").c_str());
    INFO(command);
    if (WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) > 128)) ++signals;
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 2) ++other;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ++planned;
    CHECK_FALSE(WIFSIGNALED(status));
    CHECK(WIFEXITED(status));
    CHECK(plan_accepts(layout) == (WIFEXITED(status) && WEXITSTATUS(status) == 0));  // the command agrees
  }
  CHECK(signals == 0);
  CHECK(other == 0);
  CHECK(planned > 20);
}
