// safetensors, Hugging Face's tensor file: an 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the tensors' bytes. Reading (one file or a sharded set), the header's strict
// parser (shared by the reader and the writer's read-back) and atomic writing.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace weft::safetensors {

struct TensorInfo {
  std::string dtype;  // "F32", "BF16", "F16" are read; others are refused when read
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // byte range in `file`, from the start of the file
  std::string file;
  std::int64_t numel() const;
};

// The tensors of a model: a .safetensors file, or a folder holding model.safetensors or the shards that
// model.safetensors.index.json's weight_map names. Every header is checked when opened (lengths, byte ranges inside
// the file, sizes matching shape and dtype); a bad file, or one that is not a regular file, is Error(kUsage) naming it.
class Reader {
 public:
  explicit Reader(const std::string& path);

  bool contains(const std::string& name) const { return tensors_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const;
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  // The whole tensor `name`, row-major, converted to fp32.
  std::vector<float> read(const std::string& name) const;

 private:
  void add_file(const std::string& file);
  std::map<std::string, TensorInfo> tensors_;
};

struct NamedTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> values;  // row-major, written as F32
};

// One entry of a header as parsed.
struct HeaderEntry {
  std::string name, dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // byte range within the data section
};

// The header `write` puts before the data (padded with spaces so the data starts 8-byte aligned). Error(kUsage) for
// a tensor whose name is empty, "__metadata__", repeated or not UTF-8, or whose shape does not multiply to its value
// count.
std::string header(const std::vector<NamedTensor>& tensors, const std::map<std::string, std::string>& metadata);

// Parses a header (the JSON text alone) into its entries, sorted by name; `data_bytes` is the size of the data
// section, which every range must lie in. Numbers are read exactly (no detour through double). Error(kUsage)
// describing the first problem.
std::vector<HeaderEntry> parse_header(std::string_view json, std::uint64_t data_bytes);

// Writes `tensors` to `path` through a temporary file in the same folder (fsynced, read back and checked against
// what was meant) and a rename, so a failed write leaves any earlier file whole. Errors name `label` (the path when
// empty): exit 2 when the file cannot be created, 1 when writing fails.
void write(const std::string& path, const std::vector<NamedTensor>& tensors,
           const std::map<std::string, std::string>& metadata = {{"format", "pt"}}, const std::string& label = "");

}  // namespace weft::safetensors
