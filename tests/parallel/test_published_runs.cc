// weft plan's step-time prediction against published measurements of large GPU runs: docs/planner.md's table, held
// here. Each run is a config under configs/published/ (its header names the paper and table); the figure is the
// step time the paper reports.
#include <cmath>
#include <cstdio>

#include <catch2/catch.hpp>

#include "parallel/cost_model.h"

using namespace weft;

namespace {

struct PublishedRun {
  const char* config;  // under configs/published/
  int ranks;
  double step_s;       // as published
  const char* source;
};

// Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models" (arXiv:2205.05198),
// Table 5, "full recompute" row: seconds per iteration on A100-80GB DGX nodes, data parallelism 1.
const PublishedRun kRuns[] = {
    {"megatron_22b_a100.yaml", 8, 1.42, "Korthikanti et al. 2022, Table 5"},
    {"megatron_175b_a100.yaml", 64, 18.13, "Korthikanti et al. 2022, Table 5"},
    {"megatron_530b_a100.yaml", 280, 49.05, "Korthikanti et al. 2022, Table 5"},
    {"megatron_1t_a100.yaml", 512, 94.42, "Korthikanti et al. 2022, Table 5"},
};

// Published runs the model does not predict within 15% (docs/planner.md says why): DeepSpeed's 2021 pipeline engine,
// and MosaicML's FSDP runs with FlashAttention, kernels the model does not describe. For all of them the model is
// optimistic; the test holds that, so the docs' account changes with the model.
const PublishedRun kOutside[] = {
    {"mtnlg_530b_a100.yaml", 2240, 60.1, "Smith et al. 2022, section 2.4"},
    {"mpt_7b_a100.yaml", 8, 96 * 2048 / 37130.0, "llm-foundry benchmarks, A100 80GB"},
    {"mpt_7b_h100.yaml", 8, 48 * 2048 / 85144.0, "llm-foundry benchmarks, H100 80GB BF16"},
    {"mpt_70b_h100.yaml", 64, 2048 * 2048 / 66523.0, "llm-foundry benchmarks, H100 80GB BF16"},
};

// The same figure for the planner's own run: load_config, not load_job_config, because 16-bit pipelines are the
// layout issue's to enable; the planner predicts them already.
Prediction predict_run(const PublishedRun& run) {
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/published/" + run.config, {}, run.ranks);
  return predict(config, make_plan(config, run.ranks));
}

}  // namespace

void print_row(const PublishedRun& run, const Prediction& p) {
  std::printf("%-26s %5d ranks  published %8.3f s  predicted %8.3f s  %+6.1f%%  MFU %4.1f%%  (gemm %.3f, memory %.3f, "
              "recompute %.3f, tp %.3f, bubble %.3f, pp %.3f, dp %.3f, optimizer %.3f s)\n",
              run.config, run.ranks, run.step_s, p.step_ms / 1e3, 100.0 * (p.step_ms / 1e3 / run.step_s - 1.0),
              100.0 * p.mfu, p.time.gemm_ms / 1e3, p.time.memory_bound_ms / 1e3, p.time.recompute_ms / 1e3,
              p.time.tp_ms / 1e3, p.time.bubble_ms / 1e3, p.time.pp_ms / 1e3, p.time.dp_exposed_ms / 1e3,
              p.time.optimizer_ms / 1e3);
}

TEST_CASE("predicted step times stand within 15% of every published run in docs/planner.md's table") {
  for (const PublishedRun& run : kRuns) {
    const Prediction p = predict_run(run);
    const double error = p.step_ms / 1e3 / run.step_s - 1.0;
    print_row(run, p);
    INFO(run.config << " (" << run.source << "): predicted " << p.step_ms / 1e3 << " s, published " << run.step_s);
    CHECK(std::abs(error) <= 0.15);
  }
}

TEST_CASE("the published runs outside the model's 15% are predicted faster than they ran, as docs/planner.md says") {
  for (const PublishedRun& run : kOutside) {
    const Prediction p = predict_run(run);
    print_row(run, p);
    INFO(run.config << " (" << run.source << "): predicted " << p.step_ms / 1e3 << " s, published " << run.step_s);
    CHECK(p.step_ms / 1e3 < run.step_s);
  }
}
