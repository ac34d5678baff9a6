// Writes the global batch of one training step (inputs.i32, targets.i32: global_batch x seq_len token ids), as
// every layout reads it, for reference checks outside weft. Usage: dump_step_batch CONFIG STEP OUT_DIR
#include <cstdio>
#include <fstream>
#include <vector>

#include "model/data.h"
#include "runtime/config.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: dump_step_batch CONFIG STEP OUT_DIR\n");
    return 2;
  }
  const weft::Config config = weft::load_config(argv[1], {}, 1);
  const int step = std::atoi(argv[2]);
  auto corpus = weft::open_corpus(config);
  weft::SampleSource samples(*corpus, config.train.seed, config.model.seq_len);
  const int batch = config.train.global_batch, seq = config.model.seq_len;
  std::vector<std::int32_t> inputs(static_cast<std::size_t>(batch * seq)), targets(inputs.size());
  for (int row = 0; row < batch; ++row)
    samples.sample(weft::first_sample_of_micro_batch(step, 0, 0, batch, 1, batch) + row, inputs.data() + row * seq,
                   targets.data() + row * seq);
  const std::string dir = argv[3];
  std::ofstream(dir + "/inputs.i32", std::ios::binary)
      .write(reinterpret_cast<const char*>(inputs.data()), static_cast<std::streamsize>(inputs.size() * 4));
  std::ofstream(dir + "/targets.i32", std::ios::binary)
      .write(reinterpret_cast<const char*>(targets.data()), static_cast<std::streamsize>(targets.size() * 4));
  std::printf("wrote step %d's batch of %d x %d tokens to %s\n", step, batch, seq, dir.c_str());
  return 0;
}
