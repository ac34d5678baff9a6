// Tensor parallelism: the split model computes the unsplit one's loss and gradients, every tp/dp layout trains
// the same model as one rank, and tp traffic follows the formula.
#include <catch2/catch.hpp>

#include "model/gpt.h"

#include "kernels/backend.h"
#include "parallel/planner.h"
#include "parallel/tensor_parallel.h"
#include "tests/parallel/thread_run.h"
#include "tests/test_util.h"

using namespace weft;
using namespace weft::testing;

namespace {

// Loss and gradients (in the whole model's layout) of one forward+backward, computed on `tp` thread-ranks.
std::pair<double, std::vector<double>> split_model_gradients(const ModelConfig& model, int tp, bool sp = false) {
  const ParamLayout whole = gpt2_layout(model);
  std::vector<double> gathered(static_cast<std::size_t>(whole.total()), 0.0);
  double loss = 0.0;
  std::mutex mutex;
  auto group = make_thread_group(tp);
  const auto rows = static_cast<std::size_t>(2 * model.seq_len);
  const auto inputs = random_tokens(rows, model.vocab_size, 3), targets = random_tokens(rows, model.vocab_size, 4);
  run_on_threads(group, [&](Communicator& comm) {
    CommTpGroup tp_group(comm);
    auto device = make_cpu_device();
    ModelOptions options;
    options.tp = &tp_group;
    options.sequence_parallel = sp;
    GptModel gpt(model, *device, 2, options);
    const ParamLayout& local = gpt.params();
    Tensor p(*device, {local.total()}, DType::kF32, MemoryCategory::kParams);
    Tensor g(*device, {local.total()}, DType::kF32, MemoryCategory::kGrads);
    std::vector<float> values(static_cast<std::size_t>(local.total()));
    local.initialise(21, values.data());
    p.copy_from_host_f32(values.data(), local.total());
    const double my_loss = gpt.forward_backward(p.f32(), g.f32(), inputs.data(), targets.data(), 1.0f);
    const auto grads = g.to_host_f32();
    std::lock_guard lock(mutex);
    if (comm.rank() == 0) loss = my_loss;
    for (const auto& spec : local.specs()) {
      // Replicated parameters' gradients must agree across ranks; take rank 0's.
      if (spec.split == TpSplit::kReplicated && comm.rank() != 0) continue;
      const ParamSpec& global = whole.find(spec.name);
      for (std::int64_t i = 0; i < spec.numel; ++i) {
        const std::int64_t at = local.global_index(spec, i);
        if (at < global.numel) gathered[static_cast<std::size_t>(global.offset + at)] = grads[static_cast<std::size_t>(spec.offset + i)];
      }
    }
  });
  return {loss, gathered};
}

}  // namespace

TEST_CASE("every column-, row- and vocab-parallel layer gives the unsplit model's loss and gradients") {
  // Odd vocabulary (padded per rank), 4 heads split 2 and 4 ways; 20 tokens per micro-batch split 2 and 4 ways for SP.
  const ModelConfig model{2, 32, 4, 61, 10};
  const auto [loss_1, grads_1] = split_model_gradients(model, 1);
  for (const auto& [tp, sp] : {std::pair{2, false}, std::pair{4, false}, std::pair{2, true}, std::pair{4, true}}) {
    const auto [loss_t, grads_t] = split_model_gradients(model, tp, sp);
    INFO("tp = " << tp << ", sequence parallel " << sp);
    CHECK(loss_t == Approx(loss_1).epsilon(1e-6));
    const ParamLayout whole = gpt2_layout(model);
    for (const auto& spec : whole.specs()) {
      std::vector<float> split(grads_t.begin() + spec.offset, grads_t.begin() + spec.offset + spec.numel);
      std::vector<double> unsplit(grads_1.begin() + spec.offset, grads_1.begin() + spec.offset + spec.numel);
      INFO(spec.name);
      // Only fp32 summation order differs (partial products summed across ranks): 1e-5 of the tensor's scale.
      CHECK(max_relative_error(split, unsplit) < 1e-5);
    }
  }
}

TEST_CASE("the vocab-parallel loss pieces equal the full softmax cross-entropy") {
  const int rows = 5, vocab = 23, parts = 3, local = 8;  // 3 x 8 = 24 columns: one padding column
  auto logits = random_normal_vector(static_cast<std::size_t>(rows * vocab), 80, 3.0f);
  auto targets = random_tokens(rows, vocab, 81);
  const auto& k = kernels::kernels_for(DeviceType::kCpu);
  std::vector<float> losses(rows), grad(logits.size());
  k.softmax_cross_entropy({}, losses.data(), grad.data(), logits.data(), targets.data(), rows, vocab, vocab, 0.5f);
  // Each part sees columns [p * local, p * local + local) with the padding column beyond the vocabulary.
  std::vector<std::vector<float>> shard(parts, std::vector<float>(static_cast<std::size_t>(rows * local), 0.0f));
  for (int p = 0; p < parts; ++p)
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < local && p * local + c < vocab; ++c)
        shard[p][static_cast<std::size_t>(r * local + c)] = logits[static_cast<std::size_t>(r * vocab + p * local + c)];
  std::vector<float> max(rows, -3e38f), sum(rows, 0.0f), target(rows, 0.0f), piece(rows);
  auto valid = [&](int p) { return std::max(0, std::min(local, vocab - p * local)); };
  for (int p = 0; p < parts; ++p) {
    k.row_max({}, piece.data(), shard[p].data(), rows, local, valid(p));
    for (int r = 0; r < rows; ++r) max[r] = std::max(max[r], piece[r]);  // the all-reduce(max)
  }
  for (int p = 0; p < parts; ++p) {
    k.row_sum_exp({}, piece.data(), shard[p].data(), max.data(), rows, local, valid(p));
    for (int r = 0; r < rows; ++r) sum[r] += piece[r];  // the all-reduce(sum)
    k.target_logit({}, piece.data(), shard[p].data(), targets.data(), rows, local, p * local, valid(p));
    for (int r = 0; r < rows; ++r) target[r] += piece[r];
  }
  for (int r = 0; r < rows; ++r)
    CHECK(std::log(sum[r]) + max[r] - target[r] == Approx(losses[static_cast<std::size_t>(r)]).epsilon(1e-6));
  for (int p = 0; p < parts; ++p) {
    std::vector<float> dz(shard[p].size());
    k.vocab_parallel_grad({}, dz.data(), shard[p].data(), max.data(), sum.data(), targets.data(), rows, local,
                          p * local, valid(p), 0.5f);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < local; ++c) {
        const float want = p * local + c < vocab ? grad[static_cast<std::size_t>(r * vocab + p * local + c)] : 0.0f;
        CHECK(dz[static_cast<std::size_t>(r * local + c)] == Approx(want).margin(1e-7));
      }
  }
}

TEST_CASE("tp=2, tp=4, tp=2 with sequence parallelism and dp=2 x tp=2 (ZeRO 0, 1, 3) train the same model as one rank") {
  const std::vector<ConfigOverride> base = {{"model.vocab_size", "259"}, {"comm.bucket_mb", "0.1"}};
  const RunResult one = train_on_threads(1, 10, base);
  struct Layout {
    int ranks, tp, zero;
    bool sp;
  };
  for (const Layout& layout : {Layout{2, 2, 0, false}, Layout{4, 4, 0, false}, Layout{2, 2, 0, true},
                               Layout{4, 4, 0, true}, Layout{4, 2, 0, false}, Layout{4, 2, 1, false},
                               Layout{4, 2, 3, false}, Layout{4, 2, 3, true}}) {
    auto overrides = base;
    overrides.push_back({"parallel.tp", std::to_string(layout.tp)});
    overrides.push_back({"parallel.zero", std::to_string(layout.zero)});
    overrides.push_back({"parallel.sequence_parallel", layout.sp ? "true" : "false"});
    const RunResult many = train_on_threads(layout.ranks, 10, overrides);
    INFO("ranks " << layout.ranks << ", tp " << layout.tp << ", zero " << layout.zero << ", sp " << layout.sp);
    CHECK(max_relative_difference(many.losses, one.losses, 5) <= 1e-5);
    CHECK(max_relative_difference(many.losses, one.losses, 10) <= 1e-4);
  }
}

TEST_CASE("tp traffic is 4 all-reduces of batch x seq x d_model per block, and the plan equals the run") {
  for (int tp : {2, 4}) {
    const std::vector<ConfigOverride> overrides = {{"parallel.tp", std::to_string(tp)}, {"train.recompute", "block"}};
    const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, tp);
    const RunResult run = train_on_threads(tp, 2, overrides);
    const Plan plan = make_plan(config, tp);
    INFO("tp = " << tp);
    CHECK(run.records[0].back().comm.tp == plan.comm.tp);
    CHECK(run.memory.of(MemoryCategory::kParams) == plan.memory.params);
    CHECK(run.memory.of(MemoryCategory::kActivations) == plan.memory.activations);
    // One more block adds exactly 4 all-reduces of the residual stream per micro-batch.
    Config deeper = config;
    deeper.model.layers += 1;
    const double stream = 4.0 * config.train.micro_batch * config.model.seq_len * config.model.d_model;
    const double per_block = static_cast<double>(make_plan(deeper, tp).comm.tp - plan.comm.tp) /
                             config.accumulation_steps();
    // Recomputing a block repeats its 2 forward all-reduces: 6 per block here, 4 without recomputation.
    CHECK(per_block == Approx(6 * stream * 2.0 * (tp - 1) / tp));
    deeper.train.recompute = Recompute::kNone;
    Config plain = config;
    plain.train.recompute = Recompute::kNone;
    const double without = static_cast<double>(make_plan(deeper, tp).comm.tp - make_plan(plain, tp).comm.tp) /
                           config.accumulation_steps();
    CHECK(without == Approx(4 * stream * 2.0 * (tp - 1) / tp));
  }
}

TEST_CASE("sequence parallelism moves the same stream bytes as reduce-scatter + all-gather, with less activation memory") {
  for (int tp : {2, 4}) {
    const std::vector<ConfigOverride> sp = {{"parallel.tp", std::to_string(tp)}, {"parallel.sequence_parallel", "true"}};
    const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", sp, tp);
    const RunResult run = train_on_threads(tp, 2, sp);
    const Plan plan = make_plan(config, tp);
    Config without = config;
    without.parallel.sequence_parallel = false;
    const Plan plain = make_plan(without, tp);
    INFO("tp = " << tp);
    CHECK(run.records[0].back().comm.tp == plan.comm.tp);
    CHECK(run.memory.of(MemoryCategory::kActivations) == plan.memory.activations);
    // The stream traffic is equal; SP adds only the LayerNorm gradients' all-reduces (2 x d_model floats each).
    const double ln_all_reduces = config.accumulation_steps() * (1 + 2 * config.model.layers) *
                                  (2.0 * (tp - 1) / tp) * 2 * config.model.d_model * 4;
    CHECK(static_cast<double>(plan.comm.tp - plain.comm.tp) == Approx(ln_all_reduces).margin(8));
    CHECK(plan.memory.activations < plain.memory.activations);
  }
}
