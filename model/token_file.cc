#include "model/token_file.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "runtime/error.h"
#include "runtime/file_io.h"
#include "runtime/json_writer.h"

namespace weft {
namespace {

constexpr char kWeftMagic[8] = {'W', 'E', 'F', 'T', 'T', 'O', 'K', '1'};
constexpr std::size_t kVersion1Header = 32, kVersion2Header = 40;
// llm.c's shards: 256 int32s (magic 20240520, version 1 = uint16 tokens, token count, ...), then the tokens.
constexpr std::int32_t kLlmcMagic = 20240520;
constexpr std::size_t kLlmcHeader = 256 * sizeof(std::int32_t);
// The tokenizer's model is kept to what a SentencePiece model can be.
constexpr std::uint64_t kMaxTokenizerBytes = std::uint64_t{256} << 20;

template <typename T>
T load_le(const unsigned char* at) {
  T value;
  std::memcpy(&value, at, sizeof value);
  return value;
}

// Tokens are unsigned 16- or 32-bit ids; ids are only ever compared with model.vocab_size, never masked, so a
// damaged file cannot smuggle an id past the check.
class MappedTokenCorpus final : public TokenCorpus {
 public:
  MappedTokenCorpus(void* mapping, std::size_t mapped_bytes, const TokenFileInfo& info)
      : mapping_(mapping), mapped_bytes_(mapped_bytes), width_(info.width), count_(info.count),
        data_(static_cast<const unsigned char*>(mapping) + info.data_offset), offset_(info.data_offset),
        tokenizer_{info.tokenizer, info.tokenizer_model, info.vocab_size} {
    for (std::int64_t i = 0; i < count_; ++i) max_ = std::max(max_, load(i));
  }
  ~MappedTokenCorpus() override { munmap(mapping_, mapped_bytes_); }
  CorpusTokenizer tokenizer() const override { return tokenizer_; }
  std::int64_t size() const override { return count_; }
  // Only called after open_corpus has checked every id against vocab_size (which fits in an int32).
  void read(std::int64_t start, int count, std::int32_t* out) const override {
    for (int i = 0; i < count; ++i) out[i] = static_cast<std::int32_t>(load(start + i));
  }
  std::int64_t max_token() const override { return max_; }
  std::int64_t first_token_at_least(std::int64_t bound) const override {
    for (std::int64_t i = 0; i < count_; ++i)
      if (load(i) >= bound) return i;
    return -1;
  }
  std::int64_t byte_offset(std::int64_t index) const override { return offset_ + index * width_; }
  std::int64_t token_at(std::int64_t index) const override { return load(index); }

 private:
  std::int64_t load(std::int64_t i) const {
    const unsigned char* at = data_ + i * width_;
    return width_ == 2 ? std::int64_t{load_le<std::uint16_t>(at)} : std::int64_t{load_le<std::uint32_t>(at)};
  }
  void* mapping_;
  std::size_t mapped_bytes_;
  int width_;
  std::int64_t count_;
  const unsigned char* data_;
  std::int64_t offset_;
  CorpusTokenizer tokenizer_;
  std::int64_t max_ = 0;
};

// Whole tokens after `data_offset`, exactly: what is wrong otherwise, or "".
std::string size_problem(const TokenFileInfo& info, std::uint64_t file_bytes) {
  const std::uint64_t payload = file_bytes - static_cast<std::uint64_t>(info.data_offset);
  const auto count = static_cast<std::uint64_t>(info.count), width = static_cast<std::uint64_t>(info.width);
  if (count > payload / width || count * width != payload)
    return fmt::format("header says {} tokens of {} bytes but the file holds {} bytes after the header", count, width,
                       payload);
  return "";
}

TokenFileInfo weft_info(int fd, const std::string& path, std::uint64_t file_bytes) {
  unsigned char header[kVersion2Header] = {};
  const auto got = ::pread(fd, header, kVersion2Header, 0);
  if (got < static_cast<ssize_t>(kVersion1Header))
    fail_usage("{}: not a weft token file: shorter than its header (write one with `weft data prepare`)", path);
  if (std::memcmp(header, kWeftMagic, sizeof kWeftMagic) != 0)
    fail_usage("{}: not a usable weft token file: bad magic (expected WEFTTOK1)", path);
  const auto version = load_le<std::uint32_t>(header + 8), width = load_le<std::uint32_t>(header + 12);
  TokenFileInfo info;
  info.format = TokenFormat::kWeft;
  info.count = static_cast<std::int64_t>(std::min<std::uint64_t>(load_le<std::uint64_t>(header + 16), INT64_MAX));
  info.vocab_size = load_le<std::uint32_t>(header + 24);
  if (version != 1 && version != 2)
    fail_usage("{}: not a usable weft token file: format version {} (this weft reads 1 and 2)", path, version);
  if (width != 2 && width != 4)
    fail_usage("{}: not a usable weft token file: {} bytes per token (expected 2 or 4)", path, width);
  if (info.vocab_size == 0) fail_usage("{}: not a usable weft token file: header says vocabulary size 0", path);
  info.width = static_cast<int>(width);
  info.data_offset = kVersion1Header;
  if (version == 2) {
    if (got < static_cast<ssize_t>(kVersion2Header)) fail_usage("{}: not a usable weft token file: header cut short", path);
    const auto kind_bytes = load_le<std::uint32_t>(header + 28);
    const auto model_bytes = load_le<std::uint64_t>(header + 32);
    if (kind_bytes > 64 || model_bytes > kMaxTokenizerBytes ||
        kVersion2Header + kind_bytes + model_bytes > file_bytes)
      fail_usage("{}: not a usable weft token file: its tokenizer section ({} + {} bytes) does not fit the file", path,
                 kind_bytes, model_bytes);
    std::string section(kind_bytes + model_bytes, '\0');
    if (::pread(fd, section.data(), section.size(), kVersion2Header) != static_cast<ssize_t>(section.size()))
      fail_usage("{}: cannot read its tokenizer section: {}", path, std::strerror(errno));
    info.tokenizer = section.substr(0, kind_bytes);
    info.tokenizer_model = section.substr(kind_bytes);
    // The kind comes from the file: only a known one is passed on (and the bytes of another shown escaped).
    if (!info.tokenizer.empty() && info.tokenizer != "bytes" && info.tokenizer != "sentencepiece")
      fail_usage("{}: not a usable weft token file: unknown tokenizer \"{}\" (weft knows bytes and sentencepiece)",
                 path, json_escape(info.tokenizer));
    const std::uint64_t end = kVersion2Header + kind_bytes + model_bytes;
    info.data_offset = static_cast<std::int64_t>((end + 7) / 8 * 8);
    if (static_cast<std::uint64_t>(info.data_offset) > file_bytes)
      fail_usage("{}: not a usable weft token file: no room for tokens after the header", path);
  }
  if (const std::string problem = size_problem(info, file_bytes); !problem.empty())
    fail_usage("{}: not a usable weft token file: {}", path, problem);
  return info;
}

TokenFileInfo llmc_info(int fd, const std::string& path, std::uint64_t file_bytes) {
  std::int32_t header[3] = {};
  if (file_bytes < kLlmcHeader || ::pread(fd, header, sizeof header, 0) != sizeof header)
    fail_usage("{}: not an llm.c token file: shorter than its 1024-byte header", path);
  if (header[0] != kLlmcMagic) fail_usage("{}: not an llm.c token file: magic {} (expected {})", path, header[0], kLlmcMagic);
  if (header[1] != 1) fail_usage("{}: llm.c token file version {}; weft reads version 1 (uint16 tokens)", path, header[1]);
  if (header[2] < 0) fail_usage("{}: llm.c token file with a negative token count {}", path, header[2]);
  TokenFileInfo info{.format = TokenFormat::kLlmc, .width = 2, .count = header[2],
                     .data_offset = static_cast<std::int64_t>(kLlmcHeader), .tokenizer = {}, .tokenizer_model = {}};
  if (const std::string problem = size_problem(info, file_bytes); !problem.empty())
    fail_usage("{}: not a usable llm.c token file: {}", path, problem);
  return info;
}

TokenFileInfo raw_info(const std::string& path, std::uint64_t file_bytes, int width) {
  if (file_bytes % static_cast<std::uint64_t>(width) != 0)
    fail_usage("{}: {} bytes is not a whole number of uint{} tokens", path, file_bytes, 8 * width);
  return TokenFileInfo{.format = width == 2 ? TokenFormat::kUint16 : TokenFormat::kUint32, .width = width,
                       .count = static_cast<std::int64_t>(file_bytes / static_cast<std::uint64_t>(width)),
                       .tokenizer = {}, .tokenizer_model = {}};
}

TokenFileInfo info_of(int fd, const std::string& path, TokenFormat format) {
  struct stat status {};
  fstat(fd, &status);
  const auto file_bytes = static_cast<std::uint64_t>(status.st_size);
  if (format == TokenFormat::kAuto) {
    unsigned char magic[8] = {};
    const auto got = ::pread(fd, magic, sizeof magic, 0);
    if (got == sizeof magic && std::memcmp(magic, kWeftMagic, sizeof kWeftMagic) == 0)
      format = TokenFormat::kWeft;
    else if (got >= 4 && load_le<std::int32_t>(magic) == kLlmcMagic)
      format = TokenFormat::kLlmc;
    else
      fail_usage("{}: neither a weft token file nor an llm.c .bin (no magic number); for a raw array of token ids "
                 "set data.format to uint16 or uint32",
                 path);
  }
  switch (format) {
    case TokenFormat::kLlmc: return llmc_info(fd, path, file_bytes);
    case TokenFormat::kUint16: return raw_info(path, file_bytes, 2);
    case TokenFormat::kUint32: return raw_info(path, file_bytes, 4);
    default: return weft_info(fd, path, file_bytes);
  }
}

// Closes a descriptor on every path out.
struct FileCloser {
  int fd;
  ~FileCloser() { ::close(fd); }
};

}  // namespace

TokenFileInfo read_token_file_info(const std::string& path, TokenFormat format) {
  const FileCloser file{open_regular_file(path, "token file")};
  return info_of(file.fd, path, format);
}

std::unique_ptr<TokenCorpus> open_token_file(const std::string& path, TokenFormat format) {
  const FileCloser file{open_regular_file(path, "token file")};
  const TokenFileInfo info = info_of(file.fd, path, format);
  struct stat status {};
  fstat(file.fd, &status);
  const auto file_bytes = static_cast<std::size_t>(status.st_size);
  if (file_bytes == 0) fail_usage("{}: the token file is empty", path);
  void* mapping = mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, file.fd, 0);
  if (mapping == MAP_FAILED) fail_usage("{}: cannot map token file: {}", path, std::strerror(errno));
  return std::make_unique<MappedTokenCorpus>(mapping, file_bytes, info);
}

void write_token_file(const std::string& path, const std::vector<std::int32_t>& tokens, std::int32_t vocab_size,
                      const Tokenizer* tokenizer) {
  const std::uint32_t width = vocab_size <= 65536 ? 2 : 4;
  const std::string kind = tokenizer ? std::string(tokenizer->kind()) : std::string();
  const std::string model = tokenizer ? tokenizer->serialized() : std::string();
  unsigned char header[kVersion2Header] = {};
  std::memcpy(header, kWeftMagic, sizeof kWeftMagic);
  const std::uint32_t version = kTokenFileVersion, vocab = static_cast<std::uint32_t>(vocab_size);
  const auto kind_bytes = static_cast<std::uint32_t>(kind.size());
  const std::uint64_t count = tokens.size(), model_bytes = model.size();
  std::memcpy(header + 8, &version, 4);
  std::memcpy(header + 12, &width, 4);
  std::memcpy(header + 16, &count, 8);
  std::memcpy(header + 24, &vocab, 4);
  std::memcpy(header + 28, &kind_bytes, 4);
  std::memcpy(header + 32, &model_bytes, 8);
  // A job may be reading the old file through a memory map: it keeps its copy, as the new one is renamed over it.
  AtomicFile out(path, fmt::format("token file {}", path));
  out.write(header, kVersion2Header);
  out.write(kind);
  out.write(model);
  const std::size_t padding = (8 - (kVersion2Header + kind.size() + model.size()) % 8) % 8;
  out.write(std::string(padding, '\0'));
  for (std::int32_t token : tokens) {
    if (width == 2) {
      auto value = static_cast<std::uint16_t>(token);
      out.write(&value, 2);
    } else {
      auto value = static_cast<std::uint32_t>(token);
      out.write(&value, 4);
    }
  }
  out.commit([&](const std::string& written) {
    if (open_token_file(written)->size() != static_cast<std::int64_t>(count))
      throw Error(ErrorKind::kInternal, fmt::format("{}: the written token file does not read back", path));
  });
}

std::int64_t prepare_token_file(const std::string& text_path, const std::string& out_path, const Tokenizer& tokenizer) {
  struct stat input {}, output {};
  if (::stat(text_path.c_str(), &input) == 0 && ::stat(out_path.c_str(), &output) == 0 &&
      input.st_dev == output.st_dev && input.st_ino == output.st_ino)
    fail_usage("--output {}: is the input file {} itself; write the tokens to another file", out_path, text_path);
  const std::vector<std::int32_t> tokens = tokenizer.encode(read_regular_file(text_path, "text"));
  write_token_file(out_path, tokens, tokenizer.vocab_size(), &tokenizer);
  return static_cast<std::int64_t>(tokens.size());
}

}  // namespace weft
