// Config loading: a YAML event reader bounded by the schema, --set overrides, error positions and
// did-you-mean suggestions for unknown keys.
#include "runtime/config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "runtime/config_schema.h"
#include "runtime/error.h"
#include "runtime/file_io.h"

namespace weft {
namespace config_internal {
namespace {

bool same(char a, char b) {
  return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
}

std::string keys_of(std::string_view section) {
  std::string out;
  for (const KeySpec& spec : config_schema()) {
    if (spec.section != section) continue;
    out += out.empty() ? "" : ", ";
    out += spec.name;
  }
  return out;
}

}  // namespace

int edit_distance(std::string_view a, std::string_view b) {
  // Keys are short; anything long is not a typo of one, so skip the quadratic table.
  if (a.size() > 64 || b.size() > 64) return INT_MAX / 2;
  std::vector<std::vector<int>> d(a.size() + 1, std::vector<int>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = static_cast<int>(i);
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = static_cast<int>(j);
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      int cost = same(a[i - 1], b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && same(a[i - 1], b[j - 2]) && same(a[i - 2], b[j - 1])) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string unknown_key_message(std::string_view section, std::string_view name, NameContext context) {
  std::string typed = section.empty() ? std::string(name) : fmt::format("{}.{}", section, name);
  bool known_section = section.empty() || is_section(section);
  const std::vector<KeySpec>& schema = config_schema();
  std::string best;
  int best_distance = INT_MAX;
  auto consider = [&](const std::string& candidate, int distance, int budget) {
    if (distance <= budget && distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  };
  if (section.empty()) {
    // A misspelt section or top-level key ("trian"), else a key written outside its section ("steps").
    for (std::string_view s : config_sections()) consider(std::string(s), edit_distance(name, s), typo_budget(name));
    consider("device", edit_distance(name, "device"), typo_budget(name));
  } else if (known_section) {
    for (const KeySpec& spec : schema) {
      if (spec.section == section) consider(spec.path(), edit_distance(name, spec.name), typo_budget(name));
    }
  } else {
    // Only --set can name an unknown section here ("trian.steps"): match the whole dotted path.
    for (const KeySpec& spec : schema) consider(spec.path(), edit_distance(typed, spec.path()), typo_budget(typed));
  }
  if (best.empty()) {
    // The right key in the wrong section ("train.tp" -> parallel.tp), then a close key anywhere.
    for (const KeySpec& spec : schema) {
      if (edit_distance(spec.name, name) == 0) consider(spec.path(), 0, 0);
    }
    for (const KeySpec& spec : schema) consider(spec.path(), edit_distance(name, spec.name), typo_budget(name) - 1);
  }
  std::string what = section.empty() && context == NameContext::kFile ? "unknown section" : "unknown key";
  if (!best.empty()) return fmt::format("{}: {}; did you mean {}?", shown(typed), what, best);
  if (section.empty() && context == NameContext::kOverride) {
    return fmt::format("{}: {}; --set takes a dotted key such as train.steps or parallel.zero", shown(typed), what);
  }
  if (section.empty()) {
    std::vector<std::string_view> names = config_sections();
    names.push_back("device");
    return fmt::format("{}: {}; expected one of {}", shown(typed), what, join_or(names));
  }
  if (known_section) return fmt::format("{}: {}; {} takes {}", shown(typed), what, section, keys_of(section));
  return fmt::format("{}: {}; sections are {}", shown(typed), what, join_or(config_sections()));
}

std::string shown(std::string_view text, std::size_t max) {
  std::string out;
  for (char c : text.substr(0, max)) {
    if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  if (text.size() > max) out += "...";
  return out;
}

}  // namespace config_internal

namespace {

using config_internal::config_sections;
using config_internal::find_key;
using config_internal::is_section;
using config_internal::KeySpec;
using config_internal::NameContext;
using config_internal::Scalar;
using config_internal::shown;
using config_internal::unknown_key_message;

// Where a key's value came from, so that a broken invariant points at the line (or --set) to change.
struct Origin {
  enum class Kind { kFile, kOverride };  // keys left at their default have no Origin
  Kind kind = Kind::kFile;
  YAML::Mark mark;
  std::string assignment;  // the --set argument, for kOverride
};

constexpr std::string_view kEmptyConfig = "the config is empty; expected a map of sections (model, train, ...)";

std::string shown_value(const Scalar& value) {
  return value.is_null ? "(empty)" : value.text.empty() ? "\"\"" : shown(value.text);
}

// The config being built and where each key came from; every message prefix follows from the origin.
class ConfigBuilder {
 public:
  ConfigBuilder(std::string source, const std::string& text) : source_(std::move(source)), text_(text) {
    config_.source_path = source_;
  }

  Config& config() { return config_; }
  const std::string& source() const { return source_; }

  std::string at(const YAML::Mark& mark) const {
    if (mark.is_null()) return source_ + ": ";
    return fmt::format("{}:{}:{}: ", source_, mark.line + 1, mark.column + 1);
  }

  std::string at(const Origin& origin) const {
    if (origin.kind == Origin::Kind::kFile) return at(origin.mark);
    return fmt::format("--set {}: ", shown(origin.assignment));
  }

  [[noreturn]] void fail_at(const YAML::Mark& mark, const std::string& what) const {
    throw Error(ErrorKind::kUsage, at(mark) + what + tab_hint(mark));
  }

  // Converts and stores one value; a later set of the same key (an override) replaces the earlier one.
  void set(const KeySpec& spec, const Scalar& value, const Origin& origin) {
    if (std::optional<std::string> problem = store_value(spec, value, config_)) {
      throw Error(ErrorKind::kUsage,
                  fmt::format("{}{} = {}: {}", at(origin), spec.path(), shown_value(value), *problem));
    }
    origins_[spec.path()] = origin;
  }

  // Records where every key came from in the config, so later checks can point at the line (or --set).
  Config& finish() {
    for (const auto& [path, origin] : origins_) config_.origins[path] = at(origin);
    return config_;
  }

 private:
  // YAML forbids tabs in indentation, and what yaml-cpp makes of such a line is rarely a clear error.
  std::string tab_hint(const YAML::Mark& mark) const {
    if (mark.is_null()) return "";
    std::size_t start = 0;
    for (int line = 0; line < mark.line && start != std::string::npos; ++line) {
      start = text_.find('\n', start);
      if (start != std::string::npos) ++start;
    }
    if (start >= text_.size() || text_[start] != '\t') return "";
    return fmt::format(" (line {} is indented with a tab; YAML indents with spaces)", mark.line + 1);
  }

  std::string source_;
  const std::string& text_;  // the YAML being read, for tab_hint
  Config config_;
  std::map<std::string, Origin> origins_;
};

// Receives yaml-cpp's parse events and applies them to the schema as they arrive. The schema is two levels
// deep (section -> key -> scalar), so any list or map where a scalar belongs is rejected at its first event:
// a 100k-element list or 10k-deep nesting costs nothing and never reaches yaml-cpp's recursion limit.
class SchemaReader : public YAML::EventHandler {
 public:
  explicit SchemaReader(ConfigBuilder& builder) : builder_(builder) {}

  bool saw_document() const { return state_ != State::kDocument; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (state_ != State::kDone) return;
    builder_.fail_at(mark, "a config is one YAML document; found a second one (after '---')");
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { on_scalar(mark, Scalar{"", true}, anchor); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, const std::string& value) override {
    on_scalar(mark, Scalar{value, false}, anchor);
  }

  // Aliases of scalars (`bucket_mb: *width`) read as the scalar; a section's keys are its own, so an alias of a
  // whole section is refused like any other map where it does not belong.
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto scalar = scalars_.find(anchor);
    if (scalar == scalars_.end()) return on_container(mark, "*alias", "an alias of a list or map");
    on_scalar(mark, scalar->second, YAML::NullAnchor);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    on_container(mark, "[...]", "a list");
  }
  void OnSequenceEnd() override {}  // never reached: every sequence is rejected where it starts

  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    if (state_ == State::kDocument) {
      state_ = State::kTopKey;
    } else if (state_ == State::kTopValue && key_ == nullptr) {
      state_ = State::kSectionKey;
    } else {
      on_container(mark, "{...}", "a map");
    }
  }

  void OnMapEnd() override { state_ = state_ == State::kSectionKey ? State::kTopKey : State::kDone; }

 private:
  enum class State { kDocument, kTopKey, kTopValue, kSectionKey, kSectionValue, kDone };

  void on_scalar(const YAML::Mark& mark, const Scalar& scalar, YAML::anchor_t anchor) {
    if (anchor != YAML::NullAnchor) scalars_[anchor] = scalar;
    switch (state_) {
      case State::kDocument:
        if (scalar.is_null) builder_.fail_at(mark, std::string(kEmptyConfig));
        builder_.fail_at(mark, fmt::format("the top level must be a map of sections (model, train, ...), found '{}'",
                                           shown(scalar.text)));
      case State::kTopKey:
      case State::kSectionKey:
        if (scalar.is_null) builder_.fail_at(mark, fmt::format("{}expected a key name, found an empty key", prefix()));
        return state_ == State::kTopKey ? top_key(scalar.text, mark) : section_key(scalar.text, mark);
      case State::kTopValue:
        if (key_ != nullptr) return value(scalar, mark);  // a top-level key such as device
        if (!scalar.is_null) {
          builder_.fail_at(mark,
                           fmt::format("{} = {}: expected a map of {} keys", section_, shown(scalar.text), section_));
        }
        state_ = State::kTopKey;  // `train:` with nothing under it keeps the defaults
        return;
      case State::kSectionValue:
        return value(scalar, mark);
      case State::kDone:
        break;
    }
  }

  // A list, map or alias of one where this reader expects a scalar or a section.
  void on_container(const YAML::Mark& mark, std::string_view shape, std::string_view description) {
    switch (state_) {
      case State::kDocument:
        builder_.fail_at(
            mark, fmt::format("the top level must be a map of sections (model, train, ...), found {}", description));
      case State::kTopKey:
      case State::kSectionKey:
        builder_.fail_at(mark, fmt::format("{}expected a key name, found {}", prefix(), description));
      case State::kTopValue:
        if (key_ == nullptr) {
          builder_.fail_at(mark, fmt::format("{} = {}: expected a map of {} keys", section_, shape, section_));
        }
        [[fallthrough]];
      case State::kSectionValue:
        builder_.fail_at(mark, fmt::format("{} = {}: expected {}", key_->path(), shape, expectation(*key_)));
      case State::kDone:
        break;
    }
    builder_.fail_at(mark, fmt::format("unexpected {}", description));
  }

  std::string prefix() const { return state_ == State::kSectionKey ? std::string(section_) + ": " : std::string(); }

  void top_key(const std::string& name, const YAML::Mark& mark) {
    key_ = find_key("", name);
    if (key_ == nullptr && !is_section(name)) builder_.fail_at(mark, unknown_key_message("", name, NameContext::kFile));
    check_duplicate(name, mark, key_ == nullptr ? "section" : "key");
    key_mark_ = mark;
    section_ =
        key_ != nullptr ? std::string_view() : *std::find(config_sections().begin(), config_sections().end(), name);
    state_ = State::kTopValue;
  }

  void section_key(const std::string& name, const YAML::Mark& mark) {
    key_ = find_key(section_, name);
    if (key_ == nullptr) builder_.fail_at(mark, unknown_key_message(section_, name, NameContext::kFile));
    check_duplicate(key_->path(), mark, "key");
    key_mark_ = mark;
    state_ = State::kSectionValue;
  }

  void check_duplicate(const std::string& path, const YAML::Mark& mark, std::string_view what) {
    auto [first, inserted] = seen_.emplace(path, mark);
    if (!inserted) {
      builder_.fail_at(mark, fmt::format("{}: duplicate {} (first at line {}, column {})", path, what,
                                         first->second.line + 1, first->second.column + 1));
    }
  }

  void value(const Scalar& scalar, const YAML::Mark& value_mark) {
    // An empty value has no position of its own (yaml-cpp reports the next token), so point at its key.
    const YAML::Mark& mark = scalar.is_null ? key_mark_ : value_mark;
    builder_.set(*key_, scalar, Origin{Origin::Kind::kFile, mark, {}});
    state_ = key_->section.empty() ? State::kTopKey : State::kSectionKey;
    if (state_ == State::kTopKey) key_ = nullptr;
  }

  ConfigBuilder& builder_;
  State state_ = State::kDocument;
  std::string_view section_;      // the section being read (names live in the schema's static table)
  const KeySpec* key_ = nullptr;  // the key whose value comes next; null while reading a section
  YAML::Mark key_mark_;
  std::map<std::string, YAML::Mark> seen_;    // path -> where it was first set, to reject duplicates
  std::map<YAML::anchor_t, Scalar> scalars_;  // anchored scalars, for aliases
};

void read_yaml(ConfigBuilder& builder, const std::string& text) {
  std::istringstream in(text);
  try {
    YAML::Parser parser(in);
    SchemaReader reader(builder);
    if (!parser.HandleNextDocument(reader) || !reader.saw_document()) {
      throw Error(ErrorKind::kUsage, fmt::format("{}: {}", builder.source(), kEmptyConfig));
    }
    parser.HandleNextDocument(reader);  // a second document is an error, not silently ignored
  } catch (const YAML::Exception& error) {
    // yaml-cpp's message may quote the offending character, a newline or NUL included: one line, escaped.
    builder.fail_at(error.mark, "invalid YAML: " + shown(error.msg, 200));
  }
}

void apply_override(ConfigBuilder& builder, const ConfigOverride& override_) {
  std::string assignment = override_.key + "=" + override_.value;
  std::string_view key = override_.key;
  std::size_t dot = key.find('.');
  std::string_view section = dot == std::string_view::npos ? std::string_view() : key.substr(0, dot);
  std::string_view name = dot == std::string_view::npos ? key : key.substr(dot + 1);
  const KeySpec* spec = find_key(section, name);
  if (spec == nullptr && section.empty() && is_section(name)) {
    auto first = std::find_if(config_internal::config_schema().begin(), config_internal::config_schema().end(),
                              [&](const KeySpec& candidate) { return candidate.section == name; });
    fail_usage("--set {}: {} is a section; set one key inside it, e.g. --set {}=...", shown(assignment), name,
               first->path());
  }
  if (spec == nullptr) {
    fail_usage("--set {}: {}", shown(assignment), unknown_key_message(section, name, NameContext::kOverride));
  }
  // The value is read as YAML, so `comm.overlap=false` and `checkpoint.dir="a b"` mean what they would in the
  // file; text YAML cannot parse is taken verbatim. Command lines are short, so a full parse is cheap.
  Scalar value{override_.value, false};
  try {
    YAML::Node node = YAML::Load(override_.value);
    if (node.IsMap() || node.IsSequence()) {
      fail_usage("--set {}: {} = {}: expected {}", shown(assignment), spec->path(), node.IsMap() ? "{...}" : "[...]",
                 expectation(*spec));
    }
    value = node.IsScalar() ? Scalar{node.Scalar(), false} : Scalar{"", true};
  } catch (const YAML::Exception&) {
  }
  builder.set(*spec, value, Origin{Origin::Kind::kOverride, YAML::Mark::null_mark(), assignment});
}

}  // namespace

ConfigOverride parse_override(const std::string& assignment) {
  std::size_t equals = assignment.find('=');
  if (equals == std::string::npos) {
    fail_usage("--set {}: expected KEY=VALUE, e.g. --set parallel.zero=3", shown(assignment));
  }
  std::string key = assignment.substr(0, equals);
  // Tolerate `--set "train.steps = 5"`: the key never contains spaces, and YAML trims the value.
  key.erase(0, key.find_first_not_of(" \t"));
  key.erase(key.find_last_not_of(" \t") + 1);
  if (key.empty()) fail_usage("--set {}: the key before '=' is empty; expected KEY=VALUE", shown(assignment));
  return ConfigOverride{key, assignment.substr(equals + 1)};
}

Config parse_config_text(const std::string& yaml_text, const std::string& source_name,
                         const std::vector<ConfigOverride>& overrides, int world_size) {
  ConfigBuilder builder(source_name, yaml_text);
  read_yaml(builder, yaml_text);
  for (const ConfigOverride& override_ : overrides) apply_override(builder, override_);
  if (world_size < 1) fail_usage("{}: the world size must be >= 1, got {}", source_name, world_size);
  Config& config = builder.finish();
  config.world_size = world_size;
  if (auto broken = config_internal::check_invariants(config, world_size))
    fail_config_key(config, broken->path, broken->value, broken->what);
  return config;
}

std::string Config::where(const std::string& path) const {
  auto found = origins.find(path);
  return found == origins.end() ? source_path + ": " : found->second;
}

void fail_config_key(const Config& config, const std::string& path, const std::string& value, const std::string& what) {
  throw Error(ErrorKind::kUsage, fmt::format("{}{} = {}: {}", config.where(path), path, value, what));
}

Config load_config(const std::string& path, const std::vector<ConfigOverride>& overrides, int world_size) {
  return parse_config_text(read_regular_file(path, "config", kMaxConfigBytes), path, overrides, world_size);
}

}  // namespace weft
