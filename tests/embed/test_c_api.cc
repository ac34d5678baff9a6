// libweft's C API through its header only, as a C program sees it: every function, and every error path returns
// the promised status and a message that names the problem (one process; multi-rank runs are in the examples'
// and Python tests).
#include <catch2/catch.hpp>

#include <algorithm>
#include <utility>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/embed/c_api_checks.h"
#include "weft/weft.h"

namespace {

const std::string kTiny = std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml";

// Status and message of the call just made: the thread's last error.

struct Tiny {
  weft_trainer* t = nullptr;
  explicit Tiny(std::vector<const char*> overrides = {}) {
    overrides.insert(overrides.begin(), {"train.steps=6", "train.global_batch=4", "train.micro_batch=2"});
    REQUIRE(weft_trainer_create(kTiny.c_str(), nullptr, overrides.data(), overrides.size(), &t) == WEFT_OK);
  }
  ~Tiny() { weft_trainer_destroy(t); }
};

std::filesystem::path scratch(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("weft_c_api_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  return dir;
}

}  // namespace

TEST_CASE("the version query names the library and its API level") {
  CHECK(std::string(weft_version()) == "0.1.0");
  CHECK(weft_api_version() == WEFT_API_VERSION);
}

TEST_CASE("creating a trainer from a bad config returns a usage error naming the problem, and no handle") {
  weft_trainer* t = reinterpret_cast<weft_trainer*>(0x1);
  const char* bad_key[] = {"train.stepz=3"};
  REQUIRE_FAILS(weft_trainer_create(kTiny.c_str(), nullptr, bad_key, 1, &t), WEFT_ERROR_USAGE, "train.steps");
  CHECK(t == nullptr);
  REQUIRE_FAILS(weft_trainer_create(nullptr, "model: {layers: [\n", nullptr, 0, &t), WEFT_ERROR_USAGE, "<yaml text>");
  REQUIRE_FAILS(weft_trainer_create(nullptr, "model: {layers: 2}\nbogus: 1\n", nullptr, 0, &t), WEFT_ERROR_USAGE,
                "bogus");
  REQUIRE_FAILS(weft_trainer_create("/nonexistent/weft.yaml", nullptr, nullptr, 0, &t), WEFT_ERROR_USAGE,
                "/nonexistent/weft.yaml");
  REQUIRE_FAILS(weft_trainer_create(kTiny.c_str(), "model: {}\n", nullptr, 0, &t), WEFT_ERROR_USAGE, "exactly one");
  const char* no_equals[] = {"train.steps"};
  REQUIRE_FAILS(weft_trainer_create(kTiny.c_str(), nullptr, no_equals, 1, &t), WEFT_ERROR_USAGE, "train.steps");
  const char* not_a_number[] = {"train.steps=many"};
  REQUIRE_FAILS(weft_trainer_create(kTiny.c_str(), nullptr, not_a_number, 1, &t), WEFT_ERROR_USAGE, "many");
  REQUIRE_FAILS(weft_trainer_create(kTiny.c_str(), nullptr, nullptr, 2, &t), WEFT_ERROR_USAGE, "NULL");
  REQUIRE_FAILS(weft_trainer_create(kTiny.c_str(), nullptr, nullptr, 0, nullptr), WEFT_ERROR_USAGE, "out is NULL");
}

TEST_CASE("a trainer from YAML text trains like one from the file") {
  std::string text;
  {
    FILE* f = std::fopen(kTiny.c_str(), "r");
    REQUIRE(f != nullptr);
    char buffer[4096];
    text.assign(buffer, std::fread(buffer, 1, sizeof buffer, f));
    std::fclose(f);
  }
  const char* overrides[] = {"train.steps=2", "train.global_batch=4", "train.micro_batch=2"};
  weft_trainer *a = nullptr, *b = nullptr;
  REQUIRE(weft_trainer_create(kTiny.c_str(), nullptr, overrides, 3, &a) == WEFT_OK);
  REQUIRE(weft_trainer_create(nullptr, text.c_str(), overrides, 3, &b) == WEFT_OK);
  for (int step = 1; step <= 2; ++step) {
    REQUIRE(weft_trainer_step(a) == WEFT_OK);
    REQUIRE(weft_trainer_step(b) == WEFT_OK);
    const char *ma = nullptr, *mb = nullptr;
    REQUIRE(weft_trainer_metrics(a, &ma) == WEFT_OK);
    REQUIRE(weft_trainer_metrics(b, &mb) == WEFT_OK);
    const std::string sa(ma), sb(mb);
    // The loss field is the first number after "loss": the same bits print the same shortest digits.
    CHECK(sa.substr(0, sa.find("\"lr\"")) == sb.substr(0, sb.find("\"lr\"")));
  }
  weft_trainer_destroy(a);
  weft_trainer_destroy(b);
}

TEST_CASE("a trainer steps, reports metrics, and lists its tensors with shapes and dtypes") {
  Tiny tiny;
  int rank = -1, world = -1, done = -1, planned = -1;
  REQUIRE(weft_trainer_rank(tiny.t, &rank, &world) == WEFT_OK);
  CHECK((rank == 0 && world == 1));
  const char* metrics = nullptr;
  REQUIRE_FAILS(weft_trainer_metrics(tiny.t, &metrics), WEFT_ERROR_USAGE, "no step has run");
  CHECK(std::string(weft_trainer_error(tiny.t)).find("no step has run") != std::string::npos);
  REQUIRE(weft_trainer_step(tiny.t) == WEFT_OK);
  CHECK(std::string(weft_trainer_error(tiny.t)).empty());  // a success clears the handle's message
  REQUIRE(weft_trainer_metrics(tiny.t, &metrics) == WEFT_OK);
  const std::string line(metrics);
  CHECK(line.rfind("{\"step\":1,\"loss\":", 0) == 0);
  CHECK(line.find("\"comm_bytes\"") != std::string::npos);
  REQUIRE(weft_trainer_steps(tiny.t, &done, &planned) == WEFT_OK);
  CHECK((done == 1 && planned == 6));

  size_t count = 0;
  REQUIRE(weft_trainer_tensor_count(tiny.t, &count) == WEFT_OK);
  REQUIRE(count > 4);
  const char* first = nullptr;
  REQUIRE(weft_trainer_tensor_name(tiny.t, 0, &first) == WEFT_OK);
  const std::string name(first);
  int ndim = 0;
  int64_t shape[WEFT_MAX_DIMS] = {};
  REQUIRE(weft_trainer_tensor_shape(tiny.t, name.c_str(), &ndim, shape) == WEFT_OK);
  CHECK((ndim == 2 && shape[0] == 256 && shape[1] == 64));  // the token embedding: vocab x d_model
  weft_dtype dtype = WEFT_INT64;
  REQUIRE(weft_trainer_tensor_dtype(tiny.t, name.c_str(), &dtype) == WEFT_OK);
  CHECK(dtype == WEFT_FLOAT32);

  REQUIRE_FAILS(weft_trainer_tensor_name(tiny.t, count, &first), WEFT_ERROR_USAGE, "out of range");
  REQUIRE_FAILS(weft_trainer_tensor_shape(tiny.t, "wte.weigth", &ndim, shape), WEFT_ERROR_USAGE, "wte.weigth");
  REQUIRE_FAILS(weft_trainer_tensor_dtype(tiny.t, nullptr, &dtype), WEFT_ERROR_USAGE, "NULL");
  REQUIRE_FAILS(weft_trainer_tensor_count(tiny.t, nullptr), WEFT_ERROR_USAGE, "count is NULL");
}

TEST_CASE("parameters read, written and viewed by name, wrong names and sizes are refused") {
  Tiny tiny;
  const char* raw = nullptr;
  REQUIRE(weft_trainer_tensor_name(tiny.t, 0, &raw) == WEFT_OK);
  const std::string name(raw);
  std::vector<float> values(256 * 64);
  REQUIRE(weft_trainer_get_parameter(tiny.t, name.c_str(), values.data(), values.size()) == WEFT_OK);
  float* view = nullptr;
  REQUIRE(weft_trainer_parameter_data(tiny.t, name.c_str(), &view) == WEFT_OK);
  CHECK(std::memcmp(view, values.data(), 4 * values.size()) == 0);  // the view is the storage the copy came from

  for (std::size_t i = 0; i < values.size(); ++i) values[i] = 0.001f * static_cast<float>(i % 97) - 0.05f;
  REQUIRE(weft_trainer_set_parameter(tiny.t, name.c_str(), values.data(), values.size()) == WEFT_OK);
  CHECK(std::memcmp(view, values.data(), 4 * values.size()) == 0);
  std::vector<float> back(values.size());
  REQUIRE(weft_trainer_get_parameter(tiny.t, name.c_str(), back.data(), back.size()) == WEFT_OK);
  CHECK(back == values);

  // A step moves the viewed values, and the gradient it read is there to see.
  REQUIRE(weft_trainer_step(tiny.t) == WEFT_OK);
  CHECK(std::memcmp(view, values.data(), 4 * values.size()) != 0);
  std::vector<float> gradient(values.size());
  REQUIRE(weft_trainer_get_gradient(tiny.t, name.c_str(), gradient.data(), gradient.size()) == WEFT_OK);
  float* gradient_view = nullptr;
  REQUIRE(weft_trainer_gradient_data(tiny.t, name.c_str(), &gradient_view) == WEFT_OK);
  CHECK(std::memcmp(gradient_view, gradient.data(), 4 * gradient.size()) == 0);
  CHECK(std::any_of(gradient.begin(), gradient.end(), [](float g) { return g != 0.0f; }));

  REQUIRE_FAILS(weft_trainer_get_parameter(tiny.t, name.c_str(), back.data(), back.size() - 1), WEFT_ERROR_USAGE,
                "holds 16383 values but the parameter has 16384");
  REQUIRE_FAILS(weft_trainer_set_parameter(tiny.t, name.c_str(), nullptr, back.size()), WEFT_ERROR_USAGE, "NULL");
  REQUIRE_FAILS(weft_trainer_get_parameter(tiny.t, "no.such.tensor", back.data(), back.size()), WEFT_ERROR_USAGE,
                "no parameter named 'no.such.tensor'");
  REQUIRE_FAILS(weft_trainer_get_gradient(tiny.t, "no.such.tensor", back.data(), back.size()), WEFT_ERROR_USAGE,
                "no.such.tensor");
  REQUIRE_FAILS(weft_trainer_parameter_data(tiny.t, name.c_str(), nullptr), WEFT_ERROR_USAGE, "NULL");
}

TEST_CASE("views are refused, with the reason, where weft keeps no whole fp32 copy") {
  Tiny bf16({"precision.compute=bf16"});
  const char* name = nullptr;
  REQUIRE(weft_trainer_tensor_name(bf16.t, 0, &name) == WEFT_OK);
  weft_dtype dtype = WEFT_FLOAT32;
  REQUIRE(weft_trainer_tensor_dtype(bf16.t, name, &dtype) == WEFT_OK);
  CHECK(dtype == WEFT_BFLOAT16);
  float* view = nullptr;
  REQUIRE_FAILS(weft_trainer_parameter_data(bf16.t, name, &view), WEFT_ERROR_USAGE, "16 bits");
  // Copies still work, and a written value is what the model then holds (rounded to bf16: 0.5 is exact).
  std::vector<float> halves(256 * 64, 0.5f), back(halves.size());
  REQUIRE(weft_trainer_set_parameter(bf16.t, name, halves.data(), halves.size()) == WEFT_OK);
  REQUIRE(weft_trainer_get_parameter(bf16.t, name, back.data(), back.size()) == WEFT_OK);
  CHECK(back == halves);

  Tiny zero1({"parallel.zero=1"});
  REQUIRE(weft_trainer_tensor_name(zero1.t, 0, &name) == WEFT_OK);
  REQUIRE(weft_trainer_step(zero1.t) == WEFT_OK);
  REQUIRE_FAILS(weft_trainer_gradient_data(zero1.t, name, &view), WEFT_ERROR_USAGE, "shard");
  // ... but the copy gathers the shards (one rank here: its shard is the whole).
  REQUIRE(weft_trainer_get_gradient(zero1.t, name, back.data(), back.size()) == WEFT_OK);
  CHECK(std::any_of(back.begin(), back.end(), [](float g) { return g != 0.0f; }));

  Tiny offload({"parallel.offload=host"});
  REQUIRE(weft_trainer_step(offload.t) == WEFT_OK);
  REQUIRE_FAILS(weft_trainer_get_gradient(offload.t, name, back.data(), back.size()), WEFT_ERROR_USAGE,
                "parallel.offload = host");
  REQUIRE_FAILS(weft_trainer_gradient_data(offload.t, name, &view), WEFT_ERROR_USAGE, "offload");
}

TEST_CASE("a step split into backward and apply: gradients read and replaced in between, misuse refused") {
  Tiny whole, split;
  const char* raw = nullptr;
  REQUIRE(weft_trainer_tensor_name(split.t, 0, &raw) == WEFT_OK);
  const std::string name(raw);
  std::vector<float> gradient(256 * 64);
  REQUIRE_FAILS(weft_trainer_get_gradient(split.t, name.c_str(), gradient.data(), gradient.size()), WEFT_ERROR_USAGE,
                "no backward has run");
  REQUIRE_FAILS(weft_trainer_apply(split.t), WEFT_ERROR_USAGE, "no gradients to apply");
  REQUIRE_FAILS(weft_trainer_set_gradient(split.t, name.c_str(), gradient.data(), gradient.size()), WEFT_ERROR_USAGE,
                "no backward has run");

  // Backward then apply untouched is a step, bit for bit.
  for (int step = 1; step <= 2; ++step) {
    REQUIRE(weft_trainer_step(whole.t) == WEFT_OK);
    REQUIRE(weft_trainer_backward(split.t) == WEFT_OK);
    int done = -1;
    REQUIRE(weft_trainer_steps(split.t, &done, nullptr) == WEFT_OK);
    CHECK(done == step - 1);  // not done until applied
    REQUIRE_FAILS(weft_trainer_backward(split.t), WEFT_ERROR_USAGE, "waiting");
    REQUIRE_FAILS(weft_trainer_step(split.t), WEFT_ERROR_USAGE, "waiting");
    REQUIRE(weft_trainer_apply(split.t) == WEFT_OK);
    const char *a = nullptr, *b = nullptr;
    REQUIRE(weft_trainer_metrics(whole.t, &a) == WEFT_OK);
    const std::string la(a);
    REQUIRE(weft_trainer_metrics(split.t, &b) == WEFT_OK);
    const std::string lb(b);
    CHECK(la.substr(0, la.find("\"step_ms\"")) == lb.substr(0, lb.find("\"step_ms\"")));
  }
  std::vector<float> pw(gradient.size()), ps(gradient.size());
  REQUIRE(weft_trainer_get_parameter(whole.t, name.c_str(), pw.data(), pw.size()) == WEFT_OK);
  REQUIRE(weft_trainer_get_parameter(split.t, name.c_str(), ps.data(), ps.size()) == WEFT_OK);
  CHECK(pw == ps);

  // A gradient written in between is the one applied: zeros on every tensor at the first step (Adam's moments start
  // at zero and stay there) leave only decoupled weight decay, p (1 - lr wd).
  Tiny fresh;
  split.t = std::exchange(fresh.t, split.t);
  REQUIRE(weft_trainer_backward(split.t) == WEFT_OK);
  REQUIRE(weft_trainer_get_gradient(split.t, name.c_str(), gradient.data(), gradient.size()) == WEFT_OK);
  CHECK(std::any_of(gradient.begin(), gradient.end(), [](float g) { return g != 0.0f; }));
  size_t count = 0;
  REQUIRE(weft_trainer_tensor_count(split.t, &count) == WEFT_OK);
  for (size_t i = 0; i < count; ++i) {
    REQUIRE(weft_trainer_tensor_name(split.t, i, &raw) == WEFT_OK);
    int ndim = 0;
    int64_t shape[WEFT_MAX_DIMS];
    REQUIRE(weft_trainer_tensor_shape(split.t, raw, &ndim, shape) == WEFT_OK);
    size_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= static_cast<size_t>(shape[d]);
    std::vector<float> zeros(n, 0.0f);
    REQUIRE(weft_trainer_set_gradient(split.t, raw, zeros.data(), zeros.size()) == WEFT_OK);
  }
  REQUIRE_FAILS(weft_trainer_set_gradient(split.t, name.c_str(), gradient.data(), gradient.size() + 1),
                WEFT_ERROR_USAGE, "holds 16385 values but the parameter has 16384");
  REQUIRE_FAILS(weft_trainer_set_gradient(split.t, "no.such", gradient.data(), gradient.size()), WEFT_ERROR_USAGE,
                "no parameter named 'no.such'");
  REQUIRE_FAILS(weft_trainer_set_gradient(split.t, name.c_str(), nullptr, gradient.size()), WEFT_ERROR_USAGE, "NULL");
  REQUIRE(weft_trainer_get_parameter(split.t, name.c_str(), ps.data(), ps.size()) == WEFT_OK);
  REQUIRE(weft_trainer_apply(split.t) == WEFT_OK);
  const char* metrics = nullptr;
  REQUIRE(weft_trainer_metrics(split.t, &metrics) == WEFT_OK);
  const std::string line(metrics);
  const double lr = std::atof(line.c_str() + line.find("\"lr\":") + 5);
  CHECK(line.find("\"grad_norm\":0,") != std::string::npos);
  std::vector<float> after(ps.size());
  REQUIRE(weft_trainer_get_parameter(split.t, name.c_str(), after.data(), after.size()) == WEFT_OK);
  for (std::size_t i = 0; i < after.size(); ++i) {
    const float want = ps[i] - static_cast<float>(lr) * (0.0f + 0.1f * ps[i]);  // tiny.yaml: weight_decay 0.1
    REQUIRE(std::abs(after[i] - want) <= 1e-7f * std::max(1.0f, std::abs(ps[i])));
  }
  REQUIRE_FAILS(weft_trainer_set_gradient(split.t, name.c_str(), gradient.data(), gradient.size()), WEFT_ERROR_USAGE,
                "already applied");
}

TEST_CASE("train.eval_every puts the validation loss into the metrics of the steps it evaluates at") {
  Tiny tiny({"train.eval_every=2", "train.eval_batches=2", "data.valid_fraction=0.1"});
  for (int step = 1; step <= 6; ++step) {
    REQUIRE(weft_trainer_step(tiny.t) == WEFT_OK);
    const char* metrics = nullptr;
    REQUIRE(weft_trainer_metrics(tiny.t, &metrics) == WEFT_OK);
    const std::string line(metrics);
    INFO(line);
    const auto at = line.find("\"val_loss\":");
    CHECK((at != std::string::npos) == (step % 2 == 0));
    if (at != std::string::npos) CHECK(std::atof(line.c_str() + at + 11) > 1.0);
  }
}

TEST_CASE("save, inspect and load a checkpoint, the resumed run repeats the original bit for bit") {
  const auto dir = scratch("ckpt");
  Tiny first;
  for (int i = 0; i < 3; ++i) REQUIRE(weft_trainer_step(first.t) == WEFT_OK);
  REQUIRE(weft_trainer_save(first.t, dir.c_str()) == WEFT_OK);
  REQUIRE(weft_trainer_step(first.t) == WEFT_OK);
  const char* metrics = nullptr;
  REQUIRE(weft_trainer_metrics(first.t, &metrics) == WEFT_OK);
  const std::string expected(metrics);

  char* json = nullptr;
  REQUIRE(weft_checkpoint_inspect((dir / "step_00000003").c_str(), &json) == WEFT_OK);
  const std::string inspected(json);
  weft_free(json);
  CHECK(inspected.find("\"step\":3") != std::string::npos);
  CHECK(inspected.find("\"world_size\":1") != std::string::npos);

  Tiny second;
  int step = 0;
  REQUIRE(weft_trainer_backward(second.t) == WEFT_OK);  // gradients of step 1 of the fresh model ...
  REQUIRE(weft_trainer_load(second.t, dir.c_str(), &step) == WEFT_OK);  // a root: its newest checkpoint
  CHECK(step == 3);
  REQUIRE_FAILS(weft_trainer_apply(second.t), WEFT_ERROR_USAGE, "no gradients to apply");  // ... dropped by the load
  REQUIRE(weft_trainer_step(second.t) == WEFT_OK);
  REQUIRE(weft_trainer_metrics(second.t, &metrics) == WEFT_OK);
  const std::string resumed(metrics);
  CHECK(resumed.substr(0, resumed.find("\"lr\"")) == expected.substr(0, expected.find("\"lr\"")));

  REQUIRE_FAILS(weft_trainer_load(second.t, "/nonexistent/ckpt", &step), WEFT_ERROR_USAGE, "/nonexistent/ckpt");
  REQUIRE_FAILS(weft_trainer_save(second.t, ""), WEFT_ERROR_USAGE, "empty");
  REQUIRE_FAILS(weft_checkpoint_inspect("/nonexistent/ckpt", &json), WEFT_ERROR_USAGE, "/nonexistent/ckpt");
  std::filesystem::remove_all(dir);
}

TEST_CASE("plans come out as weft plan --json prints them") {
  char* json = nullptr;
  const char* zero2[] = {"parallel.zero=2"};
  REQUIRE(weft_plan(kTiny.c_str(), nullptr, zero2, 1, 4, &json) == WEFT_OK);
  const std::string plan(json);
  weft_free(json);
  CHECK(plan.find("\"world_size\":4") != std::string::npos);
  REQUIRE_FAILS(weft_plan(kTiny.c_str(), nullptr, nullptr, 0, 0, &json), WEFT_ERROR_USAGE, "world_size = 0");
  const char* tp3[] = {"parallel.tp=3"};
  REQUIRE_FAILS(weft_plan(kTiny.c_str(), nullptr, tp3, 1, 3, &json), WEFT_ERROR_USAGE, "parallel.tp");

  Tiny tiny;
  REQUIRE(weft_trainer_plan(tiny.t, &json) == WEFT_OK);
  CHECK(std::string(json).find("\"world_size\":1") != std::string::npos);
  weft_free(json);
  weft_free(nullptr);
}

TEST_CASE("every handle function refuses a NULL handle with a usage error naming the call") {
  int value = 0;
  const char* text = nullptr;
  float* data = nullptr;
  int64_t shape[WEFT_MAX_DIMS];
  weft_dtype dtype;
  size_t count;
  char* owned = nullptr;
  weft_work* work = nullptr;
  REQUIRE_FAILS(weft_trainer_step(nullptr), WEFT_ERROR_USAGE, "weft_trainer_step: t is NULL");
  REQUIRE_FAILS(weft_trainer_backward(nullptr), WEFT_ERROR_USAGE, "weft_trainer_backward: t is NULL");
  REQUIRE_FAILS(weft_trainer_apply(nullptr), WEFT_ERROR_USAGE, "weft_trainer_apply: t is NULL");
  REQUIRE_FAILS(weft_trainer_set_gradient(nullptr, "x", data, 0), WEFT_ERROR_USAGE, "weft_trainer_set_gradient");
  REQUIRE_FAILS(weft_trainer_rank(nullptr, &value, &value), WEFT_ERROR_USAGE, "weft_trainer_rank");
  REQUIRE_FAILS(weft_trainer_steps(nullptr, &value, &value), WEFT_ERROR_USAGE, "weft_trainer_steps");
  REQUIRE_FAILS(weft_trainer_metrics(nullptr, &text), WEFT_ERROR_USAGE, "weft_trainer_metrics");
  REQUIRE_FAILS(weft_trainer_tensor_count(nullptr, &count), WEFT_ERROR_USAGE, "weft_trainer_tensor_count");
  REQUIRE_FAILS(weft_trainer_tensor_name(nullptr, 0, &text), WEFT_ERROR_USAGE, "weft_trainer_tensor_name");
  REQUIRE_FAILS(weft_trainer_tensor_shape(nullptr, "x", &value, shape), WEFT_ERROR_USAGE, "weft_trainer_tensor_shape");
  REQUIRE_FAILS(weft_trainer_tensor_dtype(nullptr, "x", &dtype), WEFT_ERROR_USAGE, "weft_trainer_tensor_dtype");
  REQUIRE_FAILS(weft_trainer_get_parameter(nullptr, "x", data, 0), WEFT_ERROR_USAGE, "weft_trainer_get_parameter");
  REQUIRE_FAILS(weft_trainer_set_parameter(nullptr, "x", data, 0), WEFT_ERROR_USAGE, "weft_trainer_set_parameter");
  REQUIRE_FAILS(weft_trainer_get_gradient(nullptr, "x", data, 0), WEFT_ERROR_USAGE, "weft_trainer_get_gradient");
  REQUIRE_FAILS(weft_trainer_parameter_data(nullptr, "x", &data), WEFT_ERROR_USAGE, "weft_trainer_parameter_data");
  REQUIRE_FAILS(weft_trainer_gradient_data(nullptr, "x", &data), WEFT_ERROR_USAGE, "weft_trainer_gradient_data");
  REQUIRE_FAILS(weft_trainer_save(nullptr, "d"), WEFT_ERROR_USAGE, "weft_trainer_save");
  REQUIRE_FAILS(weft_trainer_load(nullptr, "d", &value), WEFT_ERROR_USAGE, "weft_trainer_load");
  REQUIRE_FAILS(weft_trainer_plan(nullptr, &owned), WEFT_ERROR_USAGE, "weft_trainer_plan");
  REQUIRE_FAILS(weft_store_set(nullptr, "k", "v", 1), WEFT_ERROR_USAGE, "weft_store_set");
  REQUIRE_FAILS(weft_store_get(nullptr, "k", 1.0, &owned, &count), WEFT_ERROR_USAGE, "weft_store_get");
  REQUIRE_FAILS(weft_store_add(nullptr, "k", 1, nullptr), WEFT_ERROR_USAGE, "weft_store_add");
  REQUIRE_FAILS(weft_comm_create(nullptr, "g", 0, 1, 1.0, reinterpret_cast<weft_comm**>(&owned)), WEFT_ERROR_USAGE,
                "store is NULL");
  REQUIRE_FAILS(weft_comm_split(nullptr, 0, 0, "g", reinterpret_cast<weft_comm**>(&owned)), WEFT_ERROR_USAGE,
                "weft_comm_split");
  REQUIRE_FAILS(weft_comm_rank(nullptr, &value, &value), WEFT_ERROR_USAGE, "weft_comm_rank");
  REQUIRE_FAILS(weft_all_reduce(nullptr, data, 0, WEFT_FLOAT32, WEFT_SUM, &work), WEFT_ERROR_USAGE, "weft_all_reduce");
  REQUIRE_FAILS(weft_reduce_scatter(nullptr, data, data, 0, WEFT_FLOAT32, WEFT_SUM, &work), WEFT_ERROR_USAGE,
                "weft_reduce_scatter");
  REQUIRE_FAILS(weft_all_gather(nullptr, data, data, 0, WEFT_FLOAT32, &work), WEFT_ERROR_USAGE, "weft_all_gather");
  REQUIRE_FAILS(weft_broadcast(nullptr, data, 0, WEFT_FLOAT32, 0, &work), WEFT_ERROR_USAGE, "weft_broadcast");
  REQUIRE_FAILS(weft_send(nullptr, data, 0, WEFT_FLOAT32, 0, 0, &work), WEFT_ERROR_USAGE, "weft_send");
  REQUIRE_FAILS(weft_recv(nullptr, data, 0, WEFT_FLOAT32, 0, 0, &work), WEFT_ERROR_USAGE, "weft_recv");
  REQUIRE_FAILS(weft_barrier(nullptr, &work), WEFT_ERROR_USAGE, "weft_barrier");
  REQUIRE_FAILS(weft_work_wait(nullptr, 1.0), WEFT_ERROR_USAGE, "weft_work_wait");
  REQUIRE_FAILS(weft_work_test(nullptr, &value), WEFT_ERROR_USAGE, "weft_work_test");
  CHECK(std::string(weft_trainer_error(nullptr)).find("NULL") != std::string::npos);
  CHECK(std::string(weft_comm_error(nullptr)).find("NULL") != std::string::npos);
  CHECK(std::string(weft_store_error(nullptr)).find("NULL") != std::string::npos);
  CHECK(std::string(weft_work_error(nullptr)).find("NULL") != std::string::npos);
  weft_trainer_destroy(nullptr);
  weft_comm_destroy(nullptr);
  weft_store_destroy(nullptr);
  weft_work_destroy(nullptr);
}

TEST_CASE("a file store sets, gets, adds and times out with the missing key named") {
  const auto dir = scratch("store");
  weft_store* store = nullptr;
  REQUIRE(weft_store_create_file(dir.c_str(), &store) == WEFT_OK);
  check_store_round_trip(store);
  char* value = nullptr;
  size_t size = 0;
  REQUIRE_FAILS(weft_store_get(store, "missing", 0.2, &value, &size), WEFT_ERROR_PEER, "missing");
  CHECK(std::string(weft_store_error(store)).find("missing") != std::string::npos);
  REQUIRE_FAILS(weft_store_set(store, nullptr, "v", 1), WEFT_ERROR_USAGE, "key is NULL");
  weft_store_destroy(store);
  weft_store* none = nullptr;
  REQUIRE_FAILS(weft_store_create_file("", &none), WEFT_ERROR_USAGE, "empty");
  std::filesystem::remove_all(dir);
}

TEST_CASE("log lines go to the callback once one is set, and back to stderr after NULL") {
  static std::vector<std::string> lines;
  auto collect = [](int level, const char* message, void*) {
    if (level >= WEFT_LOG_INFO) lines.emplace_back(message);
  };
  REQUIRE(weft_set_log_callback(collect, nullptr) == WEFT_OK);
  {
    Tiny tiny({"train.log_every=1"});
    REQUIRE(weft_trainer_step(tiny.t) == WEFT_OK);
  }
  REQUIRE(weft_set_log_callback(nullptr, nullptr) == WEFT_OK);
  REQUIRE(!lines.empty());
  CHECK(lines.front().rfind("step 1/6 | loss ", 0) == 0);
}
