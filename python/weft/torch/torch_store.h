// torch's c10d::Store as a libweft store (weft_store_create_callbacks), for the socket groups of backend "weft".
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "weft/weft.h"

namespace weft_torch {

// torch's Store (the group's PrefixStore over the TCPStore or FileStore of init_process_group) as a libweft store:
// its callbacks turn c10d's exceptions into statuses, a DistStoreError (a key that did not appear in time) into
// WEFT_ERROR_PEER, and keep the message for libweft's error.
struct TorchStore {
  c10::intrusive_ptr<c10d::Store> store;
  std::string error;
};

template <typename Body>
inline weft_status store_call(void* user, Body&& body) {
  auto* s = static_cast<TorchStore*>(user);
  try {
    body(*s->store);
    return WEFT_OK;
  } catch (const c10::DistStoreError& e) {
    s->error = e.what_without_backtrace();
    return WEFT_ERROR_PEER;
  } catch (const std::exception& e) {
    s->error = e.what();
    return WEFT_ERROR_INTERNAL;
  }
}

// NULL on failure (weft_last_error says why).
inline weft_store* wrap_store(const c10::intrusive_ptr<c10d::Store>& store) {
  weft_store_callbacks callbacks{};
  callbacks.set = [](void* user, const char* key, const void* value, size_t size) {
    return store_call(user, [&](c10d::Store& s) {
      const auto* bytes = static_cast<const uint8_t*>(value);
      s.set(key, std::vector<uint8_t>(bytes, bytes + size));
    });
  };
  callbacks.get = [](void* user, const char* key, double timeout_s, weft_store_put_fn put, void* sink) {
    return store_call(user, [&](c10d::Store& s) {
      s.wait({key}, std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000.0)));
      const std::vector<uint8_t> value = s.get(key);
      put(sink, value.data(), value.size());
    });
  };
  callbacks.add = [](void* user, const char* key, int64_t delta, int64_t* result) {
    return store_call(user, [&](c10d::Store& s) { *result = s.add(key, delta); });
  };
  callbacks.check = [](void* user, const char* key, int* present) {
    return store_call(user, [&](c10d::Store& s) { *present = s.check({key}) ? 1 : 0; });
  };
  callbacks.error = [](void* user) { return static_cast<const char*>(static_cast<TorchStore*>(user)->error.c_str()); };
  callbacks.release = [](void* user) { delete static_cast<TorchStore*>(user); };
  auto* user = new TorchStore{store, {}};
  weft_store* wrapped = nullptr;
  if (weft_store_create_callbacks(&callbacks, user, &wrapped) != WEFT_OK) delete user;
  return wrapped;
}

}  // namespace weft_torch
