// The weft subcommands, each a function that returns the process exit code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/config.h"

namespace weft {

struct TrainOptions {
  std::string config_path;
  std::vector<std::string> overrides;  // "key=value"
  std::string metrics_path;
  std::string trace_path;
};

struct LaunchOptions {
  int ranks = 1;
  int max_restarts = 0;  // restart a failed job (from the newest complete checkpoint) up to this many times
  std::string mpirun_args;  // extra mpirun flags, whitespace-separated
  TrainOptions train;
};

struct CollectivesBenchOptions {
  int ranks = 2;
  std::string op = "all";
  std::size_t min_bytes = std::size_t{1} << 10;
  std::size_t max_bytes = std::size_t{64} << 20;
  int iters = 20;
  int warmup = 5;
  bool raw_mpi = true;  // false: weft's collectives alone (e.g. to count the bytes they put on a link)
  std::string mpirun_args;
  // mpi: the MPI world (beside raw MPI); socket: weft's TCP socket backend (what torch.distributed over weft uses
  // under torchrun), its mesh set up through the MPI job.
  std::string backend = "mpi";
};

struct PlanOptions {
  std::string config_path;
  int ranks = 1;
  std::vector<std::string> overrides;
  bool json = false;
  bool auto_rank = false;  // --auto: rank every feasible layout by predicted step time
};

struct GenerateOptions {
  std::string checkpoint;  // a checkpoint directory, or a checkpoint.dir root (its newest complete checkpoint)
  std::string prompt;
  int tokens = 0;
  double temperature = 1.0;  // 0: greedy
  int top_k = 0;             // 0: every token
  std::uint64_t seed = 0;
};

int run_train(const TrainOptions& options);
int run_generate(const GenerateOptions& options);
int run_plan(const PlanOptions& options);
int run_launch(const LaunchOptions& options);
int run_bench_collectives(const CollectivesBenchOptions& options);
struct DataPrepareOptions {
  std::string input, output;
  std::string tokenizer;        // bytes | sentencepiece; empty: bytes, or sentencepiece with --tokenizer-model
  int vocab = 0;                // sentencepiece: pieces to train
  std::string tokenizer_model;  // an existing SentencePiece model instead of training one
};

int run_data_prepare(const DataPrepareOptions& options);
int run_ckpt_inspect(const std::string& dir);
int run_ckpt_export(const std::string& dir, const std::string& safetensors_path);

// Runs `weft WEFT_ARGS...` as `ranks` processes under mpirun on this host, watched to the end (mpirun_job.h), and
// returns the job's exit code.
int run_under_mpirun(int ranks, const std::string& mpirun_args, const std::vector<std::string>& weft_args);
// The mpirun command line for that (exposed for tests); Open MPI's shared memory and session files go to the
// launch directory's places for them (LaunchDirectory).
class LaunchDirectory;
std::vector<std::string> mpirun_command(int ranks, const std::string& mpirun_args,
                                       const std::vector<std::string>& weft_args, const std::string& weft_path,
                                       const LaunchDirectory& directory);
}  // namespace weft
