#include "embed/callback_store.h"

#include <optional>
#include <string>

#include <fmt/format.h>

#include "runtime/error.h"

namespace weft::embed {

namespace {

class CallbackStore final : public Store {
 public:
  CallbackStore(const weft_store_callbacks& callbacks, void* user) : callbacks_(callbacks), user_(user) {}
  ~CallbackStore() override {
    if (callbacks_.release != nullptr) callbacks_.release(user_);
  }

  void set(const std::string& key, const std::string& value) override {
    check("set", key, callbacks_.set(user_, key.c_str(), value.data(), value.size()));
  }

  std::string get(const std::string& key, std::chrono::milliseconds timeout) override {
    std::optional<std::string> value;
    const weft_store_put_fn put = [](void* sink, const void* data, size_t size) {
      static_cast<std::optional<std::string>*>(sink)->emplace(static_cast<const char*>(data), data ? size : 0);
    };
    const weft_status status =
        callbacks_.get(user_, key.c_str(), std::chrono::duration<double>(timeout).count(), put, &value);
    if (status == WEFT_ERROR_PEER) {
      try {
        throw_store_timeout({key}, timeout);
      } catch (const Error& e) {
        throw Error(ErrorKind::kPeer, e.what() + reason());
      }
    }
    check("get", key, status);
    if (!value)
      throw Error(ErrorKind::kInternal,
                  fmt::format("weft: the store's get callback returned WEFT_OK for key '{}' without a value", key));
    return *value;
  }

  std::int64_t add(const std::string& key, std::int64_t delta) override {
    std::int64_t result = 0;
    check("add", key, callbacks_.add(user_, key.c_str(), delta, &result));
    return result;
  }

  bool check(const std::string& key) override {
    int present = 0;
    check("check", key, callbacks_.check(user_, key.c_str(), &present));
    return present != 0;
  }

 private:
  std::string reason() const {
    const char* why = callbacks_.error != nullptr ? callbacks_.error(user_) : nullptr;
    return why != nullptr && *why != '\0' ? fmt::format(" ({})", why) : "";
  }
  void check(const char* operation, const std::string& key, weft_status status) const {
    if (status == WEFT_OK) return;
    const ErrorKind kind = status == WEFT_ERROR_PEER    ? ErrorKind::kPeer
                           : status == WEFT_ERROR_USAGE ? ErrorKind::kUsage
                                                        : ErrorKind::kInternal;
    throw Error(kind, fmt::format("weft: the store's {} callback failed for key '{}' with status {}{}", operation,
                                  key, static_cast<int>(status), reason()));
  }

  const weft_store_callbacks callbacks_;
  void* const user_;
};

}  // namespace

std::shared_ptr<Store> make_callback_store(const weft_store_callbacks& callbacks, void* user) {
  const char* missing = callbacks.set == nullptr   ? "set"
                        : callbacks.get == nullptr ? "get"
                        : callbacks.add == nullptr ? "add"
                        : callbacks.check == nullptr ? "check"
                                                     : nullptr;
  if (missing != nullptr) fail_usage("weft_store_create_callbacks: the {} callback is NULL", missing);
  return std::make_shared<CallbackStore>(callbacks, user);
}

}  // namespace weft::embed
