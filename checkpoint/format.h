// The checkpoint format: each rank's shard file of fp32 runs (global element ranges of named tensors), the
// manifest that rank 0 assembles last, the atomic commit, and a reader that validates before it serves data.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "manifest.pb.h"

namespace weft::checkpoint {

// 2: the shard checksum is the 8-lane word FNV-1a (format.cc); 1 (byte-wise FNV-1a) is still read.
inline constexpr int kFormatVersion = 2;
inline constexpr int kOldestFormatVersion = 1;

// Elements [global_start, global_start + values.size()) of one state of one tensor, as this rank holds them.
// A run of consecutive global elements of one tensor's state; `values` views the caller's memory, which must
// outlive write_shard.
struct RunData {
  std::string tensor;
  std::string state;  // "param", "adam_m", "adam_v"
  std::int64_t global_start = 0;
  std::span<const float> values;
};

// "DIR/step_00000200"; its staging twin ends in ".tmp".
std::string checkpoint_path(const std::string& root, std::int64_t step);

// Every rank: writes shard_r<rank>.bin and its description shard_r<rank>.meta into `staging`, both fsynced.
void write_shard(const std::string& staging, int rank, const std::vector<RunData>& runs);

// Rank 0, after every rank's write_shard: composes the manifest from the ranks' descriptions, writes it
// (fsynced) and renames `staging` to its final name, then removes the oldest complete checkpoints beyond
// `keep`. A crash at any point leaves the previous checkpoints intact and this one incomplete.
void commit(const std::string& root, std::int64_t step, Manifest manifest, int world_size, int keep);

// The newest directory under `root` that holds a manifest, if any.
std::optional<std::string> newest_complete(const std::string& root);

// Opens a checkpoint and checks its manifest (present, parseable, format version, every shard file present with
// the recorded size); throws Error(kUsage) naming the file and the problem otherwise. A shard file is read and
// its checksum checked the first time a require() or read() touches it, so each rank reads only the shards that
// hold its part of the state and no value is served from an unchecked file.
class Reader {
 public:
  // Refuses (Error(kUsage)) what check_manifest refuses, shard files that are missing, of another size, or not
  // regular files (a symbolic link could point anywhere on the machine), and a manifest over 1 GiB.
  explicit Reader(const std::string& dir);
  // The same from manifest bytes already read (the fuzz target), with shard files under `dir`.
  Reader(const std::string& dir, const std::string& manifest_bytes);
  const Manifest& manifest() const { return manifest_; }
  const std::string& dir() const { return dir_; }
  // Copies elements [global_start, global_start + count) of `tensor`'s `state`; throws Error(kUsage) when
  // the checkpoint does not hold all of them.
  void read(const std::string& tensor, const std::string& state, std::int64_t global_start, std::int64_t count,
            float* out) const;
  // Reads and checks the shard files that hold those elements without copying anything out (the same errors as
  // read()): lets a caller validate everything it will read before it changes any state.
  void require(const std::string& tensor, const std::string& state, std::int64_t global_start,
               std::int64_t count) const;
  // Reads and checks every shard file (`weft ckpt inspect`).
  void verify_all() const;
  // Bytes of shard files read and checked so far.
  std::int64_t bytes_loaded() const { return bytes_loaded_; }

 private:
  struct Piece {
    std::int64_t start, count, offset;
    int file;
  };
  void open_manifest(const std::string& bytes);
  const std::string& file(int f) const;  // read and checked on first use
  void for_each_piece(const std::string& tensor, const std::string& state, std::int64_t global_start,
                      std::int64_t count,
                      const std::function<void(const Piece&, std::int64_t at, std::int64_t n)>& fn) const;
  std::string dir_;
  Manifest manifest_;
  mutable std::vector<std::optional<std::string>> file_bytes_;
  mutable std::int64_t bytes_loaded_ = 0;
  std::map<std::pair<std::string, std::string>, std::vector<Piece>> index_;  // sorted by start
};

}  // namespace weft::checkpoint
