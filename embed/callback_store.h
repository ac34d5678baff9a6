// CallbackStore: a weft::Store whose operations are the C API caller's functions (weft_store_create_callbacks).
#pragma once

#include <memory>

#include "collectives/store.h"
#include "weft/weft.h"

namespace weft::embed {

// Error(kUsage) when a required callback is NULL. The store calls callbacks.release(user) when destroyed.
std::shared_ptr<Store> make_callback_store(const weft_store_callbacks& callbacks, void* user);

}  // namespace weft::embed
