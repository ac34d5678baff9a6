// `weft train`: one rank of a training job. Joins the job's communicators (MPI when launched with several
// ranks), builds the process groups, trains, and turns any failure after start-up into an end of the whole job.
#include <memory>
#include <optional>

#include "checkpoint/dir_lock.h"
#include "collectives/mpi/mpi_runtime.h"
#include "collectives/registry.h"
#include "collectives/threads_backend.h"
#include "kernels/cpu/onednn_matmul.h"
#include "launcher/commands.h"
#include "launcher/environment.h"
#include "launcher/memory_check.h"
#include "launcher/peers.h"
#include "launcher/signals.h"
#include "parallel/capabilities.h"
#include "parallel/engine.h"
#include "runtime/file_io.h"
#include "runtime/log.h"
#include "runtime/process_exit.h"
#include "runtime/test_pause.h"
#include "runtime/threads.h"

namespace weft {
namespace {

// A failure every rank has agreed on (a bad output path, a locked checkpoint directory): the ranks end together
// with its code, without aborting the job.
struct AgreedFailure {
  int code;
};

// The job's communicators on both planes: the control plane (MPI across processes, or a 1-rank in-process group for
// a job of one), a store on it for bootstrap, and the data plane when it differs (NCCL on CUDA memory).
struct World {
  std::unique_ptr<Communicator> host;
  std::shared_ptr<Store> store;
  std::unique_ptr<Communicator> device;  // null: the host world moves the data too
  Communicator& data() { return device ? *device : *host; }
};

// What a rank opens before training and keeps to the end: the metrics file (rank 0) and the checkpoint directory's
// lock (rank 0, held while the job runs).
struct RunResources {
  std::optional<MetricsFile> metrics;
  std::optional<checkpoint::DirectoryLock> checkpoint_lock;
  std::string compute_threads;  // train.threads as chosen, for the start-up line
};

std::string trace_path_of(const TrainOptions& options, const RankInfo& rank) {
  return rank.world_size > 1 ? options.trace_path + ".rank" + std::to_string(rank.rank) : options.trace_path;
}

// The checks that only one rank can make (its output files, this host's memory, rank 0's directory lock), made
// before anything is allocated; then the ranks agree, so a problem on one stops all alike with exit 2 and its
// message, instead of a lone rank leaving the others to time out.
void prepare_run(const Config& config, const TrainOptions& options, const RankInfo& rank, const PeerDirectory* peers,
                 Communicator& world, RunResources& resources) {
  float failed = 0.0f;
  try {
    check_host_memory(config, rank.world_size, peers != nullptr ? peers->ranks_on_this_host() : 1,
                      host_available_memory());
    if (!options.trace_path.empty()) check_writable(trace_path_of(options, rank), "--trace " + trace_path_of(options, rank));
    if (rank.rank == 0 && !options.metrics_path.empty()) resources.metrics.emplace(options.metrics_path);
    if (rank.rank == 0 && !config.checkpoint.dir.empty()) resources.checkpoint_lock.emplace(config.checkpoint.dir);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kUsage) throw;
    spdlog::error("{}", e.what());
    failed = 1.0f;
  }
  world.all_reduce(&failed, 1, DType::kF32, ReduceOp::kMax)->wait();
  if (failed > 0.0f) throw AgreedFailure{static_cast<int>(ErrorKind::kUsage)};
}

// The training loop: resume, steps, checkpoints, the stop signal, metrics and trace.
void run_steps(const Config& config, const TrainOptions& options, const RankInfo& rank, Trainer& trainer,
               RunResources& resources, Tracer* tracer) {
  const bool leader = rank.rank == 0;
  // Resume from the newest complete checkpoint (checkpoint.resume: auto), a named one, or none.
  const int resumed = trainer.restore_checkpoint();
  std::vector<StepRecord> records;
  for (int step = resumed + 1; step <= config.train.steps; ++step) {
    StepRecord record = trainer.train_step(step);
    records.push_back(record);
    if (resources.metrics) resources.metrics->write_step(record);
    // Validation every eval_every steps and at the last: every rank takes part (a collective).
    const int every = config.train.eval_every;
    const bool evaluated = every > 0 && (step % every == 0 || step == config.train.steps);
    const double val_loss = evaluated ? trainer.evaluate() : 0.0;
    if (evaluated && resources.metrics) resources.metrics->write_evaluation(step, val_loss);
    if (leader && (evaluated || step % config.train.log_every == 0 || step == resumed + 1 ||
                   step == config.train.steps))
      spdlog::info("{}{}", progress_line(record, config.train.steps),
                   evaluated ? fmt::format(" | val loss {:.4f}", val_loss) : std::string());
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
  if (resources.metrics) resources.metrics->write_summary(summary);
  if (leader) spdlog::info("{}", summary_line(summary));
  if (tracer) tracer->write(trace_path_of(options, rank));
}

// The one-line message a failure ends the job with: "weft: ..." and, for a dead peer, the ranks this host saw die.
std::string failure_message(const std::exception& failure, const PeerDirectory* peers, int rank) {
  const auto* error = dynamic_cast<const Error*>(&failure);
  std::string message = dynamic_cast<const std::bad_alloc*>(&failure) != nullptr
                            ? "out of memory (an allocation failed)"
                            : failure.what();
  if (message.rfind("weft", 0) != 0) message = fmt::format("weft: rank {}: {}", rank, message);
  if (peers != nullptr && error != nullptr && error->kind() == ErrorKind::kPeer) {
    const std::string dead = peers->describe_dead_peers();
    if (!dead.empty()) message += fmt::format(" ({})", dead);
  }
  return message;
}

// Ends every rank of the job after `failure` on this one: a rank that returned alone would leave its peers waiting
// in their next collective.
[[noreturn]] void end_job(const std::exception& failure, const PeerDirectory* peers, int rank) {
  const auto* error = dynamic_cast<const Error*>(&failure);
  abort_job(error != nullptr ? error->exit_code() : static_cast<int>(ErrorKind::kInternal),
            failure_message(failure, peers, rank));
}

// `peers` is null in a job of one (no MPI: errors go to main as they are); otherwise a failure ends the job right
// here, while the trainer's buffers, which collectives still in flight may use, are alive.
void train(const Config& config, const TrainOptions& options, const RankInfo& rank, Device& device, World& world,
           RunResources& resources, const PeerDirectory* peers) {
  ProcessGroups groups = make_process_groups(world.data(), config.parallel, world.device ? world.host.get() : nullptr);
  std::optional<Tracer> tracer;
  if (!options.trace_path.empty()) tracer.emplace(rank.rank);
  Trainer trainer(config, groups, device, tracer ? &*tracer : nullptr);
  if (rank.rank == 0)
    spdlog::info("training {} ({} parameters, {} layers, d_model {}) on {} rank(s), {} (dp {} x tp {} x pp {}), "
                 "{} steps of {} tokens",
                 config.source_path, trainer.model().params().total(), config.model.layers, config.model.d_model,
                 rank.world_size, device.name(), config.parallel.dp, config.parallel.tp, config.parallel.pp,
                 config.train.steps, trainer.tokens_per_step());
  if (rank.rank == 0 && device.type() == DeviceType::kCpu)
    spdlog::info("{}; {}", kernels::cpu::describe_cpu_gemm(), resources.compute_threads);
  try {
    run_steps(config, options, rank, trainer, resources, tracer ? &*tracer : nullptr);
  } catch (const std::exception& failure) {
    if (peers == nullptr) throw;
    end_job(failure, peers, rank.rank);
  }
}

// One rank of a job of one: no MPI, and errors reach main as they are.
int train_alone(const Config& config, const TrainOptions& options, const RankInfo& rank, Device& device,
                const CommOptions& comm_options, const std::string& compute_threads) {
  World world;
  world.host = std::move(make_thread_group(1, comm_options).front());
  try {
    RunResources resources;
    resources.compute_threads = compute_threads;
    prepare_run(config, options, rank, nullptr, *world.host, resources);
    train(config, options, rank, device, world, resources, nullptr);
  } catch (const AgreedFailure& failure) {
    return failure.code;
  }
  return 0;
}

}  // namespace

int run_train(const TrainOptions& options) {
  const DetectedRank detected = detect_rank();
  const RankInfo& rank = detected.info;
  init_logging(rank.rank, rank.world_size);
  install_stop_handlers();
  report_rank_start(rank.rank);  // after the stop handlers: weft launch forwards SIGTERM to reported ranks only

  // Every rank validates the same config before any communicator exists, so a bad one stops them all alike.
  std::vector<ConfigOverride> overrides;
  for (const auto& text : options.overrides) overrides.push_back(parse_override(text));
  const Config config = load_job_config(options.config_path, overrides, rank.world_size);
  // Before any kernel runs: the CPU kernels and oneDNN apply the setting to whichever thread calls them.
  const ThreadChoice threads = choose_threads(config.train.threads, omp_num_threads_from_environment(),
                                              ranks_on_host(), usable_cores());
  set_compute_threads(threads.threads);

  CommOptions comm_options;
  comm_options.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(config.comm.timeout_s * 1000.0));
  std::unique_ptr<Device> device = make_device_for(config, rank.local_rank);
  if (rank.world_size == 1) return train_alone(config, options, rank, *device, comm_options, threads.describe());

  // From MPI_Init on, every failure ends the whole job (abort_job) and nothing may escape to a destructor that
  // would call MPI_Finalize with peers still waiting; every step, start-up and shutdown included, has a deadline.
  MpiRuntime mpi(comm_options.timeout);
  pause_point("startup");
  try {
    World world;
    world.host = mpi.world(comm_options);
    world.store = make_mpi_store(*world.host, comm_options.timeout);
    world.device = make_device_world(default_backend(device->type()), *world.host, *world.store, device.get(),
                                     comm_options);
    PeerDirectory peers(*world.host);
    RunResources resources;
    resources.compute_threads = threads.describe();
    prepare_run(config, options, rank, &peers, *world.host, resources);
    train(config, options, rank, *device, world, resources, &peers);
    pause_point("shutdown");
    // The work is done and saved: say so before MPI_Finalize, which needs mpirun and every peer and may be cut
    // short by them (a deadline there still turns this into an abort with exit code 3).
    report_rank_exit(0, ExitHow::kReturned);
  } catch (const AgreedFailure& failure) {
    return failure.code;
  } catch (const std::exception& failure) {
    end_job(failure, nullptr, rank.rank);
  } catch (...) {
    abort_job(static_cast<int>(ErrorKind::kInternal), fmt::format("weft: rank {}: unknown failure", rank.rank));
  }
  return 0;
}

}  // namespace weft
