// weft: the command-line entry point. Parses the subcommand and maps every failure to the contract's exit codes.
#include <cstdio>
#include <exception>
#include <functional>
#include <new>
#include <string_view>

#include <CLI/CLI.hpp>

#include "launcher/commands.h"
#include "runtime/error.h"
#include "runtime/process_exit.h"

namespace {

// Runs a command and maps every failure to the contract's exit codes, with one line on stderr.
int run_command(const std::function<int()>& command) {
  using namespace weft;
  try {
    return command();
  } catch (const Error& e) {
    // Messages that already name weft keep their own prefix.
    const std::string_view message = e.what();
    std::fprintf(stderr, "%s%s\n", message.rfind("weft", 0) == 0 ? "" : "weft: ", e.what());
    return e.exit_code();
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "weft: out of memory (an allocation failed); the model, batch or data may not fit in this "
                         "host's memory: check `weft plan` and lower model size, micro_batch or the ranks per host\n");
    return static_cast<int>(ErrorKind::kInternal);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "weft: unexpected error: %s\n", e.what());
    return static_cast<int>(ErrorKind::kInternal);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace weft;
  CLI::App app{"weft: distributed deep-learning training"};
  app.set_version_flag("--version", WEFT_VERSION_LINE);
  app.require_subcommand(1);

  TrainOptions train;
  CLI::App* train_cmd = app.add_subcommand("train", "Run as one rank of a training job");
  train_cmd->add_option("config", train.config_path, "YAML config")->required();
  train_cmd->add_option("--set", train.overrides, "Override a config key: --set parallel.zero=3")->take_all();
  train_cmd->add_option("--metrics", train.metrics_path, "Write per-step metrics as JSON Lines (rank 0)");
  train_cmd->add_option("--trace", train.trace_path, "Write a Chrome trace (with several ranks, FILE gets .rankN)");

  LaunchOptions launch;
  CLI::App* launch_cmd = app.add_subcommand("launch", "Start N ranks of `weft train` on this host through mpirun");
  launch_cmd->add_option("-n,--ranks", launch.ranks, "Number of ranks")->required();
  launch_cmd->add_option("--mpirun-args", launch.mpirun_args, "Extra mpirun flags, e.g. \"--mca btl self,tcp\"");
  launch_cmd->add_option("--max-restarts", launch.max_restarts,
                         "Restart a failed job up to K times, resuming from the newest complete checkpoint");
  launch_cmd->add_option("config", launch.train.config_path, "YAML config")->required();
  launch_cmd->add_option("--set", launch.train.overrides, "Override a config key")->take_all();
  launch_cmd->add_option("--metrics", launch.train.metrics_path, "Per-step metrics file (rank 0)");
  launch_cmd->add_option("--trace", launch.train.trace_path, "Chrome trace per rank (FILE gets .rankN)");

  PlanOptions plan;
  CLI::App* plan_cmd = app.add_subcommand("plan", "Print the mesh, memory per rank and traffic per step of a layout");
  plan_cmd->add_option("config", plan.config_path, "YAML config")->required();
  plan_cmd->add_option("-n,--ranks", plan.ranks, "World size to plan for")->required();
  plan_cmd->add_option("--set", plan.overrides, "Override a config key")->take_all();
  plan_cmd->add_flag("--json", plan.json, "Print JSON instead of text");
  plan_cmd->add_flag("--auto", plan.auto_rank, "Rank every feasible layout by predicted step time (needs cluster:)");

  CollectivesBenchOptions bench;
  CLI::App* bench_cmd = app.add_subcommand("bench", "Benchmarks");
  bench_cmd->require_subcommand(1);
  CLI::App* collectives_cmd = bench_cmd->add_subcommand("collectives", "Collectives table (nccl-tests style) beside raw MPI");
  collectives_cmd->add_option("-n,--ranks", bench.ranks, "Number of local ranks (started through mpirun)");
  collectives_cmd->add_option("--op", bench.op, "all_reduce, reduce_scatter, all_gather, broadcast or all");
  collectives_cmd->add_option("--min-bytes", bench.min_bytes, "Smallest buffer, e.g. 1K")->transform(CLI::AsSizeValue(false));
  collectives_cmd->add_option("--max-bytes", bench.max_bytes, "Largest buffer, e.g. 64M")->transform(CLI::AsSizeValue(false));
  collectives_cmd->add_option("--iters", bench.iters, "Timed iterations per size (default 20)");
  collectives_cmd->add_option("--warmup", bench.warmup, "Untimed iterations per size (default 5)");
  collectives_cmd->add_option("--mpirun-args", bench.mpirun_args, "Extra mpirun flags");
  collectives_cmd->add_flag("!--no-raw-mpi", bench.raw_mpi, "Skip the raw MPI baseline");
  collectives_cmd->add_option("--backend", bench.backend, "mpi (default; beside raw MPI) or socket (weft's TCP backend)")
      ->check(CLI::IsMember({"mpi", "socket"}));

  std::string ckpt_dir, safetensors_path;
  CLI::App* ckpt_cmd = app.add_subcommand("ckpt", "Checkpoints");
  ckpt_cmd->require_subcommand(1);
  CLI::App* inspect_cmd = ckpt_cmd->add_subcommand("inspect", "Describe a checkpoint (and verify its checksums)");
  inspect_cmd->add_option("dir", ckpt_dir, "Checkpoint directory (DIR/step_NNNNNNNN)")->required();
  CLI::App* export_cmd = ckpt_cmd->add_subcommand("export", "Export the whole model for Hugging Face: safetensors, config.json (and tokenizer.model)");
  export_cmd->add_option("dir", ckpt_dir, "Checkpoint directory")->required();
  export_cmd->add_option("--safetensors", safetensors_path, "Output .safetensors file")->required();

  DataPrepareOptions prepare;
  CLI::App* data_cmd = app.add_subcommand("data", "Prepare training data");
  data_cmd->require_subcommand(1);
  CLI::App* prepare_cmd = data_cmd->add_subcommand("prepare", "Text file -> token file, recording its tokenizer");
  prepare_cmd->add_option("--input", prepare.input, "UTF-8 text file")->required();
  prepare_cmd->add_option("--output", prepare.output, "Token file to write")->required();
  prepare_cmd->add_option("--tokenizer", prepare.tokenizer, "bytes (default) or sentencepiece (trains a BPE model)")
      ->check(CLI::IsMember({"bytes", "sentencepiece"}));
  prepare_cmd->add_option("--vocab", prepare.vocab, "--tokenizer sentencepiece: the vocabulary to train");
  prepare_cmd->add_option("--tokenizer-model", prepare.tokenizer_model, "An existing SentencePiece tokenizer.model");

  GenerateOptions generate;
  CLI::App* generate_cmd = app.add_subcommand("generate", "Sample a continuation of a prompt from a checkpoint");
  generate_cmd->add_option("checkpoint", generate.checkpoint, "Checkpoint directory (or checkpoint.dir: the newest)")
      ->required();
  generate_cmd->add_option("--prompt", generate.prompt, "Text to continue")->required();
  generate_cmd->add_option("--tokens", generate.tokens, "Tokens to generate")->required();
  generate_cmd->add_option("--temperature", generate.temperature, "Softmax temperature; 0 is greedy (default 1)");
  generate_cmd->add_option("--top-k", generate.top_k, "Sample among the K most likely tokens (default 0: all)");
  generate_cmd->add_option("--seed", generate.seed, "Random seed: the same seed gives the same text (default 0)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11 says "A subcommand is required" for a misspelt command; name the word the user typed instead.
    if (argc > 1 && argv[1][0] != '-' && app.get_subcommands().empty()) {
      std::fprintf(stderr, "weft: unknown command '%s'; commands are: train, launch, plan, generate, bench collectives, data prepare, ckpt inspect, ckpt export\nRun 'weft --help' for usage.\n",
                   argv[1]);
    } else {
      std::fprintf(stderr, "weft: %s\nRun 'weft --help' for usage.\n", e.what());
    }
    return static_cast<int>(ErrorKind::kUsage);
  }

  const int code = run_command([&] {
    if (train_cmd->parsed()) return run_train(train);
    if (generate_cmd->parsed()) return run_generate(generate);
    if (launch_cmd->parsed()) return run_launch(launch);
    if (plan_cmd->parsed()) return run_plan(plan);
    if (collectives_cmd->parsed()) return run_bench_collectives(bench);
    if (prepare_cmd->parsed()) return run_data_prepare(prepare);
    if (inspect_cmd->parsed()) return run_ckpt_inspect(ckpt_dir);
    if (export_cmd->parsed()) return run_ckpt_export(ckpt_dir, safetensors_path);
    return static_cast<int>(ErrorKind::kInternal);
  });
  // Under weft launch, the code this rank returns is what the launcher judges the job by.
  report_rank_exit(code, ExitHow::kReturned);
  return code;
}
