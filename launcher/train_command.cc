// `weft train`: one rank of a training job. Joins the job's communicators (MPI when launched with several
// ranks), builds the process groups, trains, and turns any failure after start-up into an end of the whole job.
#include <memory>
#include <optional>

#include "collectives/mpi/mpi_runtime.h"
#include "collectives/registry.h"
#include "collectives/threads_backend.h"
#include "kernels/cpu/onednn_matmul.h"
#include "launcher/commands.h"
#include "launcher/environment.h"
#include "launcher/peers.h"
#include "launcher/signals.h"
#include "parallel/capabilities.h"
#include "parallel/engine.h"
#include "runtime/log.h"
#include "runtime/threads.h"

namespace weft {
namespace {

// The job's world on both planes: the control plane (MPI across processes, or a 1-rank in-process group for a job
// of one), a store on it for bootstrap, and the data plane when it differs (NCCL on CUDA memory).
struct World {
  std::optional<MpiRuntime> mpi;
  std::unique_ptr<Communicator> host;
  std::shared_ptr<Store> store;
  std::unique_ptr<Communicator> device;  // null: the host world moves the data too

  World(int world_size, Device& device_, const CommOptions& options) {
    if (world_size == 1) {
      host = std::move(make_thread_group(1, options).front());
      return;
    }
    mpi.emplace();
    host = mpi->world(options);
    store = make_mpi_store(*host, options.timeout);
    device = make_device_world(default_backend(device_.type()), *host, *store, &device_, options);
  }
  Communicator& data() { return device ? *device : *host; }
};

void train(const Config& config, const TrainOptions& options, const RankInfo& rank, Device& device, World& world,
           const ThreadChoice& threads) {
  ProcessGroups groups = make_process_groups(world.data(), config.parallel, world.device ? world.host.get() : nullptr);
  const bool leader = rank.rank == 0;
  std::optional<MetricsFile> metrics;
  if (leader && !options.metrics_path.empty()) metrics.emplace(options.metrics_path);
  std::optional<Tracer> tracer;
  if (!options.trace_path.empty()) tracer.emplace(rank.rank);

  Trainer trainer(config, groups, device, tracer ? &*tracer : nullptr);
  if (leader)
    spdlog::info("training {} ({} parameters, {} layers, d_model {}) on {} rank(s), {} (dp {} x tp {} x pp {}), "
                 "{} steps of {} tokens",
                 config.source_path, trainer.model().params().total(), config.model.layers, config.model.d_model,
                 rank.world_size, device.name(), config.parallel.dp, config.parallel.tp, config.parallel.pp,
                 config.train.steps, trainer.tokens_per_step());
  if (leader && device.type() == DeviceType::kCpu)
    spdlog::info("{}; {}", kernels::cpu::describe_cpu_gemm(), threads.describe());

  // Resume from the newest complete checkpoint (checkpoint.resume: auto), a named one, or none.
  const int resumed = trainer.restore_checkpoint();
  std::vector<StepRecord> records;
  for (int step = resumed + 1; step <= config.train.steps; ++step) {
    StepRecord record = trainer.train_step(step);
    records.push_back(record);
    if (metrics) metrics->write_step(record);
    if (leader && (step % config.train.log_every == 0 || step == resumed + 1 || step == config.train.steps))
      spdlog::info("{}", progress_line(record, config.train.steps));
    const bool saved = config.checkpoint.every > 0 && step % config.checkpoint.every == 0;
    if (saved) trainer.save_checkpoint(step);
    // A signal reaches the ranks at slightly different times: they agree, then stop after the same step.
    if (step < config.train.steps && trainer.any_rank(stop_requested())) {
      if (!config.checkpoint.dir.empty() && !saved) trainer.save_checkpoint(step);
      if (leader)
        spdlog::warn("stopped by a signal after step {}{}", step,
                     config.checkpoint.dir.empty() ? " (no checkpoint.dir: nothing was saved)"
                                                   : "; the checkpoint to resume from is saved");
      break;
    }
  }
  const RunSummary summary = summarize(records, trainer.tokens_per_step());
  if (metrics) metrics->write_summary(summary);
  if (leader) spdlog::info("{}", summary_line(summary));
  if (tracer)
    tracer->write(rank.world_size > 1 ? options.trace_path + ".rank" + std::to_string(rank.rank) : options.trace_path);
}

}  // namespace

int run_train(const TrainOptions& options) {
  const DetectedRank detected = detect_rank();
  init_logging(detected.info.rank, detected.info.world_size);
  install_stop_handlers();

  // Every rank validates the same config before any communicator exists, so a bad one stops them all alike.
  std::vector<ConfigOverride> overrides;
  for (const auto& text : options.overrides) overrides.push_back(parse_override(text));
  const Config config = load_job_config(options.config_path, overrides, detected.info.world_size);

  // Before any kernel runs: the CPU kernels and oneDNN apply the setting to whichever thread calls them.
  const ThreadChoice threads = choose_threads(config.train.threads, omp_num_threads_from_environment(),
                                              ranks_on_host(), usable_cores());
  set_compute_threads(threads.threads);

  CommOptions comm_options;
  comm_options.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(config.comm.timeout_s * 1000.0));
  std::unique_ptr<Device> device = make_device_for(config, detected.info.local_rank);
  World world(detected.info.world_size, *device, comm_options);
  std::optional<PeerDirectory> peers;
  if (world.mpi) peers.emplace(*world.host);
  try {
    train(config, options, detected.info, *device, world, threads);
  } catch (const Error& e) {
    if (!world.mpi) throw;
    // A rank that failed alone would leave its peers waiting in their next collective: end the job.
    std::string message = e.what();
    if (e.kind() == ErrorKind::kPeer) {
      const std::string dead = peers->describe_dead_peers();
      if (!dead.empty()) message += fmt::format(" ({})", dead);
    }
    abort_job(e.exit_code(), message);
  } catch (const std::exception& e) {
    if (world.mpi) abort_job(static_cast<int>(ErrorKind::kInternal), fmt::format("weft: rank {}: {}", detected.info.rank, e.what()));
    throw;
  }
  return 0;
}

}  // namespace weft
