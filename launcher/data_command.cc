// `weft data prepare`: a text file to a token file that `data.source: tokens` memory-maps.
#include <fmt/format.h>

#include "launcher/commands.h"
#include "model/data.h"

namespace weft {

int run_data_prepare(const std::string& input, const std::string& output) {
  const std::int64_t tokens = prepare_token_file(input, output);
  fmt::print("wrote {} tokens (byte-level, vocab 256) from {} to {}\n", tokens, input, output);
  return 0;
}

}  // namespace weft
