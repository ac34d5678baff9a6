// The LR schedule, the clipping factor and AdamW's weight-decay segments.
#include <catch2/catch.hpp>

#include "model/gpt_layout.h"
#include "model/optimizer.h"

using namespace weft;

TEST_CASE("the learning rate warms up linearly, then decays by a cosine to lr * min_lr_ratio") {
  TrainConfig train;
  train.lr = 1e-3;
  train.warmup_steps = 10;
  train.steps = 110;
  train.min_lr_ratio = 0.1;
  CHECK(learning_rate(train, 1) == Approx(1e-4));
  CHECK(learning_rate(train, 10) == Approx(1e-3));
  CHECK(learning_rate(train, 60) == Approx(1e-4 + 0.5 * 9e-4));  // halfway through the decay
  CHECK(learning_rate(train, 110) == Approx(1e-4));
  for (int step = 11; step < 110; ++step) CHECK(learning_rate(train, step + 1) < learning_rate(train, step));
}

TEST_CASE("clipping scales only gradients whose norm exceeds the limit") {
  CHECK(clip_factor(0.5, 1.0) == 1.0f);
  CHECK(clip_factor(4.0, 1.0) == Approx(0.25).epsilon(1e-5));
  CHECK(clip_factor(4.0, 0.0) == 1.0f);  // grad_clip 0 disables clipping
}

TEST_CASE("weight decay touches matrices and embeddings but not biases or LayerNorm, in any range") {
  ModelConfig model{1, 4, 2, 8, 3};
  const ParamLayout params = gpt2_layout(model);
  TrainConfig train;
  train.weight_decay = 0.5;
  auto device = make_cpu_device();
  const auto& bias = params.find("h.0.attn.c_attn.bias");
  const auto& weight = params.find("h.0.attn.c_attn.weight");
  // A range that starts inside c_attn.weight and ends inside c_attn.bias, as a ZeRO shard might.
  const std::int64_t begin = weight.offset + 5, end = bias.offset + 3;
  AdamWOptimizer optimizer(params, train, *device, begin, end);
  std::vector<float> values(static_cast<std::size_t>(end - begin), 2.0f), grads(values.size(), 0.0f);
  optimizer.step(values.data(), grads.data(), 1, 0.1f, 1.0f);
  // Zero gradients: Adam's term vanishes and only decoupled decay moves a parameter, by lr * wd * p = 0.1.
  CHECK(values.front() == Approx(1.9f));
  CHECK(values[static_cast<std::size_t>(bias.offset - begin - 1)] == Approx(1.9f));
  CHECK(values[static_cast<std::size_t>(bias.offset - begin)] == 2.0f);
  CHECK(values.back() == 2.0f);
  CHECK(optimizer.m().numel() == end - begin);
}
