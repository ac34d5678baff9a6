// ConfigSchema: every config key with its type, range and place in Config, and the cross-key invariants
// (internal to config*.cc).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/config.h"

namespace weft::config_internal {

enum class ValueKind { kInt, kIntOrAuto, kUint64, kNumber, kBool, kChoice, kString };

// One value as written: its text, and whether YAML read it as null (`key:` with nothing, `~`, `null`).
struct Scalar {
  std::string text;
  bool is_null = false;
};

// A scalar converted to the key's type; only the member matching the key's kind is meaningful.
struct Converted {
  std::int64_t integer = 0;
  std::uint64_t unsigned_integer = 0;
  double number = 0.0;
  bool flag = false;
  int choice = 0;
  std::string text;
};

struct KeySpec {
  std::string_view section;  // "" for keys at the top level (device)
  std::string_view name;
  ValueKind kind;
  double low = 0.0;  // numeric range; integers are also capped at INT_MAX
  double high = 0.0;
  bool has_high = false;
  bool low_open = false;  // low < value instead of low <= value
  bool high_open = false;
  std::vector<std::string_view> choices = {};  // kChoice: names in enum order
  bool allow_empty = true;                     // kString: whether "" (or null) is a valid value
  std::function<void(Config&, const Converted&)> store;

  std::string path() const;
};

// The whole schema, in contract.md order.
const std::vector<KeySpec>& config_schema();
// The section names (model, train, ...); `device` is a top-level key, not a section.
const std::vector<std::string_view>& config_sections();

const KeySpec* find_key(std::string_view section, std::string_view name);
bool is_section(std::string_view name);

// What a key accepts, phrased to follow "expected": "an integer >= 1", "one of fp32, bf16 or fp16".
std::string expectation(const KeySpec& spec);

// Converts `value` for `spec` and stores it into `config`; on failure returns what was expected
// ("expected an integer in 0..3"), leaving `config` untouched.
std::optional<std::string> store_value(const KeySpec& spec, const Scalar& value, Config& config);

// Where an unknown name was written: at the top level of the file a name is a section, in --set a key.
enum class NameContext { kFile, kOverride };

// "train.stpes: unknown key; did you mean train.steps?" (or what the section takes when nothing is close).
// `section` is "" for top-level names; a `section` that is not a section itself is matched fuzzily too.
std::string unknown_key_message(std::string_view section, std::string_view name, NameContext context);

// A broken cross-key invariant: the key to change, its value as shown, and what would be right.
struct Violation {
  std::string path;
  std::string value;
  std::string what;
};

// contract.md's invariants, checked after overrides and before any communicator exists; resolves
// parallel.dp = auto (0) to world_size / (tp * pp). Returns the first invariant broken.
std::optional<Violation> check_invariants(Config& config, int world_size);

// Defined in config.cc, with the reader that needs them most.

// A value or key as it appears in a one-line message: truncated to `max` characters and with control characters
// escaped.
std::string shown(std::string_view text, std::size_t max = 48);

// How far a typo may be from a name and still be suggested: one edit for short names, more for long.
int typo_budget(std::string_view typed);

// "a, b or c"
std::string join_or(const std::vector<std::string_view>& words);

// Optimal-string-alignment edit distance, case-insensitive (a transposition costs 1).
int edit_distance(std::string_view a, std::string_view b);

}  // namespace weft::config_internal
