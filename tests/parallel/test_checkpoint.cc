// Checkpoints: resuming is bit-identical, a checkpoint loads under any other layout with bit-equal states,
// and damaged checkpoints are refused before anything changes.
#include <catch2/catch.hpp>

#include "model/gpt_layout.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "checkpoint/format.h"
#include "runtime/error.h"
#include "runtime/rng.h"
#include "tests/parallel/thread_run.h"

using namespace weft;
using namespace weft::testing;
namespace fs = std::filesystem;

namespace {

std::string fresh_dir(const std::string& name) {
  const std::string dir = "/tmp/weft_ckpt_test_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Trains `ranks` thread-ranks up to `last_step`, resuming from `dir` when it holds a checkpoint and saving there
// at `save_at` (0: never). Returns rank 0's loss per step.
std::map<int, double> run(int ranks, std::vector<ConfigOverride> overrides, const std::string& dir, int last_step,
                          int save_at) {
  overrides.push_back({"checkpoint.dir", dir});
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, ranks);
  auto world = make_thread_group(ranks);
  std::map<int, double> losses;
  std::mutex mutex;
  run_on_threads(world, [&](Communicator& comm) {
    ProcessGroups groups = make_process_groups(comm, config.parallel);
    auto device = make_cpu_device();
    Trainer trainer(config, groups, *device);
    const int resumed = trainer.restore_checkpoint();
    if (resumed == save_at && save_at > 0) trainer.save_checkpoint(save_at);  // re-save what was loaded
    for (int step = resumed + 1; step <= last_step; ++step) {
      const double loss = trainer.train_step(step).loss;
      if (comm.rank() == 0) {
        std::lock_guard lock(mutex);
        losses[step] = loss;
      }
      if (step == save_at) trainer.save_checkpoint(step);
    }
  });
  return losses;
}

// Opens `ckpt` and reads the first run of shard file `file`, which reads and checks that file.
void read_first_run(const std::string& ckpt, int file = 0) {
  const checkpoint::Reader reader(ckpt);
  const checkpoint::Run& run = reader.manifest().files(file).runs(0);
  std::vector<float> values(static_cast<std::size_t>(run.count()));
  reader.read(run.tensor(), run.state(), run.global_start(), run.count(), values.data());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Every saved value of every tensor's real elements, bit for bit.
bool same_states(const std::string& a_dir, const std::string& b_dir) {
  const checkpoint::Reader a(*checkpoint::newest_complete(a_dir)), b(*checkpoint::newest_complete(b_dir));
  const ModelConfig model{2, 64, 4, 256, 64};
  const ParamLayout whole = gpt2_layout(model);
  for (const ParamSpec& spec : whole.specs())
    for (const char* state : {"param", "adam_m", "adam_v"}) {
      std::vector<float> x(static_cast<std::size_t>(spec.numel)), y(x.size());
      a.read(spec.name, state, 0, spec.numel, x.data());
      b.read(spec.name, state, 0, spec.numel, y.data());
      if (std::memcmp(x.data(), y.data(), 4 * x.size()) != 0) return false;
    }
  return true;
}

const std::vector<ConfigOverride> kVocab = {{"model.vocab_size", "256"}};

}  // namespace

TEST_CASE("8 steps, or 4 steps + save + resume + 4 steps, give bit-identical losses in every layout") {
  struct Layout {
    int ranks;
    std::vector<ConfigOverride> sets;
  };
  const std::vector<Layout> layouts = {
      {2, {{"parallel.zero", "0"}}}, {2, {{"parallel.zero", "1"}}}, {2, {{"parallel.zero", "2"}}},
      {2, {{"parallel.zero", "3"}}}, {2, {{"parallel.tp", "2"}}},   {2, {{"parallel.pp", "2"}}},
      {2, {{"precision.compute", "bf16"}, {"parallel.zero", "1"}}},
      // fp16's loss scale doubles every 3 clean steps: the checkpoint at step 4 carries the scale and the count.
      {2, {{"precision.compute", "fp16"}, {"precision.loss_scale_window", "3"}, {"parallel.zero", "2"}}},
      // The manifest records the family; its checks build the Llama layout (grouped key/value heads split by tp).
      {2, {{"model.family", "llama"}, {"model.kv_heads", "2"}, {"parallel.tp", "2"}}},
  };
  for (const Layout& layout : layouts) {
    const std::string dir = fresh_dir("resume");
    const auto straight = run(layout.ranks, layout.sets, fresh_dir("straight"), 8, 0);
    run(layout.ranks, layout.sets, dir, 4, 4);
    const auto resumed = run(layout.ranks, layout.sets, dir, 8, 0);
    INFO(layout.sets.front().key << " = " << layout.sets.front().value);
    REQUIRE(resumed.size() == 4);
    for (int step = 5; step <= 8; ++step) CHECK(resumed.at(step) == straight.at(step));
  }
}

TEST_CASE("a checkpoint loads under another layout with bit-equal states: dp2/zero3 -> tp2 -> pp2 -> 1 rank") {
  const std::string first = fresh_dir("reshard_a");
  const auto reference = run(2, {{"parallel.zero", "3"}}, first, 8, 4);  // saves at 4, trains on to 8
  struct Hop {
    int ranks;
    std::vector<ConfigOverride> sets;
    std::string name;
  };
  const std::vector<Hop> hops = {{2, {{"parallel.tp", "2"}}, "tp2"}, {2, {{"parallel.pp", "2"}}, "pp2"}, {1, {}, "one"}};
  std::string previous = first;
  for (const Hop& hop : hops) {
    // Load the previous layout's checkpoint here and save it straight back: the states must not change.
    const std::string dir = fresh_dir("reshard_" + hop.name);
    fs::copy(*checkpoint::newest_complete(previous), fs::path(dir) / "step_00000004", fs::copy_options::recursive);
    const std::string resaved = fresh_dir("reshard_" + hop.name + "_resaved");
    auto sets = hop.sets;
    sets.push_back({"checkpoint.resume", dir + "/step_00000004"});
    run(hop.ranks, sets, resaved, 4, 4);
    INFO(hop.name);
    CHECK(same_states(dir, resaved));
    // And training continues as the original layout did, within the contract's tolerance.
    const auto continued = run(hop.ranks, hop.sets, dir, 8, 0);
    for (int step = 5; step <= 8; ++step) CHECK(continued.at(step) == Approx(reference.at(step)).epsilon(1e-5));
    previous = resaved;
  }
}

TEST_CASE("damaged checkpoints are refused naming the file and the problem") {
  const std::string dir = fresh_dir("damaged");
  run(1, {}, dir, 2, 2);
  const std::string ckpt = *checkpoint::newest_complete(dir);
  const std::string shard = ckpt + "/shard_r0.bin";
  auto expect_refused = [&](const std::string& fragment) {
    try {
      read_first_run(ckpt);
      FAIL("expected a refusal mentioning " << fragment);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kUsage);
      CHECK_THAT(e.what(), Catch::Contains(fragment));
    }
  };
  std::string bytes;
  {
    std::ifstream in(shard, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::string flipped = bytes;
  flipped[1000] = static_cast<char>(flipped[1000] ^ 0x40);
  std::ofstream(shard, std::ios::binary | std::ios::trunc) << flipped;
  expect_refused("checksum mismatch");
  std::ofstream(shard, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() - 7);
  expect_refused("truncated");
  fs::remove(shard);
  expect_refused("missing");
  std::ofstream(shard, std::ios::binary | std::ios::trunc) << bytes;
  {
    checkpoint::Manifest manifest;
    std::ifstream in(ckpt + "/manifest.pb", std::ios::binary);
    manifest.ParseFromIstream(&in);
    manifest.set_format_version(checkpoint::kFormatVersion + 1);
    std::ofstream(ckpt + "/manifest.pb", std::ios::binary | std::ios::trunc) << manifest.SerializeAsString();
  }
  expect_refused("format version");
  std::ofstream(ckpt + "/manifest.pb", std::ios::binary | std::ios::trunc) << "not a manifest at all";
  expect_refused("manifest");
  fs::remove(ckpt + "/manifest.pb");
  expect_refused("incomplete");
  // A checkpoint without its manifest is never picked for resuming.
  CHECK_FALSE(checkpoint::newest_complete(dir).has_value());
}

TEST_CASE("format 1 checkpoints (byte-wise FNV-1a checksums) still load, each format checks its own checksum") {
  const std::string dir = fresh_dir("format1");
  run(1, {}, dir, 2, 2);
  const std::string ckpt = *checkpoint::newest_complete(dir);
  checkpoint::Manifest manifest;
  {
    std::ifstream in(ckpt + "/manifest.pb", std::ios::binary);
    REQUIRE(manifest.ParseFromIstream(&in));
  }
  REQUIRE(manifest.format_version() == checkpoint::kFormatVersion);
  const std::string tensor = manifest.files(0).runs(0).tensor();
  const std::int64_t start = manifest.files(0).runs(0).global_start(), count = manifest.files(0).runs(0).count();
  std::vector<float> current(static_cast<std::size_t>(count)), old(current.size());
  checkpoint::Reader(ckpt).read(tensor, "param", start, count, current.data());
  // Rewrite the manifest as format 1 would have: the same files, byte-wise FNV-1a 64 (the reference here).
  auto fnv1a_bytes = [](const std::string& bytes) {
    std::uint64_t hash = 0xcbf29ce484222325ull;
    for (unsigned char c : bytes) hash = (hash ^ c) * 0x100000001b3ull;
    return hash;
  };
  const std::uint64_t format2_checksum = manifest.files(0).checksum();
  for (auto& file : *manifest.mutable_files()) {
    std::ifstream in(ckpt + "/" + file.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    file.set_checksum(fnv1a_bytes(bytes));
  }
  CHECK(manifest.files(0).checksum() != format2_checksum);  // the two formats' checksums differ
  manifest.set_format_version(1);
  std::ofstream(ckpt + "/manifest.pb", std::ios::binary | std::ios::trunc) << manifest.SerializeAsString();
  checkpoint::Reader(ckpt).read(tensor, "param", start, count, old.data());
  CHECK(old == current);
  // A format 1 manifest with format 2's checksum is damaged, not silently accepted.
  manifest.mutable_files(0)->set_checksum(format2_checksum);
  std::ofstream(ckpt + "/manifest.pb", std::ios::binary | std::ios::trunc) << manifest.SerializeAsString();
  CHECK_THROWS_WITH(read_first_run(ckpt), Catch::Contains("checksum mismatch"));
}

TEST_CASE("the checksum catches a flipped bit anywhere in a shard, the trailing bytes included") {
  const std::string dir = fresh_dir("flips");
  run(1, {}, dir, 1, 1);
  const std::string ckpt = *checkpoint::newest_complete(dir);
  const std::string shard = ckpt + "/shard_r0.bin";
  std::string bytes;
  {
    std::ifstream in(shard, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  REQUIRE(bytes.size() > 200);
  // Every lane of the first block, a bit of the top byte of a word, and the last bytes (the partial block).
  for (std::size_t at : {std::size_t{0}, std::size_t{9}, std::size_t{63}, std::size_t{64 + 7}, bytes.size() - 1,
                         bytes.size() - 5}) {
    for (int bit : {0, 7}) {
      std::string flipped = bytes;
      flipped[at] = static_cast<char>(flipped[at] ^ (1 << bit));
      std::ofstream(shard, std::ios::binary | std::ios::trunc) << flipped;
      INFO("byte " << at << " bit " << bit);
      CHECK_THROWS_WITH(read_first_run(ckpt), Catch::Contains("checksum mismatch"));
    }
  }
  std::ofstream(shard, std::ios::binary | std::ios::trunc) << bytes;
  CHECK_NOTHROW(read_first_run(ckpt));
}

TEST_CASE("each rank reads only the shards it needs, and a damaged one stops every rank with exit 2") {
  const std::string dir = fresh_dir("lazy_shards");
  const std::vector<ConfigOverride> zero1 = {{"parallel.zero", "1"}};
  run(2, zero1, dir, 2, 2);
  const std::string ckpt = *checkpoint::newest_complete(dir);
  {
    const checkpoint::Reader reader(ckpt);
    REQUIRE(reader.manifest().files_size() == 2);
    CHECK(reader.bytes_loaded() == 0);  // opening checks sizes only
    read_first_run(ckpt, 0);
    const checkpoint::Run& run = reader.manifest().files(0).runs(0);
    std::vector<float> values(static_cast<std::size_t>(run.count()));
    reader.read(run.tensor(), run.state(), run.global_start(), run.count(), values.data());
    CHECK(reader.bytes_loaded() == reader.manifest().files(0).bytes());  // shard 1 untouched
  }
  const std::string shard1 = ckpt + "/shard_r1.bin";
  std::string bytes = read_file(shard1);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
  std::ofstream(shard1, std::ios::binary | std::ios::trunc) << bytes;
  CHECK_NOTHROW(read_first_run(ckpt, 0));
  CHECK_THROWS_WITH(read_first_run(ckpt, 1), Catch::Contains("shard_r1.bin: checksum mismatch"));

  // Resuming the same layout: rank 0 needs only shard 0, yet it stops too, naming the rank that found the damage.
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml",
                                    {{"parallel.zero", "1"}, {"checkpoint.dir", dir}}, 2);
  auto world = make_thread_group(2);
  std::string messages[2];
  double first_loss = 0.0;
  run_on_threads(world, [&](Communicator& comm) {
    ProcessGroups groups = make_process_groups(comm, config.parallel);
    auto device = make_cpu_device();
    Trainer trainer(config, groups, *device);
    try {
      trainer.restore_checkpoint();
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::kUsage) messages[comm.rank()] = e.what();
    }
    // Nothing was restored: the next step is a fresh run's first.
    const double loss = trainer.train_step(1).loss;
    if (comm.rank() == 0) first_loss = loss;
  });
  CHECK_THAT(messages[1], Catch::Contains("shard_r1.bin: checksum mismatch"));
  CHECK_THAT(messages[0], Catch::Contains("rank 1 could not read its part of the checkpoint"));
  CHECK(first_loss == run(2, zero1, fresh_dir("lazy_shards_fresh"), 1, 0).at(1));
}

TEST_CASE("a checkpoint of another model is refused before training starts") {
  const std::string dir = fresh_dir("other_model");
  run(1, {}, dir, 1, 1);
  try {
    run(1, {{"model.layers", "3"}}, dir, 2, 0);
    FAIL("expected a refusal");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kUsage);
    CHECK_THAT(e.what(), Catch::Contains("holds the model gpt2: layers 2,") &&
                             Catch::Contains("config asks for gpt2: layers 3,"));
  }
}

TEST_CASE("only the newest `keep` complete checkpoints remain, and an interrupted save is ignored") {
  const std::string dir = fresh_dir("keep");
  for (int step = 1; step <= 4; ++step) run(1, {{"checkpoint.keep", "2"}}, dir, step, step);
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"step_00000003", "step_00000004"});
  // A save that died before its manifest: a staging directory with shards only.
  fs::create_directories(dir + "/step_00000005.tmp");
  std::ofstream(dir + "/step_00000005.tmp/shard_r0.bin") << "partial";
  CHECK(*checkpoint::newest_complete(dir) == dir + "/step_00000004");
}

TEST_CASE("random damage to a manifest is refused as a usage error, never a crash") {
  const std::string dir = fresh_dir("fuzz");
  run(1, {}, dir, 1, 1);
  const std::string ckpt = *checkpoint::newest_complete(dir), path = ckpt + "/manifest.pb";
  std::string good;
  {
    std::ifstream in(path, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const std::uint64_t key = rng_key(7, "manifest fuzz");
  int refused = 0;
  for (std::uint64_t trial = 0; trial < 300; ++trial) {
    std::string bad = good;
    const Philox4 r = philox4x32(key, trial);
    switch (r.v[0] % 3) {
      case 0: bad[r.v[1] % bad.size()] = static_cast<char>(r.v[2]); break;  // one byte
      case 1: bad.resize(r.v[1] % bad.size()); break;                       // truncated
      default:                                                               // a run of garbage
        for (std::size_t i = r.v[1] % bad.size(), n = 0; i < bad.size() && n < 16; ++i, ++n)
          bad[i] = static_cast<char>(philox4x32(key, trial * 64 + n).v[3]);
    }
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bad;
    try {
      checkpoint::Reader reader(ckpt);
      std::vector<float> value(1);
      reader.read("wte.weight", "param", 0, 1, value.data());  // a mutation may still parse and hold it
    } catch (const Error& e) {
      REQUIRE(e.kind() == ErrorKind::kUsage);
      ++refused;
    }
  }
  CHECK(refused > 150);
}

TEST_CASE("a non-finite gradient in fp32 stops every rank before the update, naming the rank and step") {
  try {
    train_on_threads(2, 4, {}, [](Trainer& trainer, int rank) {
      if (rank == 1) trainer.inject_gradient_overflow_for_testing(2);
    });
    FAIL("expected the run to stop");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kInternal);
    // The gradient all-reduce spreads the infinity to every rank, so both are named.
    CHECK_THAT(e.what(), Catch::Contains("step 2") && Catch::Contains("rank(s) 0, 1") && Catch::Contains("before the update"));
  }
}

TEST_CASE("a rank that dies during a save, before or after writing its shard, leaves the previous checkpoint newest") {
  for (auto fault : {Trainer::SaveFault::kBeforeShard, Trainer::SaveFault::kAfterShard}) {
    const std::string dir = fresh_dir("killed_save");
    run(2, {}, dir, 2, 2);  // a good checkpoint at step 2
    const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml",
                                      {{"checkpoint.dir", dir}, {"comm.timeout_s", "2"}}, 2);
    auto world = make_thread_group(2, CommOptions{std::chrono::seconds(2)});
    CHECK_THROWS_AS(run_on_threads(world,
                                   [&](Communicator& comm) {
                                     ProcessGroups groups = make_process_groups(comm, config.parallel);
                                     auto device = make_cpu_device();
                                     Trainer trainer(config, groups, *device);
                                     const int resumed = trainer.restore_checkpoint();
                                     trainer.train_step(resumed + 1);
                                     if (comm.rank() == 1) trainer.inject_save_failure_for_testing(fault);
                                     trainer.save_checkpoint(resumed + 1);
                                   }),
                    Error);
    REQUIRE(checkpoint::newest_complete(dir).has_value());
    CHECK(*checkpoint::newest_complete(dir) == dir + "/step_00000002");
    const auto resumed = run(2, {}, dir, 4, 0);  // and it loads: training goes on from step 3
    CHECK(resumed.count(3) == 1);
  }
}
