// The planner's cost model: each term of the predicted step, the cluster section's checks, and --auto's ranking.
#include <algorithm>
#include <cmath>

#include <catch2/catch.hpp>

#include "kernels/attention.h"

#include "model/model.h"
#include "parallel/capabilities.h"
#include "parallel/cluster_spec.h"
#include "parallel/cost_model.h"
#include "parallel/step_kernels.h"
#include "runtime/error.h"

using namespace weft;

namespace {

Config cluster_config(int world, std::vector<ConfigOverride> extra = {}) {
  std::vector<ConfigOverride> overrides = {{"model.layers", "8"},          {"model.d_model", "256"},
                                           {"model.heads", "8"},           {"train.global_batch", "64"},
                                           {"cluster.devices_per_node", "4"}, {"cluster.peak_tflops", "100"},
                                           {"cluster.memory_gib", "16"},   {"cluster.intra_node_GBps", "100"},
                                           {"cluster.inter_node_GBps", "10"}};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, world);
}

Prediction predict_for(const Config& config) { return predict(config, make_plan(config, config.world_size)); }

// The message of the usage error `config`'s prediction raises.
std::string prediction_error(const Config& config) {
  try {
    predict_for(config);
  } catch (const Error& error) {
    CHECK(error.kind() == ErrorKind::kUsage);
    return error.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a block's and the head's GEMMs have the FLOPs of ModelFamily::segment_costs, less the masked products") {
  for (int tp : {1, 2, 4}) {
    for (int seq : {64, 96, 300}) {
      ModelConfig m;
      m.layers = 3, m.d_model = 128, m.heads = 8, m.vocab_size = 512, m.seq_len = seq;
      const SegmentCosts costs = model_family(m).segment_costs(m);
      const double tokens = 5.0 * seq;
      auto flops = [](const SegmentKernels& k) {
        double f = 0;
        for (const Gemm& g : k.forward.gemms) f += g.flops();
        for (const Gemm& g : k.backward.gemms) f += g.flops();
        return f;
      };
      INFO("tp " << tp << ", seq " << seq);
      // segment_costs counts attention's whole seq x seq products (12 seq d per token, as MFU conventionally does);
      // weft's engine multiplies only the row blocks' visible part of them (kernels/attention.h), a fused profile
      // all of them.
      double visible = 0;
      for (const kernels::RowBlock& r : kernels::causal_row_blocks(seq))
        visible += static_cast<double>(r.end - r.begin) * r.end;
      const double skipped = 12.0 * seq * m.d_model * (1.0 - visible / (static_cast<double>(seq) * seq));
      if (seq > 64) CHECK(skipped > 0);
      CHECK(flops(block_kernels(m, 5, tp, false, DType::kBF16, KernelProfile::kWeft)) * tp ==
            Approx((costs.block - skipped) * tokens).epsilon(1e-12));
      CHECK(flops(block_kernels(m, 5, tp, false, DType::kBF16, KernelProfile::kFused)) * tp ==
            Approx(costs.block * tokens).epsilon(1e-12));
      CHECK(flops(head_kernels(m, 5, tp, false, DType::kBF16, KernelProfile::kWeft)) * tp ==
            Approx(costs.head * tokens).epsilon(1e-12));
    }
  }
}

TEST_CASE("without a size curve, GEMM time is the model FLOPs per rank at peak x gemm_efficiency, and MFU follows") {
  const Config config = cluster_config(4);  // dp 4: every rank runs the whole model
  const Prediction p = predict_for(config);
  const double flops = model_family(config.model).flops_per_token(config.model) * 64 * config.model.seq_len;
  CHECK(p.time.gemm_ms == Approx(flops / 4 / (100e12 * 0.5) * 1e3));
  CHECK_FALSE(p.memory_bound_modelled);  // no memory_GBps
  CHECK(p.time.memory_bound_ms == 0.0);
  CHECK(p.step_ms == Approx(p.time.gemm_ms + p.time.tp_ms + p.time.bubble_ms + p.time.pp_ms + p.time.dp_exposed_ms +
                            p.time.optimizer_ms + p.time.recompute_ms + p.time.memory_bound_ms));
  CHECK(p.mfu == Approx(flops / 4 / (p.step_ms / 1e3) / 100e12));
  CHECK(p.fits);
}

TEST_CASE("GEMM efficiency follows the cluster's curve: half the plateau at gemm_half_dim, small GEMMs cost more") {
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml",
                                    {{"cluster.gpu", "a100"}, {"precision.compute", "bf16"}}, 1);
  const ClusterSpec spec = resolve_cluster(config);
  CHECK(spec.gemm_efficiency_at(spec.gemm_half_dim) == Approx(spec.gemm_efficiency / 2));
  CHECK(spec.gemm_efficiency_at(8192) > spec.gemm_efficiency_at(1024));
  CHECK(spec.gemm_efficiency_at(1e9) == Approx(spec.gemm_efficiency).epsilon(1e-5));
  // The same FLOPs as one square GEMM take longer as 64 thin ones.
  CHECK(spec.gemm_seconds(4096, 4096, 64, 64) > 1.5 * spec.gemm_seconds(4096, 4096, 4096));
}

TEST_CASE("recomputation is charged as one more forward of every block, GEMMs and memory-bound kernels") {
  const std::vector<ConfigOverride> base = {{"cluster.memory_GBps", "1000"}, {"cluster.gemm_half_dim", "128"}};
  const Config plain = cluster_config(2, base);
  auto with = base;
  with.push_back({"train.recompute", "block"});
  const Config recomputed = cluster_config(2, with);
  const Prediction a = predict_for(plain), b = predict_for(recomputed);
  // The forward share of the blocks' work, per micro-batch, times the micro-batches.
  const ClusterSpec spec = resolve_cluster(plain);
  const SegmentKernels k = block_kernels(plain.model, plain.train.micro_batch, 1, false, DType::kF32, spec.kernels);
  double forward = k.forward.memory_bytes / spec.memory_Bps;
  for (const Gemm& g : k.forward.gemms) forward += spec.gemm_seconds(g.m, g.n, g.k, g.batch);
  CHECK(b.time.recompute_ms == Approx(1e3 * forward * plain.model.layers * plain.accumulation_steps()));
  CHECK(a.time.recompute_ms == 0.0);
  CHECK(b.time.gemm_ms == Approx(a.time.gemm_ms));
  CHECK(b.hardware_tflops_per_device > b.model_tflops_per_device);
}

TEST_CASE("data-parallel bytes are counted in the type sent: bf16 gradients take half the fp32 time") {
  auto dp_ms = [](const char* precision) {
    const Config config = cluster_config(8, {{"precision.compute", precision}, {"comm.overlap", "false"}});
    return predict_for(config).time.dp_exposed_ms;
  };
  // The loss's exact gather is the same in both; the gradients dominate.
  CHECK(dp_ms("bf16") / dp_ms("fp32") == Approx(0.5).epsilon(0.01));
}

TEST_CASE("the fused kernel profile sends 16-bit activations over tp, weft's engine sends fp32") {
  auto tp_ms = [](const char* kernels) {
    return predict_for(cluster_config(4, {{"parallel.tp", "4"}, {"precision.compute", "bf16"},
                                          {"cluster.kernels", kernels}}))
        .time.tp_ms;
  };
  CHECK(tp_ms("fused") / tp_ms("weft") == Approx(0.5).epsilon(0.02));
}

TEST_CASE("a tensor-parallel group that spans nodes is predicted slower than one inside a node") {
  // 8 ranks, 4 per node: tp=4 keeps each tp group on one node, tp=8 spans two.
  const Config inside = cluster_config(8, {{"parallel.tp", "4"}});
  const Config across = cluster_config(8, {{"parallel.tp", "8"}});
  const Prediction a = predict_for(inside), b = predict_for(across);
  const double bytes_ratio = static_cast<double>(make_plan(across, 8).comm.tp) / make_plan(inside, 8).comm.tp;
  // Across nodes each rank gets its share of the node's cards, four ranks of the group per node: 4 x 10 GB/s.
  CHECK(b.time.tp_ms == Approx(a.time.tp_ms * bytes_ratio * 100.0 / 40.0).epsilon(0.01));
}

TEST_CASE("pipeline sends share every network card of the node: fewer cards, slower sends") {
  // pp 2 across two nodes of 4: every rank of a node sends at once.
  auto pp_ms = [](const char* nics) {
    return predict_for(cluster_config(8, {{"parallel.pp", "2"}, {"cluster.nics_per_node", nics}})).time.pp_ms;
  };
  CHECK(pp_ms("4") > 0.0);
  CHECK(pp_ms("1") == Approx(4 * pp_ms("4")));
}

TEST_CASE("offloading moves the optimizer state off the device and charges the host link, the host and the disk") {
  // Eight blocks of 0.8M parameters: the disk mode keeps three tiles of one block in host memory, not the whole
  // state.
  const std::vector<ConfigOverride> h100 = {{"cluster.gpu", "h100"}, {"precision.compute", "bf16"},
                                            {"model.layers", "8"}, {"model.d_model", "256"}, {"comm.bucket_mb", "0.05"}};
  auto with = [&](const char* offload) {
    auto o = h100;
    o.push_back({"parallel.offload", offload});
    o.push_back({"parallel.offload_dir", "/tmp"});
    const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", o, 2);
    return std::pair{make_plan(config, 2), predict_for(config)};
  };
  const auto [none, none_p] = with("none");
  const auto [host, host_p] = with("host");
  const auto [disk, disk_p] = with("disk");
  CHECK(host.memory.optimizer == 0);
  CHECK(host.memory.host > none.memory.optimizer);  // the state plus its gradients and staging buffers
  CHECK(disk.memory.disk > none.memory.optimizer);  // the state plus the gradients, in tiles of 2048 elements
  CHECK(disk.memory.disk < none.memory.optimizer * 3 / 2);
  CHECK(disk.memory.host < host.memory.host / 2);
  CHECK(host.offload_link_bytes <= 2 * 2 * none.optimizer_elements);  // bf16 gradients down, parameters up
  CHECK(host.offload_link_bytes > 2 * 2 * none.optimizer_elements * 9 / 10);  // (the chunks' padding stays)
  CHECK(disk.offload_disk_bytes == 2 * disk.memory.disk);
  CHECK(host_p.device_bytes < none_p.device_bytes);
  CHECK(host_p.time.optimizer_ms > none_p.time.optimizer_ms);
  CHECK(disk_p.time.optimizer_ms >= host_p.time.optimizer_ms);
  // A cluster section without the host figures cannot predict offload.
  const Config bare = cluster_config(2, {{"parallel.offload", "host"}});
  CHECK_THAT(prediction_error(bare), Catch::Contains("cluster: pcie_GBps is needed"));
}

TEST_CASE("ZeRO-3 gathering once per step holds the stage's parameters, per micro-batch sends more and holds less") {
  auto plan = [](const char* gather) {
    return make_plan(cluster_config(4, {{"parallel.zero", "3"}, {"parallel.zero3_gather", gather},
                                        {"train.micro_batch", "4"}, {"precision.compute", "bf16"}}),
                     4);
  };
  const Plan step = plan("step"), micro = plan("microbatch");
  CHECK(step.memory.gathered == 4 * step.memory.params);  // the whole padded stage, 16-bit, on each of 4 ranks
  CHECK(micro.memory.gathered < step.memory.gathered);
  CHECK(micro.comm.dp > step.comm.dp);
  CHECK(step.memory.widened > 0);  // the fp32 copy compute sees
}

TEST_CASE("implausible cluster figures are refused with the key, where it was set and what was probably meant") {
  CHECK_THAT(prediction_error(cluster_config(1, {{"cluster.peak_tflops", "312e12"}})),
             Catch::Contains("--set cluster.peak_tflops=312e12: cluster.peak_tflops = 3.12e+14") &&
                 Catch::Contains("you probably meant 312"));
  CHECK_THAT(prediction_error(cluster_config(1, {{"cluster.inter_node_GBps", "200"}})),
             Catch::Contains("cluster.inter_node_GBps = 200") && Catch::Contains("that is 25 GB/s"));
  CHECK_THAT(prediction_error(cluster_config(1, {{"cluster.memory_gib", "80e9"}})),
             Catch::Contains("looks like bytes"));
  CHECK_THAT(prediction_error(cluster_config(1, {{"cluster.intra_node_GBps", "0.45"}})),
             Catch::Contains("that is 450 GB/s"));
  CHECK_THAT(prediction_error(cluster_config(1, {{"cluster.intra_node_gbps", "100"}})),
             Catch::Contains("older name of the same figure"));
  CHECK_THAT(prediction_error(load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml",
                                          {{"cluster.peak_tflops", "100"}}, 1)),
             Catch::Contains("cluster: memory_gib is needed"));
}

TEST_CASE("the first release's cluster key names still work and mean the same figures") {
  const std::vector<ConfigOverride> old_names = {
      {"model.layers", "8"},         {"model.d_model", "256"},        {"model.heads", "8"},
      {"train.global_batch", "64"},  {"cluster.devices_per_node", "4"}, {"cluster.peak_tflops", "100"},
      {"cluster.memory_gib", "16"},  {"cluster.intra_node_gbps", "100"}, {"cluster.inter_node_gbps", "10"},
      {"cluster.compute_efficiency", "0.4"}, {"parallel.tp", "8"}};
  const Config old_config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", old_names, 8);
  const Config new_config = cluster_config(8, {{"cluster.gemm_efficiency", "0.4"}, {"parallel.tp", "8"}});
  CHECK(predict_for(old_config).step_ms == Approx(predict_for(new_config).step_ms));
}

TEST_CASE("weft plan --auto ranks layouts that fit first, fastest first, ties to less memory, only what train runs") {
  const Config config = cluster_config(8, {{"cluster.memory_gib", "0.02"}});
  const Ranking ranking = rank_layouts(config, 8);
  REQUIRE(!ranking.layouts.empty());
  bool seen_unfit = false;
  for (std::size_t i = 0; i < ranking.layouts.size(); ++i) {
    const auto& r = ranking.layouts[i];
    Config variant = config;
    variant.parallel = r.parallel;
    CHECK_FALSE(find_layout_problem(variant));
    CHECK(r.parallel.dp * r.parallel.tp * r.parallel.pp == 8);
    if (!r.prediction.fits) seen_unfit = true;
    else CHECK_FALSE(seen_unfit);  // no fitting layout after an unfitting one
    if (i > 0 && r.prediction.fits == ranking.layouts[i - 1].prediction.fits) {
      const auto& before = ranking.layouts[i - 1].prediction;
      CHECK(r.prediction.step_ms >= before.step_ms * 0.999);
      if (std::abs(r.prediction.step_ms / before.step_ms - 1) < 1e-9)
        CHECK(r.prediction.device_bytes + r.prediction.host_bytes >= before.device_bytes + before.host_bytes);
    }
  }
  CHECK(seen_unfit);  // 20 MiB cannot hold every layout's states
  // Offload candidates, where the trainer runs them: the bare cluster section has no host figures to predict them.
  Config offloaded = config;
  offloaded.parallel.offload = Offload::kHost;
  offloaded.parallel.offload_dir = "/tmp";
  CHECK((ranking.unpredictable > 0) == !find_layout_problem(offloaded));
}

TEST_CASE("weft plan --auto offers exactly the ZeRO stages, offload modes and gathers the capability check accepts") {
  const Config config = cluster_config(4, {{"cluster.gpu", "h100"}, {"parallel.offload_dir", "/tmp"}});
  const Ranking ranking = rank_layouts(config, 4);
  CHECK(ranking.unpredictable == 0);  // the preset has every host figure
  for (int zero = 0; zero <= 3; ++zero) {
    for (Offload offload : {Offload::kNone, Offload::kHost, Offload::kDisk}) {
      for (Zero3Gather gather : {Zero3Gather::kStep, Zero3Gather::kMicroBatch}) {
        if (zero < 3 && gather != config.parallel.zero3_gather) continue;
        Config variant = config;
        variant.world_size = 4;
        variant.parallel.dp = 4, variant.parallel.zero = zero, variant.parallel.offload = offload;
        variant.parallel.zero3_gather = gather;
        const bool offered = std::any_of(ranking.layouts.begin(), ranking.layouts.end(), [&](const RankedLayout& r) {
          return r.parallel.dp == 4 && r.parallel.zero == zero && r.parallel.offload == offload &&
                 r.parallel.zero3_gather == gather;
        });
        INFO("zero " << zero << ", offload " << static_cast<int>(offload) << ", gather " << static_cast<int>(gather));
        CHECK(offered == !find_layout_problem(variant));
      }
    }
  }
}

TEST_CASE("weft plan --auto never aborts and never proposes a refused layout, over odd shapes and world sizes") {
  for (int world : {1, 2, 3, 5, 6, 7, 12, 16, 24}) {
    for (const char* layers : {"3", "4", "6"}) {
      for (const char* heads : {"4", "6"}) {
        const Config config = load_config(
            std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml",
            {{"model.layers", layers}, {"model.heads", heads}, {"model.d_model", "96"}, {"train.global_batch", "48"},
             {"train.micro_batch", "2"}, {"cluster.gpu", "a100"}, {"parallel.schedule", "interleaved"},
             {"parallel.virtual_stages", "2"}},
            world);
        INFO("world " << world << ", layers " << layers << ", heads " << heads);
        Ranking ranking;
        REQUIRE_NOTHROW(ranking = rank_layouts(config, world));
        for (const auto& r : ranking.layouts) {
          Config variant = config;
          variant.world_size = world;
          variant.parallel = r.parallel;
          CHECK_FALSE(find_layout_problem(variant));
          CHECK(std::isfinite(r.prediction.step_ms));
          CHECK(r.prediction.step_ms > 0);
        }
      }
    }
  }
}

TEST_CASE("predicting without a complete cluster section is a usage error") {
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml",
                                    {{"cluster.peak_tflops", "100"}}, 1);
  CHECK_THROWS_AS(predict(config, make_plan(config, 1)), Error);
}
