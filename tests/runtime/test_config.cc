// Tests for the YAML config loader: every key, every kind of bad value, --set overrides and the invariants.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "parallel/capabilities.h"
#include "runtime/config.h"
#include "runtime/error.h"
#include "runtime/rng.h"

namespace weft {
namespace {

// A file that exists for the duration of one test (data.path must name a real file).
class TempFile {
 public:
  explicit TempFile(const std::string& name, const std::string& contents = "hello")
      : path_(std::filesystem::temp_directory_path() / (std::to_string(::getpid()) + "_" + name)) {
    std::ofstream(path_) << contents;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// What a user's config goes through before anything starts: the loader, then the layout check (parallel/
// capabilities.h), which together produce every config error.
Config parse_and_check(const std::string& yaml, const std::string& name, const std::vector<ConfigOverride>& overrides,
                       int world_size) {
  Config config = parse_config_text(yaml, name, overrides, world_size);
  check_layout(config);
  return config;
}

Config parse(const std::string& yaml, const std::vector<ConfigOverride>& overrides = {}, int world_size = 1) {
  return parse_and_check(yaml, "run.yaml", overrides, world_size);
}

// The usage error that parsing `yaml` throws; fails the test when it parses or throws anything else.
Error usage_error(const std::string& yaml, const std::vector<ConfigOverride>& overrides = {}, int world_size = 1) {
  try {
    parse_and_check(yaml, "bad.yaml", overrides, world_size);
  } catch (const Error& error) {
    return error;
  }
  FAIL("expected a usage error for:\n" << yaml);
  return Error(ErrorKind::kInternal, "unreachable");
}

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

}  // namespace

TEST_CASE("a config with every key set round-trips into Config") {
  TempFile tokens("weft_test_config_tokens.bin");
  std::string yaml = R"(# every key, none at its default
model: {layers: 3, d_model: 96, heads: 6, vocab_size: 1000, seq_len: 48}
train:
  steps: 50
  global_batch: 24
  micro_batch: 3
  lr: 1.5e-3
  warmup_steps: 5
  min_lr_ratio: 0.05
  weight_decay: 0.01
  grad_clip: 0.5
  beta1: 0.8
  beta2: 0.99
  eps: 1.0e-6
  seed: 18446744073709551615
  log_every: 7
  recompute: block
data:
  source: tokens
  path: )" + tokens.path() +
                     R"(
parallel: {dp: 2, tp: 2, pp: 2, zero: 2, schedule: interleaved, microbatches: 4, virtual_stages: 2,
           sequence_parallel: true}
precision: {compute: bf16}
comm: {bucket_mb: 12.5, overlap: false, timeout_s: 60}
device: cpu
checkpoint: {dir: "ckpt/run 1", every: 25, keep: 3, resume: never}
)";
  Config config = parse_config_text(yaml, "configs/all.yaml", {}, 8);
  CHECK(config.source_path == "configs/all.yaml");
  CHECK(config.model.layers == 3);
  CHECK(config.model.d_model == 96);
  CHECK(config.model.heads == 6);
  CHECK(config.model.vocab_size == 1000);
  CHECK(config.model.seq_len == 48);
  CHECK(config.train.steps == 50);
  CHECK(config.train.global_batch == 24);
  CHECK(config.train.micro_batch == 3);
  CHECK(config.train.lr == 1.5e-3);
  CHECK(config.train.warmup_steps == 5);
  CHECK(config.train.min_lr_ratio == 0.05);
  CHECK(config.train.weight_decay == 0.01);
  CHECK(config.train.grad_clip == 0.5);
  CHECK(config.train.beta1 == 0.8);
  CHECK(config.train.beta2 == 0.99);
  CHECK(config.train.eps == 1.0e-6);
  CHECK(config.train.seed == 18446744073709551615ull);
  CHECK(config.train.log_every == 7);
  CHECK(config.train.recompute == Recompute::kBlock);
  CHECK(config.data.source == DataSource::kTokens);
  CHECK(config.data.path == tokens.path());
  CHECK(config.parallel.dp == 2);
  CHECK(config.parallel.tp == 2);
  CHECK(config.parallel.pp == 2);
  CHECK(config.parallel.zero == 2);
  CHECK(config.parallel.schedule == PipelineSchedule::kInterleaved);
  CHECK(config.parallel.microbatches == 4);
  CHECK(config.parallel.virtual_stages == 2);
  CHECK(config.parallel.sequence_parallel);
  CHECK(config.precision.compute == DType::kBF16);
  CHECK(config.comm.bucket_mb == 12.5);
  CHECK_FALSE(config.comm.overlap);
  CHECK(config.comm.timeout_s == 60.0);
  CHECK(config.device == DeviceChoice::kCpu);
  CHECK(config.checkpoint.dir == "ckpt/run 1");
  CHECK(config.checkpoint.every == 25);
  CHECK(config.checkpoint.keep == 3);
  CHECK(config.checkpoint.resume == "never");
  CHECK(config.accumulation_steps() == 4);  // 24 / (micro_batch 3 * dp 2)
}

TEST_CASE("every key is optional and an absent or empty section keeps the defaults") {
  for (const std::string yaml : {"model: {}\n", "model:\ntrain:\n", "device: auto\ncomm: {}\n"}) {
    Config config = parse(yaml);
    Config defaults;
    CHECK(config.model.layers == defaults.model.layers);
    CHECK(config.train.steps == defaults.train.steps);
    CHECK(config.train.lr == defaults.train.lr);
    CHECK(config.parallel.dp == 1);            // auto, resolved for a 1-rank world
    CHECK(config.parallel.microbatches == 0);  // auto stays 0: the engine resolves it
    CHECK(config.checkpoint.resume == "auto");
    CHECK(config.device == DeviceChoice::kAuto);
  }
}

TEST_CASE("values are read the way YAML spells them") {
  Config config = parse(R"(
train: {lr: "2e-4", seed: +7, steps: '12'}
parallel: {sequence_parallel: yes, microbatches: auto}
comm: {overlap: Off, bucket_mb: 1}
model: {d_model: 128, heads: 8}
)");
  CHECK(config.train.lr == 2e-4);
  CHECK(config.train.seed == 7);
  CHECK(config.train.steps == 12);
  CHECK(config.parallel.sequence_parallel);
  CHECK(config.parallel.microbatches == 0);
  CHECK_FALSE(config.comm.overlap);
  CHECK(config.comm.bucket_mb == 1.0);
  CHECK(config.model.d_model == 128);
}

TEST_CASE("an alias reads as the scalar it names, and an alias of a section is refused") {
  Config config = parse("model: {d_model: &width 128, heads: 8}\ncomm: {bucket_mb: *width}\n");
  CHECK(config.comm.bucket_mb == 128.0);
  Error error = usage_error("comm: &c {timeout_s: 30}\ntrain: *c\n");
  CHECK(std::string(error.what()) == "bad.yaml:2:8: train = *alias: expected a map of train keys");
}

// One bad config: the text, the world size, where the message must point ("" when nothing in the file
// is to blame) and the key path it must name.
struct BadConfig {
  const char* yaml;
  int world_size;
  const char* location;
  const char* key;
  const char* detail;  // a further piece of the message that must be there
};

TEST_CASE("each bad value is a usage error naming file, line:column and key path") {
  const std::vector<BadConfig> cases = {
      {"model:\n  layers: 2.5\n", 1, "2:11", "model.layers = 2.5", "expected an integer >= 1"},
      {"model:\n  layers: 0\n", 1, "2:11", "model.layers = 0", "expected an integer >= 1"},
      {"model:\n  d_model: -4\n", 1, "2:12", "model.d_model = -4", "expected an integer >= 1"},
      {"model:\n  heads: many\n", 1, "2:10", "model.heads = many", "expected an integer"},
      {"model:\n  vocab_size: 1\n", 1, "2:15", "model.vocab_size = 1", "expected an integer >= 2"},
      {"model:\n  seq_len: {a: 1}\n", 1, "2:12", "model.seq_len = {...}", "expected an integer >= 1"},
      {"train:\n  steps: [1, 2]\n", 1, "2:10", "train.steps = [...]", "expected an integer >= 1"},
      {"train:\n  steps:\n", 1, "2:3", "train.steps = (empty)", "expected an integer >= 1"},
      {"train:\n  lr: abc\n", 1, "2:7", "train.lr = abc", "expected a number"},
      {"train:\n  lr: 0\n", 1, "2:7", "train.lr = 0", "expected a number > 0"},
      {"train:\n  lr: .nan\n", 1, "2:7", "train.lr = .nan", "expected a number > 0"},
      {"train: {weight_decay: -0.1}\n", 1, "1:23", "train.weight_decay = -0.1", "expected a number >= 0"},
      {"train: {grad_clip: -1}\n", 1, "1:20", "train.grad_clip = -1", "expected a number >= 0"},
      {"train: {warmup_steps: -1}\n", 1, "1:23", "train.warmup_steps = -1", "expected an integer >= 0"},
      {"train: {beta1: 1.0}\n", 1, "1:16", "train.beta1 = 1.0", "expected a number in [0, 1)"},
      {"train: {beta2: -0.5}\n", 1, "1:16", "train.beta2 = -0.5", "expected a number in [0, 1)"},
      {"train: {eps: 0}\n", 1, "1:14", "train.eps = 0", "expected a number > 0"},
      {"train: {seed: -1}\n", 1, "1:15", "train.seed = -1", "expected an integer in 0..18446744073709551615"},
      {"train: {log_every: 0}\n", 1, "1:20", "train.log_every = 0", "expected an integer >= 1"},
      {"train: {min_lr_ratio: 1.5}\n", 1, "1:23", "train.min_lr_ratio = 1.5", "expected a number in [0, 1]"},
      {"train: {recompute: full}\n", 1, "1:20", "train.recompute = full", "expected one of none or block"},
      {"train: {micro_batch: 99999999999}\n", 1, "1:22", "train.micro_batch = 99999999999",
       "expected an integer in 1..2147483647"},
      {"parallel:\n  zero: 4\n", 1, "2:9", "parallel.zero = 4", "expected an integer in 0..3"},
      {"parallel:\n  tp: 0\n", 1, "2:7", "parallel.tp = 0", "expected an integer >= 1"},
      {"parallel:\n  pp: two\n", 1, "2:7", "parallel.pp = two", "expected an integer >= 1"},
      {"parallel:\n  dp: automatic\n", 1, "2:7", "parallel.dp = automatic", "expected an integer >= 1 or auto"},
      {"parallel:\n  schedule: 1fb1\n", 1, "2:13", "parallel.schedule = 1fb1", "did you mean 1f1b?"},
      {"parallel:\n  virtual_stages: 0\n", 1, "2:19", "parallel.virtual_stages = 0", "expected an integer >= 1"},
      {"parallel:\n  sequence_parallel: maybe\n", 1, "2:22", "parallel.sequence_parallel = maybe",
       "expected true or false"},
      {"precision:\n  compute: fp8\n", 1, "2:12", "precision.compute = fp8", "expected one of fp32, bf16 or fp16"},
      {"comm:\n  bucket_mb: 0\n", 1, "2:14", "comm.bucket_mb = 0", "expected a number > 0"},
      {"comm:\n  timeout_s: -5\n", 1, "2:14", "comm.timeout_s = -5", "expected a number in [0.1, 604800]"},
      {"comm:\n  overlap: 2\n", 1, "2:12", "comm.overlap = 2", "expected true or false"},
      {"device: tpu\n", 1, "1:9", "device = tpu", "expected one of auto, cpu or cuda"},
      {"device: {kind: cpu}\n", 1, "1:9", "device = {...}", "expected one of auto, cpu or cuda"},
      {"checkpoint:\n  every: -1\n", 1, "2:10", "checkpoint.every = -1", "expected an integer >= 0"},
      {"checkpoint:\n  keep: 0\n", 1, "2:9", "checkpoint.keep = 0", "expected an integer >= 1"},
      {"checkpoint:\n  resume: \"\"\n", 1, "2:11", "checkpoint.resume = \"\"", "auto, never or a checkpoint directory"},
      {"data:\n  source: hdf5\n", 1, "2:11", "data.source = hdf5", "expected one of builtin, text or tokens"},
      {"train: 5\n", 1, "1:8", "train = 5", "expected a map of train keys"},
      {"parallel: [1, 2]\n", 1, "1:11", "parallel = [...]", "expected a map of parallel keys"},
      {"train:\n  stpes: 5\n", 1, "2:3", "train.stpes", "unknown key; did you mean train.steps?"},
      {"train:\n  steps: 5\n  steps: 6\n", 1, "3:3", "train.steps", "duplicate key (first at line 2, column 3)"},
      // Invariants: the message points at the key to change and names the values involved.
      {"model:\n  d_model: 64\n  heads: 5\n", 1, "3:10", "model.heads = 5",
       "d_model (64) must be divisible by heads; try heads = 4 or 8"},
      {"model:\n  d_model: 256\n  heads: 8\nparallel:\n  tp: 1\n  pp: 1\n  tp: 3\n", 3, "7:3", "parallel.tp",
       "duplicate key"},
      {"model:\n  d_model: 256\n  heads: 8\ntrain: {global_batch: 12}\nparallel:\n  pp: 1\n  tp: 3\n", 3, "7:7",
       "parallel.tp = 3", "d_model (256) and heads (8) must be divisible by tp; try tp = 2, 4 or 8"},
      {"model:\n  layers: 3\nparallel:\n  pp: 2\n", 2, "4:7", "parallel.pp = 2",
       "layers (3) * virtual_stages (1) = 3 must be divisible by pp; try pp = 1 or 3"},
      {"parallel:\n  dp: 2\n", 4, "2:7", "parallel.dp = 2",
       "dp (2) * tp (1) * pp (1) = 2 must equal the world size (4); try dp = 4 or dp = auto"},
      {"parallel:\n  tp: 4\n", 6, "", "parallel.dp = auto",
       "needs the world size (6) to be divisible by tp (4) * pp (1) = 4"},
      {"train:\n  global_batch: 30\n  micro_batch: 4\n", 1, "2:17", "train.global_batch = 30",
       "global_batch = micro_batch * accumulation * dp must be a multiple of micro_batch (4) * dp (1) = 4; "
       "try global_batch = 28, or micro_batch = 3 or 5"},
      {"train: {global_batch: 16, micro_batch: 4}\n", 8, "1:23", "train.global_batch = 16",
       "micro_batch (4) * dp (8) = 32; try global_batch = 32"},
      {"parallel:\n  schedule: interleaved\n", 1, "2:13", "parallel.schedule = interleaved",
       "needs parallel.virtual_stages > 1"},
      {"parallel:\n  virtual_stages: 2\n", 1, "2:19", "parallel.virtual_stages = 2",
       "needs parallel.schedule = interleaved (it is 1f1b)"},
      {"data:\n  source: text\n", 1, "2:11", "data.source = text", "needs data.path"},
      {"data:\n  source: tokens\n  path: /nonexistent/weft/x.bin\n", 1, "3:9", "data.path = /nonexistent/weft/x.bin",
       "No such file or directory"},
      {"data:\n  source: text\n  path: /tmp\n", 1, "3:9", "data.path = /tmp", "is a directory"},
      {"data:\n  path: corpus.txt\n", 1, "2:9", "data.path = corpus.txt", "builtin"},
      {"model:\n  vocab_size: 100\n", 1, "2:15", "model.vocab_size = 100",
       "data.source builtin uses byte-level tokens (0..255), so vocab_size must be >= 256"},
  };
  REQUIRE(cases.size() >= 25);
  for (const BadConfig& bad : cases) {
    INFO("config:\n" << bad.yaml);
    Error error = usage_error(bad.yaml, {}, bad.world_size);
    std::string message = error.what();
    INFO("message: " << message);
    CHECK(error.kind() == ErrorKind::kUsage);
    CHECK(error.exit_code() == 2);
    std::string where = std::string("bad.yaml") + (*bad.location ? ":" : "") + bad.location + ": ";
    CHECK(starts_with(message, where + bad.key));
    CHECK(message.find(bad.detail) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
  }
}

TEST_CASE("the tp example from style.md reads exactly as documented") {
  Error error = usage_error(
      "model:\n  d_model: 256\n  heads: 8\ntrain: {global_batch: 12}\nparallel:\n  pp: 1\n  tp: 3\n", {}, 3);
  CHECK(std::string(error.what()) ==
        "bad.yaml:7:7: parallel.tp = 3: d_model (256) and heads (8) must be divisible by tp; try tp = 2, 4 or 8");
}

TEST_CASE("a YAML syntax error is a usage error with its line and column") {
  Error error = usage_error("model:\n  layers: 2\ntrain: {steps: 5\n");
  std::string message = error.what();
  CHECK(error.kind() == ErrorKind::kUsage);
  CHECK(starts_with(message, "bad.yaml:"));
  CHECK(message.find("invalid YAML") != std::string::npos);
  std::string tabs = usage_error("model:\n\tlayers: 2\n").what();
  CHECK(starts_with(tabs, "bad.yaml:2:"));
  CHECK(tabs.find("line 2 is indented with a tab") != std::string::npos);
}

TEST_CASE("an empty file or a top level that is not a map is a usage error") {
  for (const std::string yaml : {"", "# nothing but a comment\n", "---\n", "~\n"}) {
    Error error = usage_error(yaml);
    CHECK(error.kind() == ErrorKind::kUsage);
    CHECK(std::string(error.what()).find("the config is empty") != std::string::npos);
  }
  CHECK(std::string(usage_error("42\n").what()) ==
        "bad.yaml:1:1: the top level must be a map of sections (model, train, ...), found '42'");
  CHECK(std::string(usage_error("- model\n- train\n").what()) ==
        "bad.yaml:1:1: the top level must be a map of sections (model, train, ...), found a list");
  CHECK(starts_with(usage_error("model: {}\n---\ntrain: {}\n").what(), "bad.yaml:2:1: a config is one YAML document"));
}

TEST_CASE("an unknown key is an error that suggests the closest key") {
  CHECK(std::string(usage_error("train:\n  stpes: 5\n").what()) ==
        "bad.yaml:2:3: train.stpes: unknown key; did you mean train.steps?");
  CHECK(std::string(usage_error("trian:\n  steps: 5\n").what()) ==
        "bad.yaml:1:1: trian: unknown section; did you mean train?");
  CHECK(std::string(usage_error("model: {layers: 2}\ntrain:\n  tp: 2\n").what()) ==
        "bad.yaml:3:3: train.tp: unknown key; did you mean parallel.tp?");
  CHECK(std::string(usage_error("steps: 5\n").what()) ==
        "bad.yaml:1:1: steps: unknown section; did you mean train.steps?");
  CHECK(std::string(usage_error("devise: cpu\n").what()) ==
        "bad.yaml:1:1: devise: unknown section; did you mean device?");
  // Nothing close: the message lists what would have been accepted.
  CHECK(std::string(usage_error("model:\n  colour: red\n").what()) ==
        "bad.yaml:2:3: model.colour: unknown key; model takes layers, d_model, heads, vocab_size, family, kv_heads, "
        "ffn_hidden, rope_theta, norm_eps, tie_embeddings, seq_len");
  CHECK(std::string(usage_error("optimizer: {}\n").what()) ==
        "bad.yaml:1:1: optimizer: unknown section; expected one of model, train, data, parallel, precision, comm, "
        "checkpoint, cluster or device");
}

TEST_CASE("a --set override beats the file, a later --set wins, and values are read as YAML") {
  std::string yaml = "train:\n  steps: 10\n  lr: 1.0e-3\ncomm:\n  overlap: true\n";
  Config config = parse(
      yaml, {parse_override("train.steps=20"), parse_override("comm.overlap=false"), parse_override("train.steps=30"),
             parse_override("parallel.zero=3"), parse_override("checkpoint.dir=runs/a=b"),
             parse_override("device=cuda"), parse_override(" parallel.dp =auto")});
  CHECK(config.train.steps == 30);
  CHECK(config.train.lr == 1.0e-3);  // untouched by the overrides
  CHECK_FALSE(config.comm.overlap);
  CHECK(config.parallel.zero == 3);
  CHECK(config.checkpoint.dir == "runs/a=b");
  CHECK(config.device == DeviceChoice::kCuda);
  CHECK(config.parallel.dp == 1);
}

TEST_CASE("parse_override splits at the first '=' and rejects malformed assignments") {
  ConfigOverride parsed = parse_override("parallel.zero=3");
  CHECK(parsed.key == "parallel.zero");
  CHECK(parsed.value == "3");
  CHECK(parse_override("data.path=a=b").value == "a=b");
  CHECK(parse_override("checkpoint.dir=").value.empty());
  for (const std::string bad : {"parallel.zero", "=3", " =3", ""}) {
    try {
      parse_override(bad);
      FAIL("parse_override accepted '" << bad << "'");
    } catch (const Error& error) {
      CHECK(error.kind() == ErrorKind::kUsage);
      CHECK(starts_with(error.what(), "--set " + bad + ": "));
    }
  }
}

TEST_CASE("a bad --set value is reported against the --set, without a file position") {
  auto override_error = [](const std::string& assignment) {
    return std::string(usage_error("train: {steps: 5}\n", {parse_override(assignment)}).what());
  };
  CHECK(override_error("parallel.zero=9") == "--set parallel.zero=9: parallel.zero = 9: expected an integer in 0..3");
  CHECK(override_error("train.lr=abc") == "--set train.lr=abc: train.lr = abc: expected a number > 0");
  CHECK(override_error("train.steps={a: 1}") ==
        "--set train.steps={a: 1}: train.steps = {...}: expected an integer >= 1");
  CHECK(override_error("train.stpes=5") == "--set train.stpes=5: train.stpes: unknown key; did you mean train.steps?");
  CHECK(override_error("zero=3") == "--set zero=3: zero: unknown key; did you mean parallel.zero?");
  CHECK(override_error("trian.steps=3") == "--set trian.steps=3: trian.steps: unknown key; did you mean train.steps?");
  CHECK(override_error("train=3") ==
        "--set train=3: train is a section; set one key inside it, e.g. --set train.steps=...");
  // An override that breaks an invariant is blamed on the --set, not on the file.
  CHECK(override_error("parallel.tp=3") ==
        "--set parallel.tp=3: parallel.tp = 3: d_model (64) and heads (4) must be divisible by tp; try tp = 2 or 4");
}

TEST_CASE("dp = auto resolves to world_size / (tp * pp) and dp * tp * pp must equal the world size") {
  const std::string model = "model: {layers: 4, d_model: 64, heads: 8}\ntrain: {global_batch: 16, micro_batch: 2}\n";
  struct Layout {
    int tp, pp;
  };
  for (int world : {1, 2, 4, 8}) {
    for (Layout layout : {Layout{1, 1}, Layout{2, 1}, Layout{1, 2}, Layout{2, 2}, Layout{4, 2}}) {
      std::string yaml = model + fmt::format("parallel: {{tp: {}, pp: {}}}\n", layout.tp, layout.pp);
      INFO("world " << world << ", tp " << layout.tp << ", pp " << layout.pp);
      if (world % (layout.tp * layout.pp) == 0) {
        Config config = parse(yaml, {}, world);
        CHECK(config.parallel.dp == world / (layout.tp * layout.pp));
        CHECK(config.parallel.dp * config.parallel.tp * config.parallel.pp == world);
        CHECK(config.accumulation_steps() * config.train.micro_batch * config.parallel.dp == 16);
        // The explicit value is accepted, and any other is refused naming all four numbers.
        CHECK(parse(yaml, {parse_override(fmt::format("parallel.dp={}", config.parallel.dp))}, world).parallel.dp ==
              config.parallel.dp);
        std::string wrong = fmt::format("parallel.dp={}", config.parallel.dp + 1);
        std::string message = usage_error(yaml, {parse_override(wrong)}, world).what();
        CHECK(message.find(fmt::format("dp ({}) * tp ({}) * pp ({}) = {} must equal the world size ({})",
                                       config.parallel.dp + 1, layout.tp, layout.pp,
                                       (config.parallel.dp + 1) * layout.tp * layout.pp, world)) != std::string::npos);
      } else {
        std::string message = usage_error(yaml, {}, world).what();
        CHECK(starts_with(message, "bad.yaml: parallel.dp = auto: "));
        CHECK(message.find(fmt::format("world size ({})", world)) != std::string::npos);
      }
    }
  }
}

TEST_CASE("a missing config file is a usage error naming the file and the reason") {
  try {
    load_config("/nonexistent/weft/run.yaml", {}, 1);
    FAIL("load_config accepted a missing file");
  } catch (const Error& error) {
    CHECK(error.kind() == ErrorKind::kUsage);
    CHECK(std::string(error.what()) == "/nonexistent/weft/run.yaml: cannot read config: No such file or directory");
  }
}

TEST_CASE("load_config reads a file and records where it came from") {
  TempFile file("weft_test_config.yaml", "train:\n  steps: 7\n  lr: 0.5\n");
  Config config = load_config(file.path(), {parse_override("train.lr=0.01")}, 1);
  CHECK(config.source_path == file.path());
  CHECK(config.train.steps == 7);
  CHECK(config.train.lr == 0.01);
  try {
    load_config(file.path(), {parse_override("train.lr=x")}, 1);
    FAIL("a bad value was accepted");
  } catch (const Error& error) {
    CHECK(std::string(error.what()) == "--set train.lr=x: train.lr = x: expected a number > 0");
  }
}

TEST_CASE("huge and deeply nested documents are usage errors, not crashes") {
  const int kLong = 100000;
  const int kDeep = 10000;
  std::string long_list = "train:\n  steps: [";
  for (int i = 0; i < kLong; ++i) long_list += i ? ", 1" : "1";
  long_list += "]\n";
  std::string block_list = "- 1\n";
  for (int i = 1; i < kLong; ++i) block_list += "- 1\n";
  std::string many_keys = "model:\n";
  for (int i = 0; i < kLong; ++i) many_keys += fmt::format("  key{}: {}\n", i, i);
  std::string deep_flow = "model:\n  layers: " + std::string(kDeep, '[') + std::string(kDeep, ']') + "\n";
  std::string deep_top = std::string(kDeep, '{') + std::string(kDeep, '}') + "\n";
  std::string deep_block = "train:\n  steps:\n";
  for (int i = 0; i < kDeep; ++i) deep_block += std::string(4 + i, ' ') + "a:\n";  // 50 MB of indentation
  std::string huge_scalar = "data:\n  source: " + std::string(1 << 20, 'x') + "\n";

  struct Case {
    const char* name;
    const std::string& yaml;
    const char* expected_start;
  };
  for (const Case& c : {Case{"100k-element list", long_list, "bad.yaml:2:10: train.steps = [...]"},
                        Case{"100k-element top-level list", block_list, "bad.yaml:1:1: the top level must be a map"},
                        Case{"100k keys", many_keys, "bad.yaml:2:3: model.key0: unknown key"},
                        Case{"10k-deep flow nesting", deep_flow, "bad.yaml:2:11: model.layers = [...]"},
                        Case{"10k-deep top level", deep_top, "bad.yaml:1:2: expected a key name"},
                        Case{"10k-deep block nesting", deep_block, "bad.yaml:3:5: train.steps = {...}"},
                        Case{"1 MB scalar", huge_scalar, "bad.yaml:2:11: data.source = xxxx"}}) {
    Error error = usage_error(c.yaml);
    INFO(c.name << ": " << error.what());
    CHECK(error.kind() == ErrorKind::kUsage);
    CHECK(starts_with(error.what(), c.expected_start));
    CHECK(std::string(error.what()).size() < 400);  // values are truncated in messages
  }
  // The same shapes through --set: yaml-cpp's own depth limit ends the parse and the text is refused.
  std::string deep_value = "train.steps=" + std::string(kDeep, '[') + std::string(kDeep, ']');
  CHECK(usage_error("{}\n", {parse_override(deep_value)}).kind() == ErrorKind::kUsage);
}


TEST_CASE("randomly damaged configs are usage errors or valid configs, never crashes") {
  const std::string good =
      "model: {layers: 2, d_model: 64, heads: 4, vocab_size: 256, seq_len: 64}\n"
      "train: {steps: 10, global_batch: 16, micro_batch: 4, lr: 3.0e-3}\n"
      "parallel: {dp: auto, tp: 1, pp: 1, zero: 0}\ncomm: {bucket_mb: 25, overlap: true}\n";
  const std::uint64_t key = weft::rng_key(3, "config fuzz");
  for (std::uint64_t trial = 0; trial < 500; ++trial) {
    std::string text = good;
    const weft::Philox4 r = weft::philox4x32(key, trial);
    const std::size_t at = r.v[1] % text.size();
    static const char kNoise[] = "{}[]:,-&*!|>'\"%@`#\n\t 0123abc";
    if (r.v[0] % 2) text[at] = kNoise[r.v[2] % (sizeof kNoise - 1)];
    else text.insert(at, std::string(1 + r.v[3] % 4, kNoise[r.v[2] % (sizeof kNoise - 1)]));
    try {
      weft::parse_config_text(text, "fuzz.yaml", {}, 1);
    } catch (const weft::Error& e) {
      REQUIRE(e.kind() == weft::ErrorKind::kUsage);
    }
  }
}

TEST_CASE("a YAML error that quotes a newline or NUL is still one line (fuzz finding)") {
  // fuzz/regressions/config/yaml_error_quotes_a_newline: yaml-cpp's message quoted the bad character itself.
  const std::string text("model:\0\nmodel: _\x01# The demo", 27);
  Error error = usage_error(text);
  CHECK_THAT(error.what(), Catch::StartsWith("bad.yaml:") && Catch::Contains("invalid YAML"));
  CHECK(std::string(error.what()).find('\n') == std::string::npos);
}

TEST_CASE("comm.timeout_s must lie between 0.1 and 604800 s: no zero, negative or unrepresentable deadline") {
  for (const char* value : {"0.0005", "0.09", "1e16", "604801"}) {
    Error error = usage_error("train: {steps: 5}\n", {{"comm.timeout_s", value}});
    INFO(error.what());
    CHECK_THAT(error.what(), Catch::Contains("expected a number in [0.1, 604800]"));
  }
  CHECK(parse("train: {steps: 5}\n", {{"comm.timeout_s", "0.1"}}).comm.timeout_s == 0.1);
  CHECK(parse("train: {steps: 5}\n", {{"comm.timeout_s", "604800"}}).comm.timeout_s == 604800.0);
}

TEST_CASE("a config path that is not a regular file, or is larger than 1 MiB, is refused unread") {
  for (const char* device : {"/dev/zero", "/dev/urandom"}) {
    try {
      load_config(device, {}, 1);
      FAIL("expected a refusal");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kUsage);
      CHECK_THAT(e.what(), Catch::Contains(std::string(device) + ": cannot read config: it is a character device"));
    }
  }
  CHECK_THROWS_WITH(load_config("/tmp", {}, 1), Catch::Contains("/tmp: cannot read config: it is a directory"));
}
}  // namespace weft
