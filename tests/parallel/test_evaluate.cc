// Validation: the loss Trainer::evaluate reports is the mean forward loss over the same validation samples in every
// layout, equals a direct forward over them, and leaves training untouched; data.valid_fraction holds out the
// corpus's tail; configs that ask for evaluation without data are refused.
#include <filesystem>
#include <fstream>
#include <mutex>

#include <catch2/catch.hpp>

#include "model/data.h"
#include "runtime/error.h"
#include "runtime/tensor.h"
#include "tests/parallel/thread_run.h"

using namespace weft;
using namespace weft::testing;

namespace {

const std::vector<ConfigOverride> kValid = {{"data.valid_fraction", "0.1"}, {"train.eval_batches", "2"}};

std::vector<ConfigOverride> with(std::vector<ConfigOverride> sets, const std::vector<ConfigOverride>& extra) {
  sets.insert(sets.end(), extra.begin(), extra.end());
  return sets;
}

struct EvalRun {
  std::vector<double> losses, val_losses;
  std::vector<float> final_parameters;
};

// Trains `steps` steps on `ranks` thread-ranks, evaluating after every step when `evaluate` is set.
EvalRun run(int ranks, int steps, const std::vector<ConfigOverride>& sets, bool evaluate = true) {
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", sets, ranks);
  auto world = make_thread_group(ranks);
  EvalRun result;
  std::mutex mutex;
  run_on_threads(world, [&](Communicator& comm) {
    ProcessGroups groups = make_process_groups(comm, config.parallel);
    auto device = make_cpu_device();
    Trainer trainer(config, groups, *device);
    for (int step = 1; step <= steps; ++step) {
      const double loss = trainer.train_step(step).loss;
      const double val = evaluate ? trainer.evaluate() : 0.0;
      if (comm.rank() == 0) {
        std::lock_guard lock(mutex);
        result.losses.push_back(loss);
        result.val_losses.push_back(val);
      }
    }
    auto params = trainer.parameters();
    if (comm.rank() == 0) result.final_parameters = std::move(params);
  });
  return result;
}

}  // namespace

TEST_CASE("the validation loss is the same in every layout and leaves training untouched") {
  const EvalRun one = run(1, 3, kValid);
  CHECK(one.val_losses.back() < one.val_losses.front());  // it learns what it is scored on
  struct Layout {
    int ranks;
    std::vector<ConfigOverride> model, parallel;  // the 1-rank reference trains `model`'s settings too
  };
  const std::vector<ConfigOverride> kFour = {{"model.layers", "4"}}, kLlama = {{"model.family", "llama"},
                                                                                {"model.kv_heads", "2"}};
  for (const Layout& layout : std::vector<Layout>{
           {2, {}, {}},
           {2, {}, {{"parallel.tp", "2"}, {"parallel.sequence_parallel", "true"}}},
           {2, {}, {{"parallel.pp", "2"}}},
           {2, kFour, {{"parallel.pp", "2"}, {"parallel.schedule", "interleaved"}, {"parallel.virtual_stages", "2"}}},
           {2, {}, {{"parallel.zero", "3"}}},
           {4, {}, {{"parallel.pp", "2"}, {"parallel.zero", "3"}, {"parallel.zero3_gather", "microbatch"}}},
           {2, kLlama, {{"parallel.pp", "2"}}},
       }) {
    std::string described;
    for (const auto& o : with(layout.model, layout.parallel)) described += o.key + "=" + o.value + " ";
    INFO(layout.ranks << " ranks: " << described);
    const EvalRun reference = layout.model.empty() ? one : run(1, 3, with(kValid, layout.model));
    const EvalRun other = run(layout.ranks, 3, with(with(kValid, layout.model), layout.parallel));
    CHECK(max_relative_difference(other.val_losses, reference.val_losses, 3) <= 1e-5);
  }
  // Evaluating between steps changes nothing of the training run, bit for bit.
  const EvalRun quiet = run(2, 3, with(kValid, {{"parallel.pp", "2"}}), false);
  const EvalRun scored = run(2, 3, with(kValid, {{"parallel.pp", "2"}}), true);
  CHECK(quiet.losses == scored.losses);
  CHECK(quiet.final_parameters == scored.final_parameters);
}

TEST_CASE("the validation loss equals a direct forward over the validation samples") {
  const auto sets = with(kValid, {{"train.steps", "2"}});
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", sets, 1);
  const EvalRun trained = run(1, 2, sets);
  // The same samples, read straight from the held-out tail, through a fresh model holding the trained weights.
  auto valid = open_validation_corpus(config);
  SampleSource samples(*valid, config.train.seed, config.model.seq_len);
  auto device = make_cpu_device();
  auto model = model_family(config.model).build(config.model, *device, 1, {});
  Tensor p(*device, {model->params().total()}, DType::kF32, MemoryCategory::kParams);
  p.copy_from_host_f32(trained.final_parameters.data(), model->params().total());
  const int seq = config.model.seq_len;
  std::vector<std::int32_t> inputs(static_cast<std::size_t>(seq)), targets(inputs.size());
  double sum = 0.0;
  const int count = config.train.global_batch * config.train.eval_batches;
  for (int i = 0; i < count; ++i) {
    samples.sample(i, inputs.data(), targets.data());
    sum += model->forward_loss(p.f32(), inputs.data(), targets.data());
  }
  CHECK(trained.val_losses.back() == Approx(sum / (static_cast<double>(count) * seq)).epsilon(1e-6));
}

TEST_CASE("data.valid_path: a separate validation file trains and evaluates as the same text held out as a tail") {
  // train.txt + valid.txt is one file whose valid_fraction 0.25 holds out exactly valid.txt: the two configs must
  // train on the same samples and evaluate on the same ones.
  const auto dir = std::filesystem::temp_directory_path() / "weft-valid-path";
  std::filesystem::create_directories(dir);
  std::string train_text, valid_text;
  for (int i = 0; i < 1500; ++i) train_text.push_back(static_cast<char>('a' + (i * 7 + i / 13) % 26));
  for (int i = 0; i < 500; ++i) valid_text.push_back(static_cast<char>('a' + (i * 5 + i / 11) % 26));
  const std::string train = (dir / "train.txt").string(), valid = (dir / "valid.txt").string(),
                    both = (dir / "both.txt").string();
  std::ofstream(train) << train_text;
  std::ofstream(valid) << valid_text;
  std::ofstream(both) << train_text + valid_text;
  const EvalRun separate = run(2, 3, {{"data.source", "text"}, {"data.path", train}, {"data.valid_path", valid},
                                      {"train.eval_batches", "2"}});
  const EvalRun tail = run(2, 3, {{"data.source", "text"}, {"data.path", both}, {"data.valid_fraction", "0.25"},
                                  {"train.eval_batches", "2"}});
  REQUIRE(separate.val_losses.size() == 3);
  CHECK(separate.losses == tail.losses);
  CHECK(separate.val_losses == tail.val_losses);
  CHECK(separate.val_losses[0] > 0.0);
  CHECK(separate.val_losses.back() != separate.val_losses.front());  // evaluated after each step's update
}

TEST_CASE("data.valid_fraction holds out the corpus's tail, and evaluation without validation data is refused") {
  const auto dir = std::filesystem::temp_directory_path() / "weft-valid-split";
  std::filesystem::create_directories(dir);
  const std::string text = (dir / "text.txt").string();
  std::string contents;
  for (int i = 0; i < 2000; ++i) contents.push_back(static_cast<char>('a' + i % 26));
  std::ofstream(text) << contents;
  const std::vector<ConfigOverride> sets = {{"data.source", "text"}, {"data.path", text}, {"data.valid_fraction", "0.25"}};
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", sets, 1);
  auto train = open_corpus(config);
  auto valid = open_validation_corpus(config);
  REQUIRE(train->size() == 1500);
  REQUIRE(valid->size() == 500);
  std::vector<std::int32_t> tail(500);
  valid->read(0, 500, tail.data());
  for (int i = 0; i < 500; ++i) REQUIRE(tail[static_cast<std::size_t>(i)] == contents[static_cast<std::size_t>(1500 + i)]);

  auto refusal = [&](std::vector<ConfigOverride> bad) -> std::string {
    try {
      const Config c = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", bad, 1);
      open_corpus(c);
      open_validation_corpus(c);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kUsage);
      return e.what();
    }
    return "accepted";
  };
  CHECK_THAT(refusal({{"train.eval_every", "5"}}), Catch::Contains("train.eval_every") && Catch::Contains("valid_path"));
  CHECK_THAT(refusal(with(sets, {{"data.valid_path", text}})), Catch::Contains("set one of them"));
  CHECK_THAT(refusal({{"data.valid_path", text}}), Catch::Contains("data.source builtin has no validation file"));
  CHECK_THAT(refusal({{"data.valid_fraction", "1"}}), Catch::Contains("data.valid_fraction"));
  CHECK_THAT(refusal({{"data.source", "text"}, {"data.path", text}, {"data.valid_fraction", "0.01"}}),
             Catch::Contains("each part needs at least model.seq_len + 2 = 66"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("evaluating right after an offloaded step waits for its update: the validation losses are those without "
          "offload") {
  // The offloaded update runs on a host thread after train_step returns; evaluate's forward must read each bucket's
  // new parameters. One rank waits bucket by bucket; ZeRO 1 on two waits for the whole update before its all-gather.
  for (const auto& [ranks, layout] : std::vector<std::pair<int, std::vector<ConfigOverride>>>{
           {1, {}}, {2, {{"parallel.zero", "1"}}}}) {
    const auto sets = with(with(kValid, layout), {{"precision.compute", "bf16"}, {"parallel.offload_dir", "/tmp"}});
    const EvalRun none = run(ranks, 3, sets);
    for (const char* offload : {"host", "disk"}) {
      INFO(ranks << " rank(s), offload " << offload);
      const EvalRun offloaded = run(ranks, 3, with(sets, {{"parallel.offload", offload}}));
      CHECK(offloaded.val_losses == none.val_losses);
      CHECK(offloaded.losses == none.losses);
    }
  }
}
