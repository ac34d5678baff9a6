#include "checkpoint/safetensors.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/file_io.h"
#include "runtime/json_writer.h"

namespace weft::safetensors {
namespace {

// Whether `text` is well-formed UTF-8 (no overlong forms, no surrogates): JSON readers reject anything else.
bool valid_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const int extra = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xe ? 2 : (c >> 3) == 0x1e ? 3 : -1;
    if (extra < 0 || i + static_cast<std::size_t>(extra) >= text.size()) return false;
    std::uint32_t code = extra == 0 ? c : c & (0x3f >> extra);
    for (int k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[i + static_cast<std::size_t>(k)]);
      if ((next >> 6) != 0x2) return false;
      code = (code << 6) | (next & 0x3f);
    }
    const std::uint32_t least[] = {0, 0x80, 0x800, 0x10000};
    if (code < least[extra] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
    i += static_cast<std::size_t>(extra) + 1;
  }
  return true;
}

// A JSON value of the shapes a safetensors header uses.
struct Json {
  enum class Kind { kObject, kArray, kString, kNumber, kOther } kind = Kind::kOther;
  std::vector<std::string> keys;  // objects: keys[i] names items[i]
  std::vector<Json> items;        // arrays and objects' values, in order
  std::string text;                                   // strings
  std::int64_t number = 0;                            // non-negative integers
};

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : text_(text) {}

  Json parse() {
    Json value = parse_value(0);
    skip_space();
    if (at_ != text_.size()) fail("text after the JSON value");
    return value;
  }

 private:
  static constexpr int kMaxDepth = 8;  // a header is three levels deep

  [[noreturn]] void fail(std::string_view what) const {
    fail_usage("safetensors header: {} at byte {}", what, at_);
  }
  void skip_space() {
    while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\n' || text_[at_] == '\r' || text_[at_] == '\t'))
      ++at_;
  }
  bool eat(char c) {
    skip_space();
    if (at_ < text_.size() && text_[at_] == c) {
      ++at_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(fmt::format("expected '{}'", c));
  }

  Json parse_value(int depth) {
    if (depth > kMaxDepth) fail("nesting too deep");
    skip_space();
    if (at_ >= text_.size()) fail("unexpected end");
    Json value;
    const char c = text_[at_];
    if (c == '{') {
      ++at_;
      value.kind = Json::Kind::kObject;
      if (eat('}')) return value;
      do {
        skip_space();
        value.keys.push_back(parse_string());
        expect(':');
        value.items.push_back(parse_value(depth + 1));
      } while (eat(','));
      expect('}');
    } else if (c == '[') {
      ++at_;
      value.kind = Json::Kind::kArray;
      if (eat(']')) return value;
      do value.items.push_back(parse_value(depth + 1));
      while (eat(','));
      expect(']');
    } else if (c == '"') {
      value.kind = Json::Kind::kString;
      value.text = parse_string();
    } else if (c >= '0' && c <= '9') {
      value.kind = Json::Kind::kNumber;
      const std::size_t start = at_;
      while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') {
        if (value.number > (INT64_MAX - 9) / 10) fail("number too large");
        value.number = value.number * 10 + (text_[at_++] - '0');
      }
      if (at_ - start > 1 && text_[start] == '0') fail("number with a leading zero");
    } else {
      fail("unexpected character");
    }
    return value;
  }

  std::string parse_string() {
    if (at_ >= text_.size() || text_[at_] != '"') fail("expected a string");
    ++at_;
    std::string out;
    for (;;) {
      if (at_ >= text_.size()) fail("unterminated string");
      const char c = text_[at_++];
      if (c == '"') break;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_ >= text_.size()) fail("unterminated escape");
      const char e = text_[at_++];
      const char* simple = std::strchr("\"\\/bfnrt", e);
      if (simple != nullptr && e != '\0') {
        out += "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
        continue;
      }
      if (e != 'u') fail("bad escape");
      std::uint32_t code = hex4();
      if (code >= 0xd800 && code <= 0xdbff) {  // a surrogate pair
        if (at_ + 1 >= text_.size() || text_[at_] != '\\' || text_[at_ + 1] != 'u') fail("lone surrogate");
        at_ += 2;
        const std::uint32_t low = hex4();
        if (low < 0xdc00 || low > 0xdfff) fail("bad surrogate pair");
        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
      } else if (code >= 0xdc00 && code <= 0xdfff) {
        fail("lone surrogate");
      }
      append_utf8(out, code);
    }
    if (!valid_utf8(out)) fail("a string that is not UTF-8");
    return out;
  }

  std::uint32_t hex4() {
    if (at_ + 4 > text_.size()) fail("short \\u escape");
    std::uint32_t code = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = text_[at_++];
      const int digit = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (digit < 0) fail("bad \\u escape");
      code = code * 16 + static_cast<std::uint32_t>(digit);
    }
    return code;
  }

  static void append_utf8(std::string& out, std::uint32_t code) {
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xc0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
      out += static_cast<char>(0xe0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (code >> 18));
      out += static_cast<char>(0x80 | ((code >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    }
  }

  std::string_view text_;
  std::size_t at_ = 0;
};

const Json* member(const Json& object, std::string_view key) {
  for (std::size_t i = 0; i < object.keys.size(); ++i)
    if (object.keys[i] == key) return &object.items[i];
  return nullptr;
}

namespace fs = std::filesystem;

constexpr std::uint64_t kMaxHeader = 100u << 20;  // Hugging Face's own limit on a header
constexpr std::size_t kMaxIndex = 64u << 20;       // an index names each tensor once: megabytes at most

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
  if (!fs::is_directory(path, error)) {  // a file, or something add_file refuses with what it is
    add_file(path);
    return;
  }
  const fs::path folder(path), single = folder / "model.safetensors", index = folder / "model.safetensors.index.json";
  if (fs::exists(index, error)) {
    const std::string text = read_regular_file(index.string(), "safetensors index", kMaxIndex);
    google::protobuf::Struct parsed;
    const auto status = google::protobuf::util::JsonStringToMessage(text, &parsed);
    if (!status.ok()) fail_usage("{}: not valid JSON: {}", index.string(), status.message().as_string());
    const auto map = parsed.fields().find("weight_map");
    if (map == parsed.fields().end() || !map->second.has_struct_value())
      fail_usage("{}: no weight_map", index.string());
    std::map<std::string, bool> files;
    for (const auto& [name, file] : map->second.struct_value().fields()) {
      const std::string& shard = file.string_value();
      if (!file.has_string_value() || shard.empty() || shard == "." || shard == ".." ||
          shard.find('/') != std::string::npos)
        fail_usage("{}: weight_map[{}] is not a file name in this folder", index.string(), json_escape(name));
      files[shard] = true;
    }
    for (const auto& [file, unused] : files) add_file((folder / file).string());
    for (const auto& [name, file] : map->second.struct_value().fields())
      if (!contains(name))
        fail_usage("{}: {} is in weight_map but not in {}", index.string(), json_escape(name), file.string_value());
    return;
  }
  if (fs::exists(single, error)) {
    add_file(single.string());
    return;
  }
  fail_usage("{}: neither model.safetensors nor model.safetensors.index.json is here", path);
}

void Reader::add_file(const std::string& file) {
  const int fd = open_regular_file(file, "safetensors file");
  struct stat stat_buffer {};
  const std::uint64_t size = ::fstat(fd, &stat_buffer) == 0 ? static_cast<std::uint64_t>(stat_buffer.st_size) : 0;
  std::uint64_t length = 0;
  bool read = ::pread(fd, &length, sizeof length, 0) == static_cast<ssize_t>(sizeof length) && length <= kMaxHeader &&
              8 + length <= size;
  std::string text;
  if (read) {
    text.resize(length);
    read = ::pread(fd, text.data(), length, 8) == static_cast<ssize_t>(length);
  }
  ::close(fd);
  if (!read) fail_usage("{}: not a safetensors file (header length {} in a file of {} bytes)", file, length, size);
  std::vector<HeaderEntry> entries;
  try {
    entries = parse_header(text, size - 8 - length);
  } catch (const Error& e) {
    fail_usage("{}: {}", file, e.what());
  }
  for (HeaderEntry& entry : entries) {
    const std::uint64_t element = element_size(entry.dtype);
    if (element == 0) fail_usage("{}: tensor {} has the unknown dtype {}", file, json_escape(entry.name), json_escape(entry.dtype));
    // The shape's byte count, computed without overflow, must be the range's length.
    std::uint64_t bytes = element;
    for (std::int64_t extent : entry.shape)
      bytes = extent == 0 || bytes <= UINT64_MAX / static_cast<std::uint64_t>(extent) ? bytes * static_cast<std::uint64_t>(extent) : UINT64_MAX;
    if (bytes != entry.end - entry.begin)
      fail_usage("{}: tensor {} ({} of shape [{}]) does not fit its byte range of {} bytes", file, json_escape(entry.name),
                 entry.dtype, fmt::join(entry.shape, ", "), entry.end - entry.begin);
    TensorInfo info{entry.dtype, std::move(entry.shape), 8 + length + entry.begin, 8 + length + entry.end, file};
    if (!tensors_.emplace(entry.name, std::move(info)).second)
      fail_usage("{}: tensor {} appears in more than one file", file, json_escape(entry.name));
  }
}

const TensorInfo& Reader::info(const std::string& name) const {
  auto found = tensors_.find(name);
  if (found == tensors_.end()) fail_usage("safetensors: no tensor named {}", json_escape(name));
  return found->second;
}

std::vector<float> Reader::read(const std::string& name) const {
  const TensorInfo& t = info(name);
  const int fd = open_regular_file(t.file, "safetensors file");
  std::string bytes(t.end - t.begin, '\0');
  const bool read = ::pread(fd, bytes.data(), bytes.size(), static_cast<off_t>(t.begin)) == static_cast<ssize_t>(bytes.size());
  ::close(fd);
  if (!read) fail_usage("{}: cannot read tensor {}", t.file, json_escape(name));
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
    fail_usage("{}: tensor {} is {}; weft reads F32, BF16 and F16 weights", t.file, json_escape(name), t.dtype);
  }
  return values;
}

std::string header(const std::vector<NamedTensor>& tensors, const std::map<std::string, std::string>& metadata) {
  JsonWriter header;
  header.begin_object();
  header.begin_object("__metadata__");
  for (const auto& [key, value] : metadata) {
    if (key.empty() || !valid_utf8(key) || !valid_utf8(value)) fail_usage("safetensors: metadata must be UTF-8 text");
    header.field(key, value);
  }
  header.end_object();
  std::set<std::string> names;
  std::uint64_t offset = 0;
  for (const NamedTensor& tensor : tensors) {
    if (tensor.name.empty() || tensor.name == "__metadata__" || !valid_utf8(tensor.name))
      fail_usage("safetensors: tensor name '{}' is empty, reserved or not UTF-8", json_escape(tensor.name.substr(0, 64)));
    if (!names.insert(tensor.name).second) fail_usage("safetensors: tensor {} appears twice", json_escape(tensor.name));
    std::uint64_t count = 1;
    for (std::int64_t extent : tensor.shape) {
      if (extent < 0 || (extent > 0 && count > UINT64_MAX / 4 / static_cast<std::uint64_t>(extent)))
        fail_usage("safetensors: tensor {} has a negative or too large shape", json_escape(tensor.name));
      count *= static_cast<std::uint64_t>(extent);
    }
    if (count != tensor.values.size())
      fail_usage("safetensors: tensor {} has {} values for a shape of {}", json_escape(tensor.name),
                 tensor.values.size(), count);
    header.begin_object(tensor.name).field("dtype", "F32");
    header.begin_array("shape");
    for (std::int64_t extent : tensor.shape) header.field("", extent);
    header.end_array();
    header.begin_array("data_offsets")
        .field("", static_cast<std::int64_t>(offset))
        .field("", static_cast<std::int64_t>(offset + 4 * count))
        .end_array()
        .end_object();
    offset += 4 * count;
  }
  header.end_object();
  std::string json = header.str();
  json.append((8 - json.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  return json;
}

std::vector<HeaderEntry> parse_header(std::string_view json, std::uint64_t data_bytes) {
  const Json root = JsonParser(json).parse();
  if (root.kind != Json::Kind::kObject) fail_usage("safetensors header: not a JSON object");
  std::vector<HeaderEntry> entries;
  std::set<std::string> names;
  for (std::size_t i = 0; i < root.keys.size(); ++i) {
    const std::string& name = root.keys[i];
    const Json& value = root.items[i];
    if (name == "__metadata__") continue;
    if (!names.insert(name).second) fail_usage("safetensors header: tensor {} appears twice", json_escape(name));
    const Json* dtype = member(value, "dtype");
    const Json* shape = member(value, "shape");
    const Json* offsets = member(value, "data_offsets");
    if (value.kind != Json::Kind::kObject || dtype == nullptr || dtype->kind != Json::Kind::kString ||
        shape == nullptr || shape->kind != Json::Kind::kArray || offsets == nullptr ||
        offsets->kind != Json::Kind::kArray || offsets->items.size() != 2)
      fail_usage("safetensors header: tensor {} lacks dtype, shape or data_offsets", json_escape(name));
    HeaderEntry entry{name, dtype->text, {}, 0, 0};
    for (const Json& extent : shape->items) {
      if (extent.kind != Json::Kind::kNumber) fail_usage("safetensors header: tensor {} has a bad shape", json_escape(name));
      entry.shape.push_back(extent.number);
    }
    if (offsets->items[0].kind != Json::Kind::kNumber || offsets->items[1].kind != Json::Kind::kNumber)
      fail_usage("safetensors header: tensor {} has bad data_offsets", json_escape(name));
    entry.begin = static_cast<std::uint64_t>(offsets->items[0].number);
    entry.end = static_cast<std::uint64_t>(offsets->items[1].number);
    if (entry.begin > entry.end || entry.end > data_bytes)
      fail_usage("safetensors header: tensor {} lies outside the {} data bytes", json_escape(name), data_bytes);
    entries.push_back(std::move(entry));
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return entries;
}

void write(const std::string& path, const std::vector<NamedTensor>& tensors,
           const std::map<std::string, std::string>& metadata, const std::string& label_or_empty) {
  const std::string label = label_or_empty.empty() ? path : label_or_empty;
  const std::string json = header(tensors, metadata);
  std::uint64_t data_bytes = 0;
  for (const NamedTensor& tensor : tensors) data_bytes += tensor.values.size() * sizeof(float);
  AtomicFile file(path, label);
  const std::uint64_t length = json.size();  // little-endian on every host weft builds for
  file.write(&length, sizeof length);
  file.write(json);
  for (const NamedTensor& tensor : tensors) file.write(tensor.values.data(), tensor.values.size() * sizeof(float));
  file.commit([&](const std::string& written) {
    // Read back what is on disk: the header must parse to exactly the tensors meant, and the size must match.
    const int fd = open_regular_file(written, "safetensors file");
    struct stat info {};
    std::string head(8 + json.size(), '\0');
    const bool read = ::fstat(fd, &info) == 0 && ::pread(fd, head.data(), head.size(), 0) == static_cast<ssize_t>(head.size());
    ::close(fd);
    std::uint64_t stored = 0;
    if (read) std::memcpy(&stored, head.data(), 8);
    if (!read || stored != length || static_cast<std::uint64_t>(info.st_size) != 8 + length + data_bytes)
      throw Error(ErrorKind::kInternal, fmt::format("{}: the written file does not read back at its size", label));
    if (parse_header(std::string_view(head).substr(8), data_bytes).size() != tensors.size())
      throw Error(ErrorKind::kInternal, fmt::format("{}: the written header does not read back", label));
  });
}

}  // namespace weft::safetensors
