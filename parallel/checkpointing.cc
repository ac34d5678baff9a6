// Trainer's checkpoints: which model states each rank writes (each element once, by its owner) and how any
// layout reads them back (by global element, so a checkpoint saved under one layout loads under another).
#include <chrono>
#include <functional>
#include <filesystem>

#include <fmt/format.h>

#include "checkpoint/format.h"
#include "checkpoint/model_shape.h"
#include "model/token_file.h"
#include "parallel/engine.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace weft {
namespace {

constexpr const char* kStates[] = {"param", "adam_m", "adam_v"};

// Splits this rank's elements [first, first + count) of `spec` into runs of consecutive global indices
// (a column-parallel slice breaks at every row) and calls visit(global_start, local_offset, run_count).
template <typename Visit>
void for_each_global_run(const ParamLayout& params, const ParamSpec& spec, std::int64_t first, std::int64_t count,
                         Visit visit) {
  // Within a row of the local slice the global indices are consecutive for every split, so runs are found a
  // row at a time: a run goes on while the next row starts right after where the previous one ended.
  const std::int64_t cols = spec.shape.size() > 1 ? spec.shape[1] : 1;
  const std::int64_t end = first + count;
  std::int64_t run_start = first;
  std::int64_t run_global = params.global_index(spec, first);
  std::int64_t next_global = run_global;
  for (std::int64_t i = first; i < end;) {
    const std::int64_t row_end = std::min(end, (i / cols + 1) * cols);
    const std::int64_t global = params.global_index(spec, i);
    if (global != next_global) {
      visit(run_global, run_start - first, i - run_start);
      run_start = i;
      run_global = global;
    }
    next_global = global + (row_end - i);
    i = row_end;
  }
  if (end > run_start) visit(run_global, run_start - first, end - run_start);
}

}  // namespace

std::array<std::vector<float>, 3> Trainer::bucket_state(std::size_t i) {
  if (offload_) return offload_->state(i);
  const ParamRange& range = update_ranges_[i];
  ShardOptimizer& optimizer = optimizers_[i];
  std::array<std::vector<float>, 3> values;
  if (config_.precision.compute == DType::kF32) {
    values[0].resize(static_cast<std::size_t>(range.size()));
    device_.copy_to_host(values[0].data(), params_.update_view(layout_.buckets()[i], range), 4 * values[0].size());
  } else {
    values[0] = optimizer.master().slice(0, range.size()).to_host_f32();  // the exact fp32 master weights
  }
  values[1] = optimizer.adam_m().slice(0, range.size()).to_host_f32();
  values[2] = optimizer.adam_v().slice(0, range.size()).to_host_f32();
  return values;
}

void Trainer::set_bucket_state(std::size_t i, std::array<std::vector<float>, 3>& values) {
  const ParamRange& range = update_ranges_[i];
  if (offload_) {
    offload_->set_state(i, values);  // first: it waits for an update that may still write the parameters
  } else {
    ShardOptimizer& optimizer = optimizers_[i];
    if (config_.precision.compute != DType::kF32)
      optimizer.master().slice(0, range.size()).copy_from_host_f32(values[0].data(), range.size());
    optimizer.adam_m().slice(0, range.size()).copy_from_host_f32(values[1].data(), range.size());
    optimizer.adam_v().slice(0, range.size()).copy_from_host_f32(values[2].data(), range.size());
  }
  // The parameters: the fp32 weights as they are, or rounded to 16 bits (on the device, as after an update).
  Tensor weights(device_, {range.size()}, DType::kF32, MemoryCategory::kOther);
  weights.copy_from_host_f32(values[0].data(), range.size());
  store_as(device_, params_.update_view(layout_.buckets()[i], range), config_.precision.compute, weights.f32(),
           static_cast<std::size_t>(range.size()));
}

template <typename Visit>
void Trainer::for_each_owned_piece(std::size_t bucket, Visit visit) {
  const ParamRange& range = update_ranges_[bucket];
  for (const ParamSpec& spec : model_->params().specs()) {
    const std::int64_t lo = std::max(spec.offset, range.begin), hi = std::min(spec.offset + spec.numel, range.end);
    if (lo < hi) visit(spec, lo - spec.offset, hi - lo, lo - range.begin);
  }
}

void Trainer::save_checkpoint(int step) {
  namespace fs = std::filesystem;
  const auto started = std::chrono::steady_clock::now();
  Communicator& world = *groups_.host.world;
  const ParamLayout& params = model_->params();
  const std::string root = config_.checkpoint.dir, staging = checkpoint::checkpoint_path(root, step) + ".tmp";
  if (world.rank() == 0) {
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    fs::create_directories(staging);
  }
  world.barrier()->wait();

  // Each element once: dp rank 0 unless the optimizer state is sharded, tp rank 0 for tp-replicated
  // parameters, the first pipeline stage for the tied embeddings.
  std::vector<checkpoint::RunData> runs;
  std::vector<std::vector<float>> held;  // the host copies of the states that `runs` point into
  const bool writes = zero_.optimizer_sharded || groups_.coords.dp == 0;
  for (std::size_t i = 0; writes && i < update_ranges_.size(); ++i) {
    if (update_ranges_[i].size() == 0) continue;
    std::array<std::vector<float>, 3> values = bucket_state(i);
    for_each_owned_piece(i, [&](const ParamSpec& spec, std::int64_t first, std::int64_t count, std::int64_t at) {
      if (!params.counts(spec)) return;
      for_each_global_run(params, spec, first, count, [&](std::int64_t global, std::int64_t offset, std::int64_t n) {
        for (int s = 0; s < 3; ++s) {
          const float* begin = values[s].data() + at + offset;
          runs.push_back({spec.name, kStates[s], global, std::span<const float>(begin, static_cast<std::size_t>(n))});
        }
      });
    });
    for (auto& state : values) held.push_back(std::move(state));  // moving keeps each buffer where it is
  }
  if (save_fault_ == SaveFault::kBeforeShard) throw Error(ErrorKind::kPeer, "injected: died before writing its shard");
  checkpoint::write_shard(staging, world.rank(), runs);
  if (save_fault_ == SaveFault::kAfterShard) throw Error(ErrorKind::kPeer, "injected: died after writing its shard");
  std::int64_t my_bytes = 0;
  for (const auto& run : runs) my_bytes += 4 * static_cast<std::int64_t>(run.values.size());
  const double write_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  world.barrier()->wait();

  if (world.rank() == 0) {
    checkpoint::Manifest manifest;
    checkpoint::record_model(config_.model, manifest.mutable_model());
    auto* layout = manifest.mutable_layout();
    layout->set_world_size(world.size());
    layout->set_dp(config_.parallel.dp);
    layout->set_tp(config_.parallel.tp);
    layout->set_pp(config_.parallel.pp);
    layout->set_zero(config_.parallel.zero);
    layout->set_virtual_stages(config_.parallel.virtual_stages);
    layout->set_precision(std::string(dtype_name(config_.precision.compute)));
    manifest.set_seed(config_.train.seed);
    // What made the ids trained on, as read when the data was opened (the file may have been replaced since).
    const CorpusTokenizer made_by = corpus_->tokenizer();
    manifest.set_tokenizer(made_by.kind);
    manifest.set_tokenizer_model(made_by.model);
    manifest.set_samples_consumed(static_cast<std::int64_t>(step) * config_.train.global_batch);
    manifest.set_loss_scale(scaler_.scale());
    manifest.set_loss_scale_clean_steps(scaler_.clean_steps());
    const ParamLayout whole = model_family(config_.model).layout(config_.model, 0, config_.parallel.tp, {});
    for (const ParamSpec& spec : whole.specs()) {
      auto* tensor = manifest.add_tensors();
      tensor->set_name(spec.name);
      for (auto extent : spec.global_shape) tensor->add_global_shape(extent);
    }
    checkpoint::commit(root, step, std::move(manifest), world.size(), config_.checkpoint.keep);
  }
  world.barrier()->wait();
  if (world.rank() == 0) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    logger().info("saved {} in {:.3f} s; rank 0 wrote {} bytes in {:.3f} s ({:.1f} MB/s)",
                 checkpoint::checkpoint_path(root, step), seconds, my_bytes, write_seconds,
                 my_bytes / write_seconds / 1e6);
  }
}

int Trainer::restore_checkpoint() {
  const CheckpointConfig& c = config_.checkpoint;
  if (c.resume == "never") return 0;
  std::string path;
  if (c.resume == "auto") {
    const auto newest = checkpoint::newest_complete(c.dir);
    if (!newest) return 0;
    path = *newest;
  } else {
    path = c.resume;
  }
  const auto started = std::chrono::steady_clock::now();
  const checkpoint::Reader reader(path);
  const ModelConfig saved = checkpoint::recorded_model(reader.manifest().model());
  if (!checkpoint::same_model(saved, config_.model))
    fail_usage("{}: the checkpoint holds the model {}; the config asks for {}", path,
               checkpoint::describe_model(saved), checkpoint::describe_model(config_.model));
  const ParamLayout& params = model_->params();
  // fn(tensor, global start, count, offset in the bucket's update range) for every run of saved elements that
  // bucket i's optimizer shard on this rank holds.
  using SavedRun = std::function<void(const std::string&, std::int64_t, std::int64_t, std::int64_t)>;
  auto for_each_saved_run = [&](std::size_t i, const SavedRun& fn) {
    for_each_owned_piece(i, [&](const ParamSpec& spec, std::int64_t first, std::int64_t count, std::int64_t at) {
      for_each_global_run(params, spec, first, count, [&](std::int64_t global, std::int64_t offset, std::int64_t n) {
        // Padding rows of the vocabulary (beyond vocab_size) hold no saved values and stay zero.
        const std::int64_t real = spec.real_rows < 0 ? -1 : spec.real_rows * spec.global_shape[1];
        const std::int64_t wanted = real < 0 ? n : std::max<std::int64_t>(0, std::min(n, real - global));
        fn(spec.name, global, wanted, at + offset);
      });
    });
  };
  // Each rank reads and checks only the shards its part of the state lives in, all of them before any state
  // changes; then the ranks agree, so a damaged shard stops every rank with exit 2, not only those that read it.
  std::string damage;
  try {
    for (std::size_t i = 0; i < update_ranges_.size(); ++i)
      for_each_saved_run(i, [&](const std::string& tensor, std::int64_t global, std::int64_t count, std::int64_t) {
        for (int s = 0; s < 3; ++s) reader.require(tensor, kStates[s], global, count);
      });
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kUsage) throw;
    damage = e.what();
  }
  float failed_rank = damage.empty() ? 0.0f : static_cast<float>(groups_.host.world->rank() + 1);
  groups_.host.world->all_reduce(&failed_rank, 1, DType::kF32, ReduceOp::kMax)->wait();
  if (!damage.empty()) throw Error(ErrorKind::kUsage, damage);
  if (failed_rank > 0.0f)
    fail_usage("{}: rank {} could not read its part of the checkpoint (its message names the file); no rank resumed",
               path, static_cast<int>(failed_rank) - 1);
  for (std::size_t i = 0; i < update_ranges_.size(); ++i) {
    const ParamRange& range = update_ranges_[i];
    if (range.size() == 0) continue;
    std::array<std::vector<float>, 3> values;
    for (auto& v : values) v.assign(static_cast<std::size_t>(range.size()), 0.0f);
    for_each_saved_run(i, [&](const std::string& tensor, std::int64_t global, std::int64_t count, std::int64_t at) {
      for (int s = 0; s < 3; ++s) reader.read(tensor, kStates[s], global, count, values[s].data() + at);
    });
    set_bucket_state(i, values);
  }
  params_.publish_updates();  // ZeRO 1/2: every rank rebuilds the full parameters from the owners' chunks
  scaler_.restore(reader.manifest().loss_scale(), reader.manifest().loss_scale_clean_steps());
  if (groups_.host.world->rank() == 0) {
    std::int64_t total = 0;
    for (const auto& file : reader.manifest().files()) total += file.bytes();
    const auto bytes = static_cast<double>(reader.bytes_loaded());
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    logger().info("resumed from {} (step {}, saved on {} rank(s)); rank 0 read and verified {} of the checkpoint's {} "
                 "bytes in {:.3f} s ({:.1f} MB/s)",
                 path, reader.manifest().step(), reader.manifest().layout().world_size(), reader.bytes_loaded(), total,
                 seconds, bytes / seconds / 1e6);
  }
  return static_cast<int>(reader.manifest().step());
}

}  // namespace weft
