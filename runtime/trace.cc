#include "runtime/trace.h"

#include <algorithm>

#include "runtime/file_io.h"
#include "runtime/json_writer.h"

namespace weft {

void Tracer::add_span(const std::string& name, const std::string& lane, Clock::time_point start,
                      Clock::time_point end) {
  auto micros = [this](Clock::time_point t) { return std::chrono::duration<double, std::micro>(t - origin_).count(); };
  std::lock_guard lock(mutex_);
  spans_.push_back({name, lane, micros(start), micros(end)});
}

void Tracer::write(const std::string& path) const { write_file_atomically(path, json(), "--trace " + path); }

std::string Tracer::json() const {
  std::lock_guard lock(mutex_);
  // Lanes become thread ids, named by metadata events, so Perfetto shows one row per lane.
  std::vector<std::string> lanes;
  for (const auto& span : spans_)
    if (std::find(lanes.begin(), lanes.end(), span.lane) == lanes.end()) lanes.push_back(span.lane);
  JsonWriter json;
  json.begin_object().begin_array("traceEvents");
  for (std::size_t i = 0; i < lanes.size(); ++i) {
    json.begin_object().field("name", "thread_name").field("ph", "M").field("pid", rank_).field("tid", static_cast<int>(i));
    json.begin_object("args").field("name", lanes[i]).end_object().end_object();
  }
  for (const auto& span : spans_) {
    const auto tid = static_cast<int>(std::find(lanes.begin(), lanes.end(), span.lane) - lanes.begin());
    json.begin_object()
        .field("name", span.name)
        .field("cat", span.lane)
        .field("ph", "X")
        .field("ts", span.start_us)
        .field("dur", span.end_us - span.start_us)
        .field("pid", rank_)
        .field("tid", tid)
        .end_object();
  }
  json.end_array().end_object();
  return json.str() + '\n';
}

}  // namespace weft
