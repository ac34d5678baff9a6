// Config loading: a YAML event reader bounded by the schema, --set overrides, and error positions.
#include "runtime/config.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "runtime/config_schema.h"
#include "runtime/error.h"

namespace weft {
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
  enum class Kind { kDefault, kFile, kOverride };
  Kind kind = Kind::kDefault;
  YAML::Mark mark;
  std::string assignment;  // the --set argument, for kOverride
};

std::string shown_value(const Scalar& value) { return value.is_null ? "(empty)" : shown(value.text); }

// The config being built and where each key came from; every message prefix follows from the origin.
class ConfigBuilder {
 public:
  explicit ConfigBuilder(std::string source) : source_(std::move(source)) { config_.source_path = source_; }

  Config& config() { return config_; }
  const std::string& source() const { return source_; }

  std::string at(const YAML::Mark& mark) const {
    if (mark.is_null()) return source_ + ": ";
    return fmt::format("{}:{}:{}: ", source_, mark.line + 1, mark.column + 1);
  }

  std::string at(const Origin& origin) const {
    if (origin.kind == Origin::Kind::kFile) return at(origin.mark);
    if (origin.kind == Origin::Kind::kOverride) return fmt::format("--set {}: ", shown(origin.assignment));
    return source_ + ": ";
  }

  [[noreturn]] void fail_at(const YAML::Mark& mark, const std::string& what) const {
    throw Error(ErrorKind::kUsage, at(mark) + what);
  }

  // Converts and stores one value; a later set of the same key (an override) replaces the earlier one.
  void set(const KeySpec& spec, const Scalar& value, const Origin& origin) {
    if (std::optional<std::string> problem = store_value(spec, value, config_)) {
      throw Error(ErrorKind::kUsage, fmt::format("{}{} = {}: {}", at(origin), spec.path(), shown_value(value), *problem));
    }
    origins_[spec.path()] = origin;
  }

  // A broken cross-key invariant, reported where the key to change was set (or at the file for a default).
  [[noreturn]] void fail(const config_internal::Violation& broken) const {
    auto found = origins_.find(broken.path);
    std::string where = found == origins_.end() ? source_ + ": " : at(found->second);
    throw Error(ErrorKind::kUsage, fmt::format("{}{} = {}: {}", where, broken.path, broken.value, broken.what));
  }

 private:
  std::string source_;
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
    if (state_ == State::kDone) builder_.fail_at(mark, "a config is one YAML document; found a second one (after '---')");
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { on_scalar(mark, Scalar{"", true}, anchor); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, const std::string& value) override {
    on_scalar(mark, Scalar{value, false}, anchor);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (auto scalar = scalars_.find(anchor); scalar != scalars_.end()) return on_scalar(mark, scalar->second, 0);
    auto section = sections_.find(anchor);
    if (section == sections_.end() || state_ != State::kTopValue || key_ != nullptr) {
      return on_container(mark, "*alias", "an alias of a list or map");
    }
    // An aliased section (`eval: *train`) is re-checked entry by entry against this section's keys.
    std::vector<Entry> entries = section->second;
    state_ = State::kSectionKey;
    for (const Entry& entry : entries) {
      section_key(entry.key, entry.key_mark);
      value(entry.value, entry.value_mark);
    }
    state_ = State::kTopKey;
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    on_container(mark, "[...]", "a list");
  }
  void OnSequenceEnd() override {}  // never reached: every sequence is rejected where it starts

  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    if (state_ == State::kDocument) {
      state_ = State::kTopKey;
    } else if (state_ == State::kTopValue && key_ == nullptr) {
      state_ = State::kSectionKey;
      anchor_ = anchor;
      entries_.clear();
    } else {
      on_container(mark, "{...}", "a map");
    }
  }

  void OnMapEnd() override {
    if (state_ == State::kSectionKey) {
      if (anchor_ != YAML::NullAnchor) sections_[anchor_] = entries_;
      anchor_ = YAML::NullAnchor;
      state_ = State::kTopKey;
    } else {
      state_ = State::kDone;
    }
  }

 private:
  enum class State { kDocument, kTopKey, kTopValue, kSectionKey, kSectionValue, kDone };

  // One key/value of an anchored section, kept so that an alias of it can be replayed.
  struct Entry {
    std::string key;
    YAML::Mark key_mark;
    Scalar value;
    YAML::Mark value_mark;
  };

  void on_scalar(const YAML::Mark& mark, const Scalar& scalar, YAML::anchor_t anchor) {
    if (anchor != YAML::NullAnchor) scalars_[anchor] = scalar;
    switch (state_) {
      case State::kDocument:
        if (scalar.is_null) builder_.fail_at(mark, "the config is empty; expected a map of sections (model, train, ...)");
        builder_.fail_at(mark, fmt::format("the top level must be a map of sections (model, train, ...), found '{}'",
                                           shown(scalar.text)));
      case State::kTopKey:
      case State::kSectionKey:
        if (scalar.is_null) builder_.fail_at(mark, fmt::format("{}expected a key name, found an empty key", prefix()));
        return state_ == State::kTopKey ? top_key(scalar.text, mark) : section_key(scalar.text, mark);
      case State::kTopValue:
        if (key_ != nullptr) return value(scalar, mark);  // a top-level key such as device
        if (!scalar.is_null) {
          builder_.fail_at(mark, fmt::format("{} = {}: expected a map of {} keys", section_, shown(scalar.text), section_));
        }
        if (anchor != YAML::NullAnchor) sections_[anchor] = {};
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
        builder_.fail_at(mark, fmt::format("the top level must be a map of sections (model, train, ...), found {}",
                                           description));
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
    section_ = key_ != nullptr ? std::string_view() : *std::find(config_sections().begin(), config_sections().end(), name);
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

  void value(const Scalar& scalar, const YAML::Mark& mark) {
    builder_.set(*key_, scalar, Origin{Origin::Kind::kFile, mark, {}});
    if (anchor_ != YAML::NullAnchor) entries_.push_back(Entry{std::string(key_->name), key_mark_, scalar, mark});
    state_ = key_->section.empty() ? State::kTopKey : State::kSectionKey;
    if (state_ == State::kTopKey) key_ = nullptr;
  }

  ConfigBuilder& builder_;
  State state_ = State::kDocument;
  std::string_view section_;       // the section being read (names live in the schema's static table)
  const KeySpec* key_ = nullptr;   // the key whose value comes next; null while reading a section
  YAML::Mark key_mark_;
  std::map<std::string, YAML::Mark> seen_;  // path -> where it was first set, to reject duplicates
  YAML::anchor_t anchor_ = YAML::NullAnchor;  // the anchor of the section being read, if any
  std::vector<Entry> entries_;
  std::map<YAML::anchor_t, Scalar> scalars_;
  std::map<YAML::anchor_t, std::vector<Entry>> sections_;
};

void read_yaml(const std::string& text, ConfigBuilder& builder) {
  std::istringstream in(text);
  try {
    YAML::Parser parser(in);
    SchemaReader reader(builder);
    if (!parser.HandleNextDocument(reader) || !reader.saw_document()) {
      throw Error(ErrorKind::kUsage,
                  builder.source() + ": the config is empty; expected a map of sections (model, train, ...)");
    }
    parser.HandleNextDocument(reader);  // a second document is an error, not silently ignored
  } catch (const YAML::Exception& error) {
    builder.fail_at(error.mark, "invalid YAML: " + error.msg);
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
  if (key.empty()) fail_usage("--set {}: the key before '=' is empty; expected KEY=VALUE, e.g. --set parallel.zero=3",
                              shown(assignment));
  return ConfigOverride{key, assignment.substr(equals + 1)};
}

Config parse_config_text(const std::string& yaml_text, const std::string& source_name,
                         const std::vector<ConfigOverride>& overrides, int world_size) {
  ConfigBuilder builder(source_name);
  read_yaml(yaml_text, builder);
  for (const ConfigOverride& override_ : overrides) apply_override(builder, override_);
  if (world_size < 1) fail_usage("{}: the world size must be >= 1, got {}", source_name, world_size);
  if (auto broken = config_internal::check_invariants(builder.config(), world_size)) builder.fail(*broken);
  return builder.config();
}

Config load_config(const std::string& path, const std::vector<ConfigOverride>& overrides, int world_size) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) fail_usage("{}: cannot read config: {}", path, std::strerror(errno));
  std::string text;
  char buffer[1 << 16];
  while (std::size_t count = std::fread(buffer, 1, sizeof buffer, file.get())) text.append(buffer, count);
  if (std::ferror(file.get())) fail_usage("{}: cannot read config: {}", path, std::strerror(errno));
  return parse_config_text(text, path, overrides, world_size);
}

}  // namespace weft
