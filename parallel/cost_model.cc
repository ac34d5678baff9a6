#include "parallel/cost_model.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "model/model.h"
#include "parallel/capabilities.h"
#include "parallel/cluster_spec.h"
#include "parallel/pipeline/schedule.h"
#include "parallel/pipeline/stage_plan.h"
#include "parallel/step_kernels.h"
#include "runtime/error.h"

namespace weft {
namespace {

// Seconds of one pass of a segment on a device of `spec`.
struct PassSeconds {
  double gemm = 0.0, memory = 0.0;
};

PassSeconds time_pass(const PassKernels& pass, const ClusterSpec& spec) {
  PassSeconds t;
  for (const Gemm& g : pass.gemms) t.gemm += spec.gemm_seconds(g.m, g.n, g.k, g.batch);
  if (spec.memory_Bps > 0) t.memory = pass.memory_bytes / spec.memory_Bps;
  return t;
}

// One micro-batch on one pipeline stage, in seconds: forward, backward (input and weight gradients), and the
// forward that block recomputation runs again before each block's backward.
struct StageSeconds {
  PassSeconds forward, backward, recompute;
  double fwd() const { return forward.gemm + forward.memory; }
  double bwd() const { return backward.gemm + backward.memory + recompute.gemm + recompute.memory; }
};

StageSeconds stage_seconds(const Config& config, int pp_rank, const ClusterSpec& spec) {
  const ModelConfig& m = config.model;
  const int b = config.train.micro_batch, t = config.parallel.tp;
  const bool sp = config.parallel.sequence_parallel && t > 1;
  const DType compute = config.precision.compute;
  const StageSpan span = stage_span(config, pp_rank);
  int layers = span.chunks.empty() ? m.layers : 0;
  for (const LayerRange& chunk : span.chunks) layers += chunk.end - chunk.begin;

  StageSeconds s;
  auto add = [&](const SegmentKernels& k, double count, bool recomputed) {
    const PassSeconds f = time_pass(k.forward, spec), g = time_pass(k.backward, spec);
    s.forward.gemm += count * f.gemm;
    s.forward.memory += count * f.memory;
    s.backward.gemm += count * g.gemm;
    s.backward.memory += count * g.memory;
    if (recomputed) {
      s.recompute.gemm += count * f.gemm;
      s.recompute.memory += count * f.memory;
    }
  };
  add(block_kernels(m, b, t, sp, compute, spec.kernels), layers, config.train.recompute == Recompute::kBlock);
  if (span.head) add(head_kernels(m, b, t, sp, compute, spec.kernels), 1, false);
  if (span.embeddings && !span.embeddings_are_tied_copy)
    add(embedding_kernels(m, b, t, sp, compute, spec.kernels), 1, false);
  return s;
}

// Bytes of the optimizer step per element it updates: Adam reads and writes its fp32 weight (or master copy), m and
// v, reads the gradient and writes the 16-bit copy when there is one (AdamW, as model/optimizer.cc runs it).
double optimizer_bytes_per_element(DType compute) {
  return compute == DType::kF32 ? 3 * 8 + 4 : 3 * 8 + 2 + 2;
}

}  // namespace

Prediction predict(const Config& config, const Plan& plan) {
  const ClusterSpec spec = resolve_cluster(config);
  const ParallelConfig& p = plan.parallel;
  const int m = config.accumulation_steps();
  const int element = activation_element_bytes(config.precision.compute, spec.kernels);
  const double tp_Bps = spec.group_Bps(plan.tp_groups), pp_Bps = spec.pipeline_Bps(plan.pp_groups);
  Prediction r;
  r.kernels = spec.kernels;
  r.memory_bound_modelled = spec.memory_Bps > 0;

  // The slowest stage sets the pace of the pipeline: its busy time per step, and its sends.
  double busy = -1.0, pp_seconds = 0.0;
  StageSeconds slowest, first;
  double slowest_tp = 0.0;
  for (int stage = 0; stage < p.pp; ++stage) {
    const StageSeconds s = stage_seconds(config, stage, spec);
    StageTraffic traffic = stage_traffic(config, stage, element);
    // Megatron-LM's scatter/gather sends each tensor-parallel rank's 1/tp of the stream over its own card and
    // gathers it on NVLink after (Narayanan et al. 2021, section 4.1); weft sends the whole stream from every rank.
    if (spec.kernels == KernelProfile::kFused && !(p.sequence_parallel && p.tp > 1)) traffic.pp /= p.tp;
    const double tp_seconds = traffic.tp / tp_Bps;
    const double stage_busy = m * (s.fwd() + s.bwd()) + tp_seconds;
    if (stage == 0) first = s;
    if (stage_busy > busy) {
      busy = stage_busy;
      slowest = s;
      slowest_tp = tp_seconds;
      r.slowest_stage = stage;
    }
    pp_seconds = std::max(pp_seconds, traffic.pp / pp_Bps);
  }
  StepBreakdown& t = r.time;
  t.gemm_ms = 1e3 * m * (slowest.forward.gemm + slowest.backward.gemm);
  t.memory_bound_ms = 1e3 * m * (slowest.forward.memory + slowest.backward.memory);
  t.recompute_ms = 1e3 * m * (slowest.recompute.gemm + slowest.recompute.memory);
  t.tp_ms = 1e3 * slowest_tp;
  if (p.pp > 1) {
    // The schedule's idle share with this stage's real backward-to-forward ratio (recomputation lengthens it).
    const double ratio = slowest.fwd() > 0 ? slowest.bwd() / slowest.fwd() : 2.0;
    const Simulation sim = simulate(pipeline_schedule(config), ratio);
    const double bubble = sim.ok ? sim.bubble_fraction : plan.bubble_fraction;
    t.bubble_ms = 1e3 * busy * bubble / (1.0 - bubble);
  }
  t.pp_ms = 1e3 * pp_seconds;

  // Data parallelism: the once-per-step collectives hide behind the first stage's last backward (the per-bucket
  // hook starts each as its gradients are final), the per-micro-batch ones (ZeRO 2 and 3) behind that
  // micro-batch's forward and backward; without comm.overlap nothing hides.
  const double dp_Bps = spec.group_Bps(plan.dp_groups);
  const double per_micro = plan.dp_per_micro_batch / dp_Bps;
  const double per_step = (plan.comm.dp - static_cast<double>(m) * plan.dp_per_micro_batch) / dp_Bps;
  const bool overlap = config.comm.overlap;
  t.dp_exposed_ms = 1e3 * (std::max(0.0, per_step - (overlap ? first.bwd() : 0.0)) +
                           m * std::max(0.0, per_micro - (overlap ? first.fwd() + first.bwd() : 0.0)));

  // The optimizer step: on the device, memory bound; offloaded, the gradient and parameter copies over the host
  // link, the host's Adam (each rank's share of the node's memory bandwidth) and, for disk, the state's reads and
  // writes run bucket by bucket, each overlapping the others, so the slowest of them sets the time.
  const double updated = static_cast<double>(plan.optimizer_elements);
  const double step_bytes = updated * optimizer_bytes_per_element(config.precision.compute);
  if (p.offload == Offload::kNone) {
    t.optimizer_ms = spec.memory_Bps > 0 ? 1e3 * step_bytes / spec.memory_Bps : 0.0;
  } else {
    auto need = [&](double value, const char* key) {
      if (value <= 0)
        fail_usage("{}: cluster: {} is needed to predict parallel.offload (or set cluster.gpu for a preset)",
                   config.source_path, key);
      return value;
    };
    const double ranks = spec.devices_per_node;
    double slowest_part = plan.offload_link_bytes / need(spec.pcie_Bps, "pcie_GBps");
    slowest_part = std::max(slowest_part, step_bytes / (need(spec.host_memory_Bps, "host_memory_GBps") / ranks));
    if (p.offload == Offload::kDisk)
      slowest_part = std::max(slowest_part, plan.offload_disk_bytes / (need(spec.disk_Bps, "disk_GBps") / ranks));
    t.optimizer_ms = 1e3 * slowest_part;
  }

  r.step_ms = t.gemm_ms + t.memory_bound_ms + t.recompute_ms + t.tp_ms + t.bubble_ms + t.pp_ms + t.dp_exposed_ms +
              t.optimizer_ms;
  const ModelFamily& family = model_family(config.model);
  const double tokens = static_cast<double>(config.train.global_batch) * config.model.seq_len;
  const double model_flops = family.flops_per_token(config.model) * tokens;
  // Block recomputation repeats each block's forward: a third of its forward-plus-backward FLOPs.
  const double recompute_flops =
      config.train.recompute == Recompute::kBlock ? config.model.layers * family.segment_costs(config.model).block / 3.0 * tokens
                                                   : 0.0;
  const double seconds = r.step_ms / 1e3;
  r.tokens_per_s = tokens / seconds;
  r.model_tflops_per_device = model_flops / plan.world_size / seconds / 1e12;
  r.hardware_tflops_per_device = (model_flops + recompute_flops) / plan.world_size / seconds / 1e12;
  r.mfu = r.model_tflops_per_device * 1e12 / spec.peak_flops;

  r.device_bytes = static_cast<double>(plan.memory.device_total());
  r.host_bytes = static_cast<double>(plan.memory.host);
  r.disk_bytes = static_cast<double>(plan.memory.disk);
  r.device_capacity_bytes = spec.memory_bytes;
  r.host_capacity_bytes = spec.host_memory_bytes;
  // 10% of each memory left for the framework, buffers in flight and fragmentation.
  r.fits = r.device_bytes <= 0.9 * spec.memory_bytes &&
           (spec.host_memory_bytes <= 0 || r.host_bytes * spec.devices_per_node <= 0.9 * spec.host_memory_bytes);
  return r;
}

Ranking rank_layouts(const Config& config, int world_size) {
  resolve_cluster(config);  // a broken cluster section is the user's to fix, before any candidate
  Ranking ranking;
  const Offload offloads[] = {Offload::kNone, Offload::kHost, Offload::kDisk};
  for (int tp = 1; tp <= world_size; ++tp) {
    if (world_size % tp) continue;
    for (int pp = 1; pp <= world_size / tp; ++pp) {
      if ((world_size / tp) % pp) continue;
      for (int zero = 0; zero <= 3; ++zero) {
        for (Offload offload : offloads) {
          for (Zero3Gather gather : {Zero3Gather::kStep, Zero3Gather::kMicroBatch}) {
            if (zero < 3 && gather != config.parallel.zero3_gather) continue;  // only ZeRO-3 gathers
            Config variant = config;
            variant.world_size = world_size;
            ParallelConfig& v = variant.parallel;
            v.dp = world_size / (tp * pp);
            v.tp = tp;
            v.pp = pp;
            v.zero = zero;
            v.offload = offload;
            v.zero3_gather = gather;
            if (pp == 1) {
              v.schedule = PipelineSchedule::k1F1B;
              v.virtual_stages = 1;
              v.layers_per_stage.clear();
            }
            ++ranking.considered;
            // Only what weft train would run: the same check it makes.
            if (find_layout_problem(variant)) continue;
            try {
              const Plan plan = make_plan(variant, world_size);
              ranking.layouts.push_back({variant.parallel, plan, predict(variant, plan)});
            } catch (const Error&) {
              ++ranking.unpredictable;  // e.g. offload without the host figures it needs
            }
          }
        }
      }
    }
  }
  // Ties in step time (within 0.1%, by bins so the order stays strict) go to the layout that needs less memory.
  auto key = [](const RankedLayout& r) {
    return std::make_tuple(!r.prediction.fits, std::floor(std::log(r.prediction.step_ms) / std::log(1.001)),
                           r.prediction.device_bytes + r.prediction.host_bytes);
  };
  std::stable_sort(ranking.layouts.begin(), ranking.layouts.end(),
                   [&](const RankedLayout& a, const RankedLayout& b) { return key(a) < key(b); });
  return ranking;
}

}  // namespace weft
