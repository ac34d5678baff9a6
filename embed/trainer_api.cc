// The C API's trainers, plans and checkpoint inspection: the same calls `weft train`, `weft plan --json` and
// `weft ckpt inspect` make, behind handles.
#include <cstdlib>
#include <cstring>

#include "checkpoint/format.h"
#include "embed/api.h"
#include "parallel/capabilities.h"
#include "parallel/planner.h"
#include "runtime/json_writer.h"
#include "runtime/log.h"

using namespace weft;
using namespace weft::embed;

namespace {

// A config from a file or from text (exactly one), with `--set`-style overrides, checked as every command does.
Config load(const char* path, const char* text, const char* const* overrides, std::size_t n, int world_size) {
  if ((path == nullptr) == (text == nullptr))
    fail_usage("give exactly one of a YAML path and YAML text (got {})", path ? "both" : "neither");
  if (n > 0 && overrides == nullptr) fail_usage("{} overrides announced but the array is NULL", n);
  std::vector<ConfigOverride> parsed;
  for (std::size_t i = 0; i < n; ++i) {
    if (overrides[i] == nullptr) fail_usage("override {} is NULL", i);
    parsed.push_back(parse_override(overrides[i]));
  }
  if (path != nullptr) return load_job_config(path, parsed, world_size);
  Config config = parse_config_text(text, "<yaml text>", parsed, world_size);
  check_layout(config);
  return config;
}

// malloc'd copy for a char** result, freed by weft_free.
char* copy_out(const std::string& text) {
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (out == nullptr) throw std::bad_alloc();
  std::memcpy(out, text.c_str(), text.size() + 1);
  return out;
}

const ParamSpec& spec_of(const weft_trainer* t, const char* name) {
  if (name == nullptr) fail_usage("the tensor name is NULL");
  const ParamLayout& params = t->trainer->model().params();
  if (!params.contains(name)) {
    std::string names;
    for (std::size_t i = 0; i < t->names.size() && i < 4; ++i) names += (i ? ", " : "") + t->names[i];
    fail_usage("no parameter named '{}' on this rank ({} parameters: {}{}; weft_trainer_tensor_name lists them)",
               name, t->names.size(), names, t->names.size() > 4 ? ", ..." : "");
  }
  return params.find(name);
}

void check_count(const ParamSpec& spec, const void* values, std::size_t count) {
  if (values == nullptr) fail_usage("{}: the buffer is NULL", spec.name);
  if (count != static_cast<std::size_t>(spec.numel))
    fail_usage("{}: the buffer holds {} values but the parameter has {} on this rank", spec.name, count, spec.numel);
}

std::string checkpoint_json(const checkpoint::Reader& reader) {
  const auto& m = reader.manifest();
  const auto& l = m.layout();
  JsonWriter json;
  json.begin_object()
      .field("path", reader.dir())
      .field("format", static_cast<std::int64_t>(m.format_version()))
      .field("step", static_cast<std::int64_t>(m.step()))
      .field("samples_consumed", static_cast<std::int64_t>(m.samples_consumed()))
      .field("seed", static_cast<std::int64_t>(m.seed()))
      .field("loss_scale", m.loss_scale());
  json.begin_object("model")
      .field("layers", m.model().layers())
      .field("d_model", m.model().d_model())
      .field("heads", m.model().heads())
      .field("vocab_size", m.model().vocab_size())
      .field("seq_len", m.model().seq_len())
      .end_object();
  json.begin_object("layout")
      .field("world_size", l.world_size())
      .field("dp", l.dp())
      .field("tp", l.tp())
      .field("pp", l.pp())
      .field("zero", l.zero())
      .field("virtual_stages", l.virtual_stages())
      .field("precision", l.precision())
      .end_object();
  json.begin_array("files");
  for (const auto& file : m.files())
    json.begin_object()
        .field("path", file.path())
        .field("rank", file.rank())
        .field("bytes", static_cast<std::int64_t>(file.bytes()))
        .field("checksum", fmt::format("{:016x}", file.checksum()))
        .end_object();
  json.end_array().begin_object("tensors");
  for (const auto& tensor : m.tensors()) {
    json.begin_array(tensor.name());
    for (auto extent : tensor.global_shape()) json.field("", static_cast<std::int64_t>(extent));
    json.end_array();
  }
  json.end_object().end_object();
  return json.str();
}

// After a step's update, what `weft train` does after one: evaluation at train.eval_every (and at train.steps), the
// progress line, checkpoint.every.
void finish_step(weft_trainer& t, StepRecord record) {
  const Config& config = t.trainer->config();
  t.done = record.step;
  const int every = config.train.eval_every;
  if (every > 0 && (record.step % every == 0 || record.step == config.train.steps))
    record.val_loss = t.trainer->evaluate();  // collective: every rank evaluates at the same steps
  t.metrics = step_json(record);
  if (t.rank.rank == 0 &&
      (record.val_loss || record.step % config.train.log_every == 0 || record.step == config.train.steps))
    logger().info("{}{}", progress_line(record, config.train.steps),
                  record.val_loss ? fmt::format(" | val loss {:.4f}", *record.val_loss) : std::string());
  if (config.checkpoint.every > 0 && record.step % config.checkpoint.every == 0)
    t.trainer->save_checkpoint(record.step);
}

}  // namespace

extern "C" {

weft_status weft_trainer_create(const char* yaml_path, const char* yaml_text, const char* const* overrides,
                                size_t n_overrides, weft_trainer** out) {
  if (out == nullptr) return fail_with(nullptr, WEFT_ERROR_USAGE, "weft_trainer_create: out is NULL");
  *out = nullptr;
  auto t = std::make_unique<weft_trainer>();
  const weft_status status = guarded(nullptr, nullptr, [&] {
    t->rank = detect_rank().info;
    set_log_rank(t->rank.rank, t->rank.world_size);
    // Every rank checks the same config before any communicator exists, so a bad one fails them all alike.
    const Config config = load(yaml_path, yaml_text, overrides, n_overrides, t->rank.world_size);
    CommOptions options;
    options.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(config.comm.timeout_s * 1000.0));
    t->device = make_device_for(config, t->rank.local_rank);
    if (t->rank.world_size > 1) t->mpi = mpi_runtime();
    t->world = make_job_world(t->mpi.get(), *t->device, options);
    if (t->mpi) t->peers.emplace(*t->world.host);
    t->groups =
        make_process_groups(t->world.data(), config.parallel, t->world.device ? t->world.host.get() : nullptr);
    t->trainer = std::make_unique<Trainer>(config, t->groups, *t->device);
    for (const ParamSpec& spec : t->trainer->model().params().specs()) t->names.push_back(spec.name);
    // checkpoint.resume as `weft train` honours it (auto: the newest complete checkpoint under checkpoint.dir).
    t->done = t->trainer->restore_checkpoint();
  });
  if (status == WEFT_OK) *out = t.release();
  return status;
}

void weft_trainer_destroy(weft_trainer* trainer) { delete trainer; }

const char* weft_trainer_error(const weft_trainer* trainer) {
  return trainer ? trainer->error.c_str() : "weft_trainer_error: trainer is NULL";
}

weft_status weft_trainer_rank(const weft_trainer* trainer, int* rank, int* world_size) {
  WEFT_REQUIRE_HANDLE(trainer);
  if (rank) *rank = trainer->rank.rank;
  if (world_size) *world_size = trainer->rank.world_size;
  return WEFT_OK;
}

weft_status weft_trainer_steps(const weft_trainer* trainer, int* done, int* planned) {
  WEFT_REQUIRE_HANDLE(trainer);
  if (done) *done = trainer->done;
  if (planned) *planned = trainer->trainer->config().train.steps;
  return WEFT_OK;
}

weft_status weft_trainer_step(weft_trainer* t) {
  WEFT_REQUIRE_HANDLE(t);
  return guarded(&t->error, t->peers ? &*t->peers : nullptr, [&] {
    t->trainer->backward(t->done + 1);
    finish_step(*t, t->trainer->apply());
  });
}

weft_status weft_trainer_backward(weft_trainer* t) {
  WEFT_REQUIRE_HANDLE(t);
  return guarded(&t->error, t->peers ? &*t->peers : nullptr, [&] { t->trainer->backward(t->done + 1); });
}

weft_status weft_trainer_apply(weft_trainer* t) {
  WEFT_REQUIRE_HANDLE(t);
  return guarded(&t->error, t->peers ? &*t->peers : nullptr, [&] { finish_step(*t, t->trainer->apply()); });
}

weft_status weft_trainer_metrics(weft_trainer* t, const char** json) {
  WEFT_REQUIRE_HANDLE(t);
  return guarded(&t->error, nullptr, [&] {
    if (json == nullptr) fail_usage("weft_trainer_metrics: json is NULL");
    if (t->metrics.empty()) fail_usage("no step has run yet: call weft_trainer_step first");
    *json = t->metrics.c_str();
  });
}

weft_status weft_trainer_tensor_count(const weft_trainer* t, size_t* count) {
  WEFT_REQUIRE_HANDLE(t);
  WEFT_REQUIRE_HANDLE(count);
  *count = t->names.size();
  return WEFT_OK;
}

weft_status weft_trainer_tensor_name(const weft_trainer* t, size_t i, const char** name) {
  WEFT_REQUIRE_HANDLE(t);
  WEFT_REQUIRE_HANDLE(name);
  auto* error = const_cast<std::string*>(&t->error);
  return guarded(error, nullptr, [&] {
    if (i >= t->names.size()) fail_usage("tensor index {} is out of range: this rank holds {}", i, t->names.size());
    *name = t->names[i].c_str();
  });
}

weft_status weft_trainer_tensor_shape(const weft_trainer* t, const char* name, int* ndim,
                                      int64_t shape[WEFT_MAX_DIMS]) {
  WEFT_REQUIRE_HANDLE(t);
  return guarded(const_cast<std::string*>(&t->error), nullptr, [&] {
    const ParamSpec& spec = spec_of(t, name);
    if (ndim == nullptr || shape == nullptr) fail_usage("weft_trainer_tensor_shape: ndim or shape is NULL");
    *ndim = static_cast<int>(spec.shape.size());
    for (std::size_t d = 0; d < spec.shape.size() && d < WEFT_MAX_DIMS; ++d) shape[d] = spec.shape[d];
  });
}

weft_status weft_trainer_tensor_dtype(const weft_trainer* t, const char* name, weft_dtype* dtype) {
  WEFT_REQUIRE_HANDLE(t);
  return guarded(const_cast<std::string*>(&t->error), nullptr, [&] {
    spec_of(t, name);
    if (dtype == nullptr) fail_usage("weft_trainer_tensor_dtype: dtype is NULL");
    *dtype = static_cast<weft_dtype>(t->trainer->config().precision.compute);
  });
}

weft_status weft_trainer_get_parameter(weft_trainer* t, const char* name, float* values, size_t count) {
  WEFT_REQUIRE_HANDLE(t);
  return guarded(&t->error, t->peers ? &*t->peers : nullptr, [&] {
    const ParamSpec& spec = spec_of(t, name);
    check_count(spec, values, count);
    t->trainer->read_parameter(spec, values);
  });
}

weft_status weft_trainer_set_parameter(weft_trainer* t, const char* name, const float* values, size_t count) {
  WEFT_REQUIRE_HANDLE(t);
  return guarded(&t->error, nullptr, [&] {
    const ParamSpec& spec = spec_of(t, name);
    check_count(spec, values, count);
    t->trainer->write_parameter(spec, values);
  });
}

weft_status weft_trainer_get_gradient(weft_trainer* t, const char* name, float* values, size_t count) {
  WEFT_REQUIRE_HANDLE(t);
  return guarded(&t->error, t->peers ? &*t->peers : nullptr, [&] {
    const ParamSpec& spec = spec_of(t, name);
    check_count(spec, values, count);
    t->trainer->read_gradient(spec, values);
  });
}

weft_status weft_trainer_set_gradient(weft_trainer* t, const char* name, const float* values, size_t count) {
  WEFT_REQUIRE_HANDLE(t);
  return guarded(&t->error, nullptr, [&] {
    const ParamSpec& spec = spec_of(t, name);
    check_count(spec, values, count);
    t->trainer->write_gradient(spec, values);
  });
}

weft_status weft_trainer_parameter_data(weft_trainer* t, const char* name, float** data) {
  WEFT_REQUIRE_HANDLE(t);
  return guarded(&t->error, nullptr, [&] {
    const ParamSpec& spec = spec_of(t, name);
    if (data == nullptr) fail_usage("weft_trainer_parameter_data: data is NULL");
    std::string why_not;
    *data = t->trainer->parameter_data(spec, &why_not);
    if (*data == nullptr) fail_usage("parameter {} has no fp32 host storage to view: {}; copy it with "
                                     "weft_trainer_get_parameter", spec.name, why_not);
  });
}

weft_status weft_trainer_gradient_data(weft_trainer* t, const char* name, float** data) {
  WEFT_REQUIRE_HANDLE(t);
  return guarded(&t->error, nullptr, [&] {
    const ParamSpec& spec = spec_of(t, name);
    if (data == nullptr) fail_usage("weft_trainer_gradient_data: data is NULL");
    std::string why_not;
    *data = t->trainer->gradient_data(spec, &why_not);
    if (*data == nullptr) fail_usage("the gradient of {} has no fp32 host storage to view: {}", spec.name, why_not);
  });
}

weft_status weft_trainer_save(weft_trainer* t, const char* root) {
  WEFT_REQUIRE_HANDLE(t);
  return guarded(&t->error, t->peers ? &*t->peers : nullptr, [&] {
    if (root == nullptr || *root == '\0') fail_usage("weft_trainer_save: the directory is NULL or empty");
    t->trainer->save_checkpoint_to(root, t->done);
  });
}

weft_status weft_trainer_load(weft_trainer* t, const char* path, int* step) {
  WEFT_REQUIRE_HANDLE(t);
  return guarded(&t->error, t->peers ? &*t->peers : nullptr, [&] {
    if (path == nullptr || *path == '\0') fail_usage("weft_trainer_load: the path is NULL or empty");
    t->done = t->trainer->restore_checkpoint_from(path);
    t->metrics.clear();
    if (step) *step = t->done;
  });
}

weft_status weft_trainer_plan(const weft_trainer* t, char** json) {
  WEFT_REQUIRE_HANDLE(t);
  return guarded(const_cast<std::string*>(&t->error), nullptr, [&] {
    if (json == nullptr) fail_usage("weft_trainer_plan: json is NULL");
    const Config& config = t->trainer->config();
    *json = copy_out(plan_json(make_plan(config, t->rank.world_size), config));
  });
}

weft_status weft_plan(const char* yaml_path, const char* yaml_text, const char* const* overrides, size_t n_overrides,
                      int world_size, char** json) {
  return guarded(nullptr, nullptr, [&] {
    if (json == nullptr) fail_usage("weft_plan: json is NULL");
    if (world_size < 1) fail_usage("weft_plan: world_size = {}: a job has at least one rank", world_size);
    const Config config = load(yaml_path, yaml_text, overrides, n_overrides, world_size);
    *json = copy_out(plan_json(make_plan(config, world_size), config));
  });
}

weft_status weft_checkpoint_inspect(const char* path, char** json) {
  return guarded(nullptr, nullptr, [&] {
    if (path == nullptr || json == nullptr) fail_usage("weft_checkpoint_inspect: path or json is NULL");
    const checkpoint::Reader reader(path);
    reader.verify_all();
    *json = copy_out(checkpoint_json(reader));
  });
}

}  // extern "C"
