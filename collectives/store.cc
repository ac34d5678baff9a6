#include "collectives/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <mutex>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "runtime/error.h"

namespace weft {

void throw_store_timeout(const std::vector<std::string>& missing, std::chrono::milliseconds timeout) {
  std::string keys;
  for (const auto& key : missing) keys += fmt::format("{}'{}'", keys.empty() ? "" : ", ", key);
  throw Error(ErrorKind::kPeer,
              fmt::format("weft: store key(s) {} not set by any rank within {:.3g} s; a peer rank is missing or stuck "
                          "in its start-up",
                          keys, std::chrono::duration<double>(timeout).count()));
}

void Store::wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const auto& key : keys) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    try {
      get(key, std::max(left, std::chrono::milliseconds(0)));
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kPeer) throw;
      std::vector<std::string> missing;
      for (const auto& k : keys)
        if (!check(k)) missing.push_back(k);
      throw_store_timeout(missing, timeout);
    }
  }
}

namespace {

class MemoryStore final : public Store {
 public:
  void set(const std::string& key, const std::string& value) override {
    {
      std::lock_guard lock(mutex_);
      values_[key] = value;
    }
    changed_.notify_all();
  }
  std::string get(const std::string& key, std::chrono::milliseconds timeout) override {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, timeout, [&] { return values_.count(key) > 0; })) throw_store_timeout({key}, timeout);
    return values_.at(key);
  }
  std::int64_t add(const std::string& key, std::int64_t delta) override {
    std::int64_t value;
    {
      std::lock_guard lock(mutex_);
      auto found = values_.find(key);
      value = (found == values_.end() ? 0 : std::stoll(found->second)) + delta;
      values_[key] = std::to_string(value);
    }
    changed_.notify_all();
    return value;
  }
  bool check(const std::string& key) override {
    std::lock_guard lock(mutex_);
    return values_.count(key) > 0;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, std::string> values_;
};

// Keys may hold any bytes; as file names they are hex-encoded.
std::string encode_key(const std::string& key) {
  std::string name = "k_";
  for (unsigned char c : key) name += fmt::format("{:02x}", c);
  return name;
}

class FileStore final : public Store {
 public:
  explicit FileStore(std::filesystem::path directory) : directory_(std::move(directory)) {
    std::error_code error;
    std::filesystem::create_directories(directory_, error);
    if (!std::filesystem::is_directory(directory_))
      fail_usage("store directory {}: cannot create it: {}", directory_.string(), error.message());
  }

  void set(const std::string& key, const std::string& value) override { write(key, value); }

  std::string get(const std::string& key, std::chrono::milliseconds timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto pause = std::chrono::microseconds(100);
    for (;;) {
      if (auto value = read(key)) return *value;
      if (std::chrono::steady_clock::now() >= deadline) throw_store_timeout({key}, timeout);
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(20000));  // poll often at first, then gently
    }
  }

  std::int64_t add(const std::string& key, std::int64_t delta) override {
    // One writer at a time for every counter of the store: flock on a lock file beside the keys.
    const std::string lock_path = (directory_ / "lock").string();
    const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) throw Error(ErrorKind::kInternal, fmt::format("store {}: {}", lock_path, std::strerror(errno)));
    while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
    }
    std::int64_t value = delta;
    try {
      if (auto current = read(key)) value += std::stoll(*current);
      write(key, std::to_string(value));
    } catch (...) {
      ::close(fd);  // closing releases the lock
      throw;
    }
    ::close(fd);
    return value;
  }

  bool check(const std::string& key) override { return std::filesystem::exists(directory_ / encode_key(key)); }

 private:
  std::optional<std::string> read(const std::string& key) const {
    std::ifstream in(directory_ / encode_key(key), std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }

  // Written under a name of its own, then renamed: a reader sees the whole value or none.
  void write(const std::string& key, const std::string& value) {
    const auto final_path = directory_ / encode_key(key);
    const auto temporary = directory_ / fmt::format(".tmp.{}.{}.{}", ::getpid(),
                                                    std::hash<std::thread::id>()(std::this_thread::get_id()), encode_key(key));
    {
      std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
      out.write(value.data(), static_cast<std::streamsize>(value.size()));
      if (!out.flush())
        throw Error(ErrorKind::kInternal, fmt::format("store {}: cannot write {}", directory_.string(), temporary.string()));
    }
    std::error_code error;
    std::filesystem::rename(temporary, final_path, error);
    if (error)
      throw Error(ErrorKind::kInternal,
                  fmt::format("store {}: cannot rename {}: {}", directory_.string(), temporary.string(), error.message()));
  }

  std::filesystem::path directory_;
};

}  // namespace

std::shared_ptr<Store> make_memory_store() { return std::make_shared<MemoryStore>(); }

std::shared_ptr<Store> make_file_store(const std::string& directory) { return std::make_shared<FileStore>(directory); }

}  // namespace weft
