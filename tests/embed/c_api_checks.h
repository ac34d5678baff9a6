// What the C API tests share: a failing call's status and message, and one round trip through any weft_store.
#pragma once

#include <catch2/catch.hpp>

#include <cstring>
#include <string>

#include "weft/weft.h"

// The call returns `status` and weft_last_error() names `fragment`.
#define REQUIRE_FAILS(call, status, fragment)                                    \
  do {                                                                           \
    REQUIRE((call) == (status));                                                 \
    INFO("message: " << weft_last_error());                                      \
    CHECK(std::string(weft_last_error()).find(fragment) != std::string::npos); \
  } while (0)

// Sets a value with an embedded NUL, gets it back whole, and adds to a counter twice.
inline void check_store_round_trip(weft_store* store) {
  REQUIRE(weft_store_set(store, "answer", "42\0x", 4) == WEFT_OK);
  char* value = nullptr;
  size_t size = 0;
  REQUIRE(weft_store_get(store, "answer", 1.0, &value, &size) == WEFT_OK);
  CHECK(size == 4);
  CHECK(std::memcmp(value, "42\0x", 4) == 0);
  weft_free(value);
  int64_t total = 0;
  REQUIRE(weft_store_add(store, "count", 5, &total) == WEFT_OK);
  REQUIRE(weft_store_add(store, "count", -2, &total) == WEFT_OK);
  CHECK(total == 3);
}
