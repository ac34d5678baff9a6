// Decoding with a key/value cache gives, position by position, the logits of the full forward over the prefix; the
// sampler is greedy at temperature 0, keeps to the top k, repeats for a seed and draws with softmax's odds.
#include <cmath>
#include <map>

#include <catch2/catch.hpp>

#include "model/decoder.h"
#include "model/model.h"
#include "model/sampling.h"
#include "runtime/error.h"
#include "runtime/tensor.h"
#include "tests/test_util.h"

using namespace weft;
using namespace weft::testing;

namespace {

// Seeded weights with the norms moved off one, so every parameter matters.
std::vector<float> weights_for(const ModelConfig& model) {
  const ParamLayout whole = model_family(model).layout(model, 0, 1, {});
  std::vector<float> params(static_cast<std::size_t>(whole.total()));
  whole.initialise(5, params.data());
  const auto noise = random_normal_vector(params.size(), 6, 0.2f);
  for (const ParamSpec& spec : whole.specs())
    if (spec.init != InitKind::kNormal)
      for (std::int64_t i = 0; i < spec.numel; ++i)
        params[static_cast<std::size_t>(spec.offset + i)] += noise[static_cast<std::size_t>(spec.offset + i)];
    else
      for (std::int64_t i = 0; i < spec.numel; ++i) params[static_cast<std::size_t>(spec.offset + i)] *= 10.0f;
  return params;
}

ModelConfig gpt2() { return ModelConfig{3, 40, 5, 97, 11}; }

ModelConfig llama(bool tied) {
  ModelConfig m{2, 48, 6, 101, 13};
  m.family = ModelFamilyId::kLlama;
  m.kv_heads = 2;
  m.ffn_hidden = 88;
  m.rope_theta = 500.0;
  m.tie_embeddings = tied;
  return m;
}

}  // namespace

TEST_CASE("decoding token by token with the cache gives the full forward's logits at every position") {
  // The last: a context of 100, where the full forward's attention runs two causal row blocks.
  for (const ModelConfig& model : {gpt2(), llama(false), llama(true), ModelConfig{2, 40, 5, 97, 100}}) {
    INFO(model_family(model).name() << (model.tie_embeddings ? " tied" : " untied") << ", seq " << model.seq_len);
    const std::vector<float> params = weights_for(model);
    const auto tokens = random_tokens(static_cast<std::size_t>(model.seq_len), model.vocab_size, 3);

    auto device = make_cpu_device();
    auto full = model_family(model).build(model, *device, 1, {});
    Tensor p(*device, {full->params().total()}, DType::kF32, MemoryCategory::kParams);
    p.copy_from_host_f32(params.data(), full->params().total());
    const std::vector<float> reference = full->forward_logits(p.f32(), tokens.data());
    const auto stride = static_cast<std::size_t>(full->local_vocab());

    Decoder decoder(model, params);
    double worst = 0.0, scale = 0.0;
    for (int t = 0; t < model.seq_len; ++t) {
      const std::vector<float>& logits = decoder.feed(tokens[static_cast<std::size_t>(t)]);
      REQUIRE(logits.size() == static_cast<std::size_t>(model.vocab_size));
      for (int v = 0; v < model.vocab_size; ++v) {
        const double expected = reference[static_cast<std::size_t>(t) * stride + static_cast<std::size_t>(v)];
        worst = worse(worst, std::abs(logits[static_cast<std::size_t>(v)] - expected));
        scale = std::max(scale, std::abs(expected));
      }
    }
    CHECK(scale > 1.0);  // the logits are not trivially small
    CHECK(worst / scale <= 1e-5);
    // The context holds seq_len positions; one more is a usage error, not a read past the cache.
    CHECK_THROWS_AS(decoder.feed(0), Error);
    CHECK_THROWS_AS(Decoder(model, params).feed(model.vocab_size), Error);
  }
}

TEST_CASE("sampling: greedy at temperature 0 or top_k 1, a seed repeats, top_k keeps to the k most likely") {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
  CHECK(sample_token(logits, {.temperature = 0.0}, 0) == 1);  // the first of equal maxima
  CHECK(sample_token(logits, {.temperature = 5.0, .top_k = 1}, 9) == 1);
  std::vector<std::int32_t> a, b, c;
  for (std::uint64_t step = 0; step < 200; ++step) {
    a.push_back(sample_token(logits, {.temperature = 1.0, .seed = 1}, step));
    b.push_back(sample_token(logits, {.temperature = 1.0, .seed = 1}, step));
    c.push_back(sample_token(logits, {.temperature = 1.0, .seed = 2}, step));
    const auto top2 = sample_token(logits, {.temperature = 100.0, .top_k = 2, .seed = 3}, step);
    CHECK((top2 == 1 || top2 == 3));
  }
  CHECK(a == b);
  CHECK(a != c);
}

TEST_CASE("sampling draws each token with softmax(logits / temperature)'s probability") {
  const std::vector<float> logits = {1.0f, 0.0f, -0.5f, 2.0f};
  for (double temperature : {1.0, 0.5}) {
    std::map<int, int> counts;
    const int draws = 40000;
    for (int step = 0; step < draws; ++step) ++counts[sample_token(logits, {.temperature = temperature, .seed = 7}, step)];
    double total = 0.0;
    for (float l : logits) total += std::exp(l / temperature);
    for (int v = 0; v < 4; ++v) {
      const double p = std::exp(logits[v] / temperature) / total;
      INFO("temperature " << temperature << ", token " << v);
      CHECK(std::abs(counts[v] / double(draws) - p) <= 4.0 * std::sqrt(p * (1 - p) / draws) + 1e-4);
    }
  }
}
