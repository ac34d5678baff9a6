#include "checkpoint/format.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include <google/protobuf/stubs/logging.h>

#include "checkpoint/manifest_check.h"
#include "runtime/error.h"
#include "runtime/file_io.h"
#include "runtime/test_pause.h"

namespace weft::checkpoint {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kFnvOffset = 0xcbf29ce484222325ull;
constexpr std::uint64_t kFnvPrime = 0x100000001b3ull;

// A shard file's checksum, fed piece by piece. Format 1: FNV-1a 64 over the bytes. Format 2 (written now): the
// FNV-1a step on 64-bit little-endian words in 8 interleaved lanes, whose multiplications do not wait on each
// other (about 8x faster than byte by byte), the lanes then folded into one; trailing bytes go byte by byte
// into lane 0. Each step is a bijection of its lane's state, so any change within one lane always shows.
class ShardChecksum {
 public:
  explicit ShardChecksum(int format) : format_(format) { lanes_.fill(kFnvOffset); }

  void update(const void* data, std::size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    if (format_ == 1) {
      for (std::size_t i = 0; i < size; ++i) lanes_[0] = (lanes_[0] ^ bytes[i]) * kFnvPrime;
      return;
    }
    while (size > 0) {
      if (pending_ == 0 && size >= kBlock) {
        const std::size_t blocks = size / kBlock;
        for (std::size_t b = 0; b < blocks; ++b) mix(bytes + b * kBlock);
        bytes += blocks * kBlock;
        size -= blocks * kBlock;
        continue;
      }
      const std::size_t n = std::min(size, kBlock - pending_);
      std::memcpy(block_.data() + pending_, bytes, n);
      pending_ += n;
      bytes += n;
      size -= n;
      if (pending_ == kBlock) {
        mix(block_.data());
        pending_ = 0;
      }
    }
  }

  std::uint64_t value() const {
    if (format_ == 1) return lanes_[0];
    std::uint64_t first = lanes_[0];
    for (std::size_t i = 0; i < pending_; ++i) first = (first ^ block_[i]) * kFnvPrime;
    std::uint64_t hash = kFnvOffset;
    for (std::size_t lane = 0; lane < kLanes; ++lane) hash = (hash ^ (lane == 0 ? first : lanes_[lane])) * kFnvPrime;
    return hash;
  }

 private:
  static constexpr std::size_t kLanes = 8, kBlock = 8 * kLanes;
  void mix(const unsigned char* block) {
    for (std::size_t lane = 0; lane < kLanes; ++lane) {
      std::uint64_t word;
      std::memcpy(&word, block + 8 * lane, 8);
      if constexpr (std::endian::native == std::endian::big) word = __builtin_bswap64(word);
      lanes_[lane] = (lanes_[lane] ^ word) * kFnvPrime;
    }
  }

  int format_;
  std::array<std::uint64_t, kLanes> lanes_;
  std::array<unsigned char, kBlock> block_{};
  std::size_t pending_ = 0;
};

std::uint64_t checksum(int format, const std::string& bytes) {
  ShardChecksum sum(format);
  sum.update(bytes.data(), bytes.size());
  return sum.value();
}

// Checkpoint files are read as regular files only, never through a symbolic link: a crafted manifest must not be
// able to make weft read (and report the size or checksum of) a file outside the checkpoint.
constexpr std::size_t kMaxManifestBytes = std::size_t{1} << 30;

std::string read_all(const std::string& path, std::optional<std::size_t> max_bytes = std::nullopt) {
  return read_regular_file(path, "checkpoint file", max_bytes, Symlinks::kRefuse);
}

void check_size(const std::string& path, std::int64_t found, std::int64_t recorded) {
  if (found != recorded)
    fail_usage("{}: {} bytes, but the manifest records {}: the file is truncated or damaged", path, found, recorded);
}

// A failed save (a full disk, say) is not the user's mistake: exit code 1, with the path and the reason.
template <typename... Args>
[[noreturn]] void fail_save(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(ErrorKind::kInternal, fmt::format(format, std::forward<Args>(args)...) +
                                        "; the previous complete checkpoint is untouched");
}

// A file written durably: created, written in full (retrying short writes), fsynced and closed. Small writes
// (a column-parallel tensor is one run per row) are gathered into a buffer so that each is not a system call.
// A failure is a fail_save naming the file.
class DurableFile {
 public:
  explicit DurableFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd_ < 0) fail_save("{}: cannot create: {}", path_, std::strerror(errno));
  }
  ~DurableFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  DurableFile(const DurableFile&) = delete;
  DurableFile& operator=(const DurableFile&) = delete;

  void write(const void* data, std::size_t size) {
    if (buffer_.size() + size > kBufferBytes) flush();
    if (size >= kBufferBytes) {
      write_through(data, size);
    } else {
      const auto* bytes = static_cast<const char*>(data);
      buffer_.insert(buffer_.end(), bytes, bytes + size);
    }
  }
  void finish() {
    flush();
    const bool synced = ::fsync(fd_) == 0;
    const int error = errno;
    const bool closed = ::close(fd_) == 0;
    fd_ = -1;
    if (!synced || !closed) fail_save("{}: flushing the checkpoint failed: {}", path_, std::strerror(error));
  }

 private:
  static constexpr std::size_t kBufferBytes = std::size_t{1} << 20;

  void flush() {
    write_through(buffer_.data(), buffer_.size());
    buffer_.clear();
  }
  void write_through(const void* data, std::size_t size) {
    const auto* bytes = static_cast<const char*>(data);
    for (std::size_t written = 0; written < size;) {
      const ssize_t n = ::write(fd_, bytes + written, size - written);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail_save("{}: writing the checkpoint failed: {}", path_, std::strerror(errno));
      }
      written += static_cast<std::size_t>(n);
    }
  }

  std::string path_;
  int fd_ = -1;
  std::vector<char> buffer_;
};

void write_durably(const std::string& path, const std::string& bytes) {
  DurableFile file(path);
  file.write(bytes.data(), bytes.size());
  file.finish();
}

void sync_directory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

std::string shard_name(int rank) { return fmt::format("shard_r{}.bin", rank); }
std::string meta_name(int rank) { return fmt::format("shard_r{}.meta", rank); }

}  // namespace

std::string checkpoint_path(const std::string& root, std::int64_t step) {
  return (fs::path(root) / fmt::format("step_{:08d}", step)).string();
}

void write_shard(const std::string& staging, int rank, const std::vector<RunData>& runs) {
  ShardFile shard;
  shard.set_path(shard_name(rank));
  shard.set_rank(rank);
  // Streamed: each run goes from the caller's memory to the file, hashed on the way, with no staging copy.
  DurableFile file((fs::path(staging) / shard_name(rank)).string());
  ShardChecksum sum(kFormatVersion);
  std::int64_t offset = 0;
  for (const RunData& run : runs) {
    Run* entry = shard.add_runs();
    entry->set_tensor(run.tensor);
    entry->set_state(run.state);
    entry->set_global_start(run.global_start);
    entry->set_count(static_cast<std::int64_t>(run.values.size()));
    entry->set_file_offset(offset);
    const std::size_t bytes = run.values.size_bytes();
    sum.update(run.values.data(), bytes);
    file.write(run.values.data(), bytes);
    offset += static_cast<std::int64_t>(bytes);
  }
  file.finish();
  shard.set_bytes(offset);
  shard.set_checksum(sum.value());
  pause_point("save");
  write_durably((fs::path(staging) / meta_name(rank)).string(), shard.SerializeAsString());
}

void commit(const std::string& root, std::int64_t step, Manifest manifest, int world_size, int keep) {
  const std::string final_dir = checkpoint_path(root, step), staging = final_dir + ".tmp";
  for (int rank = 0; rank < world_size; ++rank) {
    const std::string meta_path = (fs::path(staging) / meta_name(rank)).string();
    ShardFile shard;
    if (!shard.ParseFromString(read_all(meta_path))) fail_usage("{}: damaged shard description", meta_path);
    *manifest.add_files() = shard;
    fs::remove(meta_path);
  }
  manifest.set_format_version(kFormatVersion);
  manifest.set_step(step);
  // The manifest is written last and renamed into place: its presence is what makes a checkpoint complete.
  const std::string manifest_path = (fs::path(staging) / "manifest.pb").string();
  write_durably(manifest_path + ".tmp", manifest.SerializeAsString());
  fs::rename(manifest_path + ".tmp", manifest_path);
  sync_directory(staging);
  std::error_code ignored;
  fs::remove_all(final_dir, ignored);  // a leftover from an earlier run that died mid-commit
  fs::rename(staging, final_dir);
  sync_directory(root);
  // Older complete checkpoints beyond `keep` go only now that this one is complete.
  std::vector<std::string> complete;
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.is_directory() && fs::exists(entry.path() / "manifest.pb") &&
        entry.path().filename().string().rfind("step_", 0) == 0)
      complete.push_back(entry.path().string());
  std::sort(complete.begin(), complete.end());
  for (std::size_t i = 0; i + static_cast<std::size_t>(keep) < complete.size(); ++i) fs::remove_all(complete[i], ignored);
}

std::optional<std::string> newest_complete(const std::string& root) {
  std::error_code error;
  if (root.empty() || !fs::is_directory(root, error)) return std::nullopt;
  std::optional<std::string> newest;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || name.rfind("step_", 0) != 0 || name.find(".tmp") != std::string::npos) continue;
    if (!fs::exists(entry.path() / "manifest.pb")) continue;
    if (!newest || entry.path().string() > *newest) newest = entry.path().string();
  }
  return newest;
}

Reader::Reader(const std::string& dir) : dir_(dir) {
  const std::string manifest_path = (fs::path(dir) / "manifest.pb").string();
  std::error_code error;
  if (!fs::exists(fs::symlink_status(manifest_path, error)))
    fail_usage("{}: no manifest.pb: the checkpoint is incomplete (its save did not finish) or not a weft checkpoint",
               dir);
  open_manifest(read_all(manifest_path, kMaxManifestBytes));
}

Reader::Reader(const std::string& dir, const std::string& manifest_bytes) : dir_(dir) { open_manifest(manifest_bytes); }

void Reader::open_manifest(const std::string& bytes) {
  // A damaged manifest is reported by us, once, with the file's name; protobuf's own log lines would only add noise.
  static const bool quiet = [] {
    google::protobuf::SetLogHandler(nullptr);
    return true;
  }();
  (void)quiet;
  const std::string manifest_path = (fs::path(dir_) / "manifest.pb").string();
  if (!manifest_.ParseFromString(bytes)) fail_usage("{}: the manifest is damaged (it does not parse)", manifest_path);
  if (manifest_.format_version() < kOldestFormatVersion || manifest_.format_version() > kFormatVersion)
    fail_usage("{}: checkpoint format version {}, but this weft reads versions {} to {}", manifest_path,
               manifest_.format_version(), kOldestFormatVersion, kFormatVersion);
  // Every number is checked before any is used: shard paths, sizes, runs, the model they describe.
  check_manifest(manifest_, manifest_path);
  for (int f = 0; f < manifest_.files_size(); ++f) {
    const ShardFile& shard = manifest_.files(f);
    const std::string path = (fs::path(dir_) / shard.path()).string();
    std::error_code error;
    const fs::file_status status = fs::symlink_status(path, error);
    if (!fs::exists(status)) fail_usage("{}: missing (the manifest lists it); the checkpoint is damaged", path);
    if (!fs::is_regular_file(status))
      fail_usage("{}: not a regular file (a link or device, which a checkpoint never holds); the checkpoint is damaged",
                 path);
    check_size(path, static_cast<std::int64_t>(fs::file_size(path)), shard.bytes());
    for (const Run& run : shard.runs())
      index_[{run.tensor(), run.state()}].push_back({run.global_start(), run.count(), run.file_offset(), f});
  }
  file_bytes_.resize(static_cast<std::size_t>(manifest_.files_size()));
  for (auto& [key, pieces] : index_)
    std::sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) { return a.start < b.start; });
}

const std::string& Reader::file(int f) const {
  std::optional<std::string>& bytes = file_bytes_[static_cast<std::size_t>(f)];
  if (bytes) return *bytes;
  const ShardFile& shard = manifest_.files(f);
  const std::string path = (fs::path(dir_) / shard.path()).string();
  std::string loaded = read_all(path);
  check_size(path, static_cast<std::int64_t>(loaded.size()), shard.bytes());
  if (const std::uint64_t found = checksum(manifest_.format_version(), loaded); found != shard.checksum())
    fail_usage("{}: checksum mismatch (expected {:016x}, found {:016x}); the checkpoint is damaged", path,
               shard.checksum(), found);
  bytes_loaded_ += shard.bytes();
  return bytes.emplace(std::move(loaded));
}

void Reader::verify_all() const {
  for (int f = 0; f < manifest_.files_size(); ++f) file(f);
}

void Reader::for_each_piece(const std::string& tensor, const std::string& state, std::int64_t global_start,
                            std::int64_t count,
                            const std::function<void(const Piece&, std::int64_t, std::int64_t)>& fn) const {
  auto found = index_.find({tensor, state});
  std::int64_t at = global_start;
  const std::int64_t end = global_start + count;
  if (found != index_.end()) {
    const auto& pieces = found->second;
    // The first piece that could cover `at`, then walk forward.
    auto piece = std::upper_bound(pieces.begin(), pieces.end(), at,
                                  [](std::int64_t value, const Piece& p) { return value < p.start; });
    if (piece != pieces.begin()) --piece;
    for (; piece != pieces.end() && at < end; ++piece) {
      if (piece->start > at) break;
      const std::int64_t piece_end = piece->start + piece->count;
      if (piece_end <= at) continue;
      const std::int64_t n = std::min(end, piece_end) - at;
      fn(*piece, at, n);
      at += n;
    }
  }
  if (at < end)
    fail_usage("{}: holds no {} values for {} element {} (the checkpoint does not cover the model)", dir_, state,
               tensor, at);
}

void Reader::require(const std::string& tensor, const std::string& state, std::int64_t global_start,
                     std::int64_t count) const {
  for_each_piece(tensor, state, global_start, count,
                 [&](const Piece& piece, std::int64_t, std::int64_t) { file(piece.file); });
}

void Reader::read(const std::string& tensor, const std::string& state, std::int64_t global_start, std::int64_t count,
                  float* out) const {
  for_each_piece(tensor, state, global_start, count, [&](const Piece& piece, std::int64_t at, std::int64_t n) {
    std::memcpy(out + (at - global_start), file(piece.file).data() + piece.offset + (at - piece.start) * 4,
                static_cast<std::size_t>(n) * sizeof(float));
  });
}

}  // namespace weft::checkpoint
