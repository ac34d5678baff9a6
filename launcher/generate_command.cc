// `weft generate`: sample a continuation of a prompt from a checkpoint of any layout, on one rank, with a key/value
// cache, printing it as text through the tokenizer the checkpoint records.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "checkpoint/format.h"
#include "checkpoint/model_shape.h"
#include "launcher/commands.h"
#include "model/decoder.h"
#include "model/model.h"
#include "model/sampling.h"
#include "model/tokenizer.h"
#include "runtime/error.h"

namespace weft {
namespace {

// A checkpoint directory, or a checkpoint.dir root holding several (the newest complete one is used).
std::string checkpoint_to_read(const std::string& path) {
  if (std::filesystem::exists(std::filesystem::path(path) / "manifest.pb")) return path;
  if (std::filesystem::is_directory(path))
    if (auto newest = checkpoint::newest_complete(path)) return *newest;
  return path;  // the reader says what is wrong with it
}

void check_options(const GenerateOptions& o) {
  if (o.tokens < 1) fail_usage("--tokens {}: expected at least 1", o.tokens);
  if (!std::isfinite(o.temperature) || o.temperature < 0)
    fail_usage("--temperature {}: expected a number >= 0 (0 is greedy)", o.temperature);
  if (o.top_k < 0) fail_usage("--top-k {}: expected an integer >= 0 (0 keeps every token)", o.top_k);
  if (o.prompt.empty()) fail_usage("--prompt is empty: the model needs at least one token to continue");
}

}  // namespace

int run_generate(const GenerateOptions& options) {
  check_options(options);
  const std::string dir = checkpoint_to_read(options.checkpoint);
  const checkpoint::Reader reader(dir);
  const checkpoint::Manifest& manifest = reader.manifest();
  const ModelConfig model = checkpoint::recorded_model(manifest.model());
  if (manifest.tokenizer().empty())
    fail_usage("{}: the checkpoint records no tokenizer to turn the prompt into ids: it was trained on a token file "
               "that does not name one (make token files with `weft data prepare`)",
               dir);
  const auto tokenizer = tokenizer_from(manifest.tokenizer(), manifest.tokenizer_model(), dir);
  const std::vector<std::int32_t> prompt = tokenizer->encode(options.prompt);
  if (prompt.empty()) fail_usage("--prompt encodes to no tokens");
  if (prompt.size() + static_cast<std::size_t>(options.tokens) > static_cast<std::size_t>(model.seq_len))
    fail_usage("--prompt ({} tokens) and --tokens {} need {} positions; the model has seq_len = {}", prompt.size(),
               options.tokens, prompt.size() + static_cast<std::size_t>(options.tokens), model.seq_len);

  // The whole model, whatever layout saved it: every tensor read back in weft's one-rank layout.
  const ParamLayout whole = model_family(model).layout(model, 0, 1, {});
  std::vector<float> params(static_cast<std::size_t>(whole.total()));
  for (const ParamSpec& spec : whole.specs()) {
    const std::int64_t saved = spec.real_rows >= 0 ? spec.real_rows * spec.global_shape[1] : spec.numel;
    reader.read(spec.name, "param", 0, saved, params.data() + spec.offset);
  }
  Decoder decoder(model, std::move(params));
  const std::vector<float>* logits = nullptr;
  for (std::int32_t token : prompt) logits = &decoder.feed(token);
  const SamplingOptions sampling{options.temperature, options.top_k, options.seed};
  std::vector<std::int32_t> continuation;
  for (int i = 0; i < options.tokens; ++i) {
    // Only ids the tokenizer knows: a model's vocabulary may be padded past the tokenizer's.
    std::vector<float> known(logits->begin(), logits->begin() + std::min<std::ptrdiff_t>(
                                                                    static_cast<std::ptrdiff_t>(logits->size()),
                                                                    tokenizer->vocab_size()));
    const std::int32_t next = sample_token(known, sampling, static_cast<std::uint64_t>(i));
    continuation.push_back(next);
    if (i + 1 < options.tokens) logits = &decoder.feed(next);
  }
  // Decoded as a whole: a piece may be a part of a character, or a word's leading space.
  const std::string text = tokenizer->decode(continuation);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  // A full disk or a closed pipe must not pass for a printed sample.
  if (std::fflush(stdout) != 0 || std::ferror(stdout))
    throw Error(ErrorKind::kInternal,
                fmt::format("writing the sample to standard output failed: {}", std::strerror(errno)));
  return 0;
}

}  // namespace weft
