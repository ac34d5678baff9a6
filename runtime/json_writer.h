// JsonWriter: builds one compact JSON object (metrics lines, plans, traces) without a JSON library.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace weft {

class JsonWriter {
 public:
  JsonWriter& begin_object(std::string_view key = {});
  JsonWriter& end_object();
  JsonWriter& begin_array(std::string_view key = {});
  JsonWriter& end_array();
  JsonWriter& field(std::string_view key, double value);
  JsonWriter& field(std::string_view key, std::int64_t value);
  JsonWriter& field(std::string_view key, int value) { return field(key, static_cast<std::int64_t>(value)); }
  JsonWriter& field(std::string_view key, std::string_view value);
  JsonWriter& field(std::string_view key, const char* value) { return field(key, std::string_view(value)); }
  JsonWriter& field(std::string_view key, bool value);
  const std::string& str() const { return out_; }

 private:
  void key(std::string_view name);
  std::string out_;
  bool need_comma_ = false;
};

std::string json_escape(std::string_view text);

}  // namespace weft
