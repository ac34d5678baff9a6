#include "checkpoint/safetensors.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/json_writer.h"

namespace weft::safetensors {
namespace {

namespace fs = std::filesystem;
using google::protobuf::Struct;
using google::protobuf::Value;

constexpr std::uint64_t kMaxHeader = 100u << 20;  // Hugging Face's own limit on a header

Struct parse_json(const std::string& text, const std::string& where) {
  Struct parsed;
  const auto status = google::protobuf::util::JsonStringToMessage(text, &parsed);
  if (!status.ok()) fail_usage("{}: not valid JSON: {}", where, status.message().as_string());
  return parsed;
}

std::size_t element_size(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "BF16" || dtype == "F16") return 2;
  if (dtype == "F64" || dtype == "I64") return 8;
  if (dtype == "I32") return 4;
  if (dtype == "I16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL") return 1;
  return 0;
}

}  // namespace

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (auto extent : shape) n *= extent;
  return n;
}

Reader::Reader(const std::string& path) {
  std::error_code error;
  if (fs::is_regular_file(path, error)) {
    add_file(path);
    return;
  }
  if (!fs::is_directory(path, error)) fail_usage("{}: no safetensors file or folder here", path);
  const fs::path folder(path), single = folder / "model.safetensors", index = folder / "model.safetensors.index.json";
  if (fs::is_regular_file(index, error)) {
    std::ifstream in(index);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const Struct parsed = parse_json(text, index.string());
    const auto map = parsed.fields().find("weight_map");
    if (map == parsed.fields().end() || !map->second.has_struct_value())
      fail_usage("{}: no weight_map", index.string());
    std::map<std::string, bool> files;
    for (const auto& [name, file] : map->second.struct_value().fields()) {
      if (!file.has_string_value() || file.string_value().find('/') != std::string::npos)
        fail_usage("{}: weight_map[{}] is not a file name in this folder", index.string(), name);
      files[file.string_value()] = true;
    }
    for (const auto& [file, unused] : files) add_file((folder / file).string());
    for (const auto& [name, file] : map->second.struct_value().fields())
      if (!contains(name)) fail_usage("{}: {} is in weight_map but not in {}", index.string(), name, file.string_value());
    return;
  }
  if (fs::is_regular_file(single, error)) {
    add_file(single.string());
    return;
  }
  fail_usage("{}: neither model.safetensors nor model.safetensors.index.json is here", path);
}

void Reader::add_file(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail_usage("{}: cannot open: {}", file, std::strerror(errno));
  std::error_code error;
  const std::uint64_t size = fs::file_size(file, error);
  std::uint64_t length = 0;
  in.read(reinterpret_cast<char*>(&length), sizeof length);
  if (!in || length > kMaxHeader || 8 + length > size)
    fail_usage("{}: not a safetensors file (header length {} in a file of {} bytes)", file, length, size);
  std::string header(length, '\0');
  in.read(header.data(), static_cast<std::streamsize>(length));
  const Struct parsed = parse_json(header, file);
  for (const auto& [name, entry] : parsed.fields()) {
    if (name == "__metadata__") continue;
    if (!entry.has_struct_value()) fail_usage("{}: tensor {} has no description", file, name);
    const auto& fields = entry.struct_value().fields();
    auto field = [&](const char* key) -> const Value& {
      auto found = fields.find(key);
      if (found == fields.end()) fail_usage("{}: tensor {} has no {}", file, name, key);
      return found->second;
    };
    TensorInfo info;
    info.file = file;
    info.dtype = field("dtype").string_value();
    for (const Value& extent : field("shape").list_value().values()) {
      const double value = extent.number_value();
      if (value < 0 || value > 1e15 || value != static_cast<double>(static_cast<std::int64_t>(value)))
        fail_usage("{}: tensor {} has a bad shape", file, name);
      info.shape.push_back(static_cast<std::int64_t>(value));
    }
    const auto& offsets = field("data_offsets").list_value().values();
    if (offsets.size() != 2) fail_usage("{}: tensor {}: data_offsets must be two numbers", file, name);
    info.begin = 8 + length + static_cast<std::uint64_t>(offsets[0].number_value());
    info.end = 8 + length + static_cast<std::uint64_t>(offsets[1].number_value());
    const std::size_t element = element_size(info.dtype);
    if (element == 0) fail_usage("{}: tensor {} has the unknown dtype {}", file, name, info.dtype);
    if (info.end < info.begin || info.end > size ||
        info.end - info.begin != static_cast<std::uint64_t>(info.numel()) * element)
      fail_usage("{}: tensor {} ({} {} elements) does not fit its byte range", file, name, info.dtype, info.numel());
    if (!tensors_.emplace(name, info).second) fail_usage("{}: tensor {} appears twice", file, name);
  }
}

const TensorInfo& Reader::info(const std::string& name) const {
  auto found = tensors_.find(name);
  if (found == tensors_.end()) fail_usage("safetensors: no tensor named {}", name);
  return found->second;
}

std::vector<float> Reader::read(const std::string& name) const {
  const TensorInfo& t = info(name);
  std::ifstream in(t.file, std::ios::binary);
  std::string bytes(t.end - t.begin, '\0');
  in.seekg(static_cast<std::streamoff>(t.begin));
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!in) fail_usage("{}: cannot read tensor {}", t.file, name);
  std::vector<float> values(static_cast<std::size_t>(t.numel()));
  if (t.dtype == "F32") {
    std::memcpy(values.data(), bytes.data(), bytes.size());
  } else if (t.dtype == "BF16" || t.dtype == "F16") {
    for (std::size_t i = 0; i < values.size(); ++i) {
      std::uint16_t half;
      std::memcpy(&half, bytes.data() + 2 * i, 2);
      values[i] = t.dtype == "BF16" ? bf16_to_float(half) : fp16_to_float(half);
    }
  } else {
    fail_usage("{}: tensor {} is {}; weft reads F32, BF16 and F16 weights", t.file, name, t.dtype);
  }
  return values;
}

void write(const std::string& path, const std::vector<NamedTensor>& tensors,
           const std::map<std::string, std::string>& metadata) {
  JsonWriter header;
  header.begin_object();
  header.begin_object("__metadata__");
  for (const auto& [key, value] : metadata) header.field(key, value);
  header.end_object();
  std::uint64_t offset = 0;
  for (const NamedTensor& t : tensors) {
    header.begin_object(t.name).field("dtype", "F32");
    header.begin_array("shape");
    for (auto extent : t.shape) header.field("", extent);
    header.end_array();
    const std::uint64_t bytes = t.values.size() * sizeof(float);
    header.begin_array("data_offsets")
        .field("", static_cast<std::int64_t>(offset))
        .field("", static_cast<std::int64_t>(offset + bytes))
        .end_array()
        .end_object();
    offset += bytes;
  }
  header.end_object();
  std::string json = header.str();
  json.append((8 - json.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  const std::uint64_t length = json.size();
  const std::string temporary = fmt::format("{}.tmp.{}", path, ::getpid());
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) fail_usage("{}: cannot open for writing: {}", temporary, std::strerror(errno));
    out.write(reinterpret_cast<const char*>(&length), sizeof length);
    out << json;
    for (const NamedTensor& t : tensors)
      out.write(reinterpret_cast<const char*>(t.values.data()), static_cast<std::streamsize>(t.values.size() * 4));
    if (!out.flush()) {
      const int saved = errno;
      std::error_code ignored;
      fs::remove(temporary, ignored);
      fail_usage("{}: writing failed: {}", path, std::strerror(saved));
    }
  }
  std::error_code error;
  fs::rename(temporary, path, error);
  if (error) {
    fs::remove(temporary, error);
    fail_usage("{}: cannot replace it: {}", path, error.message());
  }
}

}  // namespace weft::safetensors
