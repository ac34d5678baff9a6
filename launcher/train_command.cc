// `weft train`: one rank of a training job.
#include <memory>
#include <optional>

#include "launcher/commands.h"
#include "launcher/environment.h"
#include "parallel/engine.h"
#include "runtime/log.h"

namespace weft {

int run_train(const TrainOptions& options) {
  const DetectedRank detected = detect_rank();
  init_logging(detected.info.rank, detected.info.world_size);

  std::vector<ConfigOverride> overrides;
  for (const auto& text : options.overrides) overrides.push_back(parse_override(text));
  const Config config = load_config(options.config_path, overrides, detected.info.world_size);

  std::unique_ptr<Device> device = make_device_for(config, detected.info.local_rank);
  const bool leader = detected.info.rank == 0;
  std::optional<MetricsFile> metrics;
  if (leader && !options.metrics_path.empty()) metrics.emplace(options.metrics_path);

  Trainer trainer(config, detected.info, *device);
  if (leader)
    spdlog::info("training {} ({} parameters, {} layers, d_model {}) on {} for {} steps, {} tokens per step",
                 config.source_path, trainer.model().params().total(), config.model.layers, config.model.d_model,
                 device->name(), config.train.steps, trainer.tokens_per_step());

  std::vector<StepRecord> records;
  for (int step = 1; step <= config.train.steps; ++step) {
    StepRecord record = trainer.train_step(step);
    records.push_back(record);
    if (metrics) metrics->write_step(record);
    if (leader && (step % config.train.log_every == 0 || step == 1 || step == config.train.steps))
      spdlog::info("{}", progress_line(record, config.train.steps));
  }
  const RunSummary summary = summarize(records, trainer.tokens_per_step());
  if (metrics) metrics->write_summary(summary);
  if (leader) spdlog::info("{}", summary_line(summary));
  return 0;
}

}  // namespace weft
