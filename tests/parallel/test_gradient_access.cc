// Gradients by name between backward and apply (what libweft's weft_trainer_get_gradient/_set_gradient reach):
// under every ZeRO stage and storage type a read is the 1-rank ZeRO 0 gradient of the same global batch, and a
// written gradient is what clipping and AdamW then apply, checked against AdamW computed here element by element.
#include <cmath>
#include <map>
#include <mutex>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "model/optimizer.h"
#include "runtime/error.h"
#include "runtime/rng.h"
#include "tests/parallel/thread_run.h"

using namespace weft;

namespace {

using Tensors = std::map<std::string, std::vector<float>>;

const std::string kTiny = std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml";

// An odd global batch over 2 ranks is refused, so 6 samples of 3 per micro-batch: 1 micro-batch per rank at dp = 2,
// 2 at dp = 1; a small bucket size gives several buckets whose chunks do not split parameters evenly.
std::vector<ConfigOverride> base(std::vector<ConfigOverride> extra) {
  std::vector<ConfigOverride> sets = {{"train.global_batch", "6"}, {"train.micro_batch", "3"},
                                      {"model.seq_len", "16"},    {"comm.bucket_mb", "0.03"}};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return sets;
}

// Runs a backward of step 1 on `ranks` thread-ranks and returns rank 0's gradients read by name (every rank reads
// every name in the same order: a collective under ZeRO 1-3); `each` then runs on every rank's trainer.
Tensors gradients_after_backward(int ranks, const std::vector<ConfigOverride>& sets,
                                 const std::function<void(Trainer&, int rank)>& each = {}) {
  const Config config = load_config(kTiny, sets, ranks);
  auto world = make_thread_group(ranks);
  Tensors result;
  std::mutex mutex;
  run_on_threads(world, [&](Communicator& comm) {
    ProcessGroups groups = make_process_groups(comm, config.parallel);
    auto device = make_cpu_device();
    Trainer trainer(config, groups, *device);
    trainer.backward(1);
    for (const ParamSpec& spec : trainer.model().params().specs()) {
      std::vector<float> values(static_cast<std::size_t>(spec.numel));
      trainer.read_gradient(spec, values.data());
      if (comm.rank() == 0) {
        std::lock_guard lock(mutex);
        result[spec.name] = std::move(values);
      }
    }
    if (each) each(trainer, comm.rank());
  });
  return result;
}

// The largest difference relative to the tensor's largest magnitude, over every tensor.
double worst_difference(const Tensors& got, const Tensors& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0.0;
  for (const auto& [name, w] : want) {
    const std::vector<float>& g = got.at(name);
    REQUIRE(g.size() == w.size());
    double scale = 0.0, diff = 0.0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      scale = std::max(scale, static_cast<double>(std::abs(w[i])));
      diff = testing::worse(diff, static_cast<double>(std::abs(g[i] - w[i])));
    }
    REQUIRE(scale > 0.0);  // never compare zeros
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

}  // namespace

TEST_CASE("gradients read under ZeRO 1-3 on 2 ranks equal the 1-rank ZeRO 0 gradient of the same batch") {
  const Tensors reference = gradients_after_backward(1, base({}));
  for (int zero = 0; zero <= 3; ++zero) {
    INFO("parallel.zero = " << zero);
    const Tensors got = gradients_after_backward(2, base({{"parallel.zero", std::to_string(zero)}}));
    // fp32: the same per-token terms summed in another grouping (two half-batches, then the dp sum) differ by a
    // few roundings of the largest partial sums; 1e-5 of the tensor's scale is the contract's fp32 bound.
    CHECK(worst_difference(got, reference) <= 1e-5);
  }
}

TEST_CASE("16-bit gradients read as fp32: bf16 under ZeRO 2 on 2 ranks, fp16 with its loss scale divided out") {
  const Tensors reference = gradients_after_backward(1, base({}));
  // bf16 keeps 8 significant bits (relative rounding 2^-9 per value, a few roundings: the reduction adds in bf16
  // communication); fp16 keeps 11 bits but its forward also computes in 16 bits. 3% of the scale catches a missing
  // conversion (bf16 bits read as floats) or a loss scale of 65536 left in, both off by orders of magnitude.
  CHECK(worst_difference(gradients_after_backward(2, base({{"parallel.zero", "2"}, {"precision.compute", "bf16"}})),
                         reference) <= 3e-2);
  CHECK(worst_difference(gradients_after_backward(1, base({{"precision.compute", "fp16"}})), reference) <= 3e-2);
}

TEST_CASE("a gradient written between backward and apply is what clipping and AdamW apply") {
  // A clip below the written gradients' norm and an eps near their size make the update depend on every value
  // written (AdamW's first step alone is m/sqrt(v) = sign(g) otherwise); half the tensors get zeros, which leave
  // only weight decay.
  const std::vector<ConfigOverride> extra = {{"train.grad_clip", "0.05"}, {"train.eps", "1e-3"}};
  for (int zero : {0, 1, 2, 3}) {
    const int ranks = zero == 0 ? 1 : 2;
    INFO("parallel.zero = " << zero << ", " << ranks << " rank(s)");
    auto sets = base(extra);
    sets.push_back({"parallel.zero", std::to_string(zero)});
    const Config config = load_config(kTiny, sets, ranks);
    auto world = make_thread_group(ranks);
    std::vector<std::string> failures;
    std::mutex mutex;
    run_on_threads(world, [&](Communicator& comm) {
      ProcessGroups groups = make_process_groups(comm, config.parallel);
      auto device = make_cpu_device();
      Trainer trainer(config, groups, *device);
      const auto& specs = trainer.model().params().specs();
      // Applying before any backward, and writing outside backward..apply, are refused.
      std::vector<float> probe(static_cast<std::size_t>(specs[0].numel), 1.0f);
      CHECK_THROWS_WITH(trainer.apply(), Catch::Contains("no gradients to apply"));
      CHECK_THROWS_WITH(trainer.write_gradient(specs[0], probe.data()), Catch::Contains("no backward has run"));
      trainer.backward(1);
      CHECK_THROWS_WITH(trainer.backward(2), Catch::Contains("waiting"));

      Tensors before, written;
      double squares = 0.0;
      for (std::size_t s = 0; s < specs.size(); ++s) {
        const ParamSpec& spec = specs[s];
        std::vector<float>& g = written[spec.name];
        g.assign(static_cast<std::size_t>(spec.numel), 0.0f);
        if (s % 2 == 0)  // the same values on every rank: keyed by name and index, not by rank
          for (std::size_t i = 0; i < g.size(); ++i)
            g[i] = 2e-3f * (random_uniform(rng_key(7, spec.name), i) - 0.5f);
        for (float v : g) squares += static_cast<double>(v) * v;
        trainer.write_gradient(spec, g.data());
        before[spec.name].resize(g.size());
        trainer.read_parameter(spec, before[spec.name].data());
      }
      // Read back as written, whatever the stage keeps (ZeRO 1-3 gather the chunks every rank wrote).
      for (const ParamSpec& spec : specs) {
        std::vector<float> back(static_cast<std::size_t>(spec.numel));
        trainer.read_gradient(spec, back.data());
        if (back != written[spec.name]) {
          std::lock_guard lock(mutex);
          failures.push_back(spec.name + ": read back differs from written");
        }
      }
      const StepRecord record = trainer.apply();
      CHECK_THROWS_WITH(trainer.write_gradient(specs[0], probe.data()), Catch::Contains("already applied"));

      const TrainConfig& t = config.train;
      const double norm = std::sqrt(squares);
      REQUIRE(norm > t.grad_clip);
      CHECK(std::abs(record.grad_norm - norm) <= 1e-6 * norm);  // the norm of the written values, over every rank
      const float clip = static_cast<float>(t.grad_clip / (norm + 1e-6));
      const auto lr = static_cast<float>(record.lr), b1 = static_cast<float>(t.beta1), b2 = static_cast<float>(t.beta2),
                 eps = static_cast<float>(t.eps);
      for (const ParamSpec& spec : specs) {
        std::vector<float> after(static_cast<std::size_t>(spec.numel));
        trainer.read_parameter(spec, after.data());
        const float decay = spec.weight_decay ? static_cast<float>(t.weight_decay) : 0.0f;
        double worst = 0.0;
        for (std::size_t i = 0; i < after.size(); ++i) {
          // AdamW's first step (Loshchilov & Hutter, Algorithm 2) with bias correction, from zero moments.
          const float g = written[spec.name][i] * clip;
          const float m_hat = ((1 - b1) * g) / (1 - b1), v_hat = ((1 - b2) * g * g) / (1 - b2);
          const float p = before[spec.name][i];
          const float want = p - lr * (m_hat / (std::sqrt(v_hat) + eps) + decay * p);
          // A few float roundings of values below 1: 1e-6 absolute (the update itself is ~lr = 3e-4).
          worst = testing::worse(worst, static_cast<double>(std::abs(after[i] - want)));
        }
        if (worst > 1e-6) {
          std::lock_guard lock(mutex);
          failures.push_back(fmt::format("{}: off by {} from AdamW on the written gradient", spec.name, worst));
        }
      }
    });
    for (const std::string& failure : failures) FAIL_CHECK(failure);
    CHECK(failures.empty());
  }
}
