// libweft's process-wide pieces: version, errors, the log callback, and MPI's start and end.
#include <cstdlib>
#include <cstring>
#include <mutex>

#include <spdlog/sinks/base_sink.h>

#include "collectives/registry.h"
#include "embed/api.h"
#include "runtime/log.h"

namespace weft::embed {
namespace {

thread_local std::string last_error;

struct ProcessState {
  std::mutex mutex;
  std::weak_ptr<MpiRuntime> mpi;      // alive while a handle holds it
  std::shared_ptr<MpiRuntime> held;   // the library's own reference, dropped by weft_finalize
  bool finalized = false;
  bool peer_failed = false;
};

ProcessState& state() {
  static ProcessState* s = new ProcessState;  // never destroyed: handles may outlive static destructors
  return *s;
}

// Hands weft's log lines to the caller's function (the message only: the caller adds its own decoration).
class CallbackSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  CallbackSink(weft_log_fn fn, void* user) : fn_(fn), user_(user) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const std::string text(msg.payload.data(), msg.payload.size());
    fn_(level_of(msg.level), text.c_str(), user_);
  }
  void flush_() override {}

 private:
  static int level_of(spdlog::level::level_enum level) {
    switch (level) {
      case spdlog::level::trace:
      case spdlog::level::debug: return WEFT_LOG_DEBUG;
      case spdlog::level::info: return WEFT_LOG_INFO;
      case spdlog::level::warn: return WEFT_LOG_WARNING;
      default: return WEFT_LOG_ERROR;
    }
  }
  weft_log_fn fn_;
  void* user_;
};

}  // namespace

std::shared_ptr<MpiRuntime> mpi_runtime() {
  ProcessState& s = state();
  std::lock_guard lock(s.mutex);
  if (auto alive = s.mpi.lock()) return alive;
  if (s.finalized)
    fail_usage("MPI was ended by weft_finalize and cannot be started again in this process; create every trainer "
               "and communicator before weft_finalize");
  // After a peer failure MPI_Finalize would wait for the dead peer forever: the runtime is then left to the
  // process's end instead of destroyed.
  auto made = std::shared_ptr<MpiRuntime>(new MpiRuntime, [](MpiRuntime* runtime) {
    bool failed;
    {
      std::lock_guard guard(state().mutex);
      failed = state().peer_failed;
    }
    if (!failed) delete runtime;
  });
  s.mpi = made;
  s.held = made;
  return made;
}

void note_peer_failure() {
  ProcessState& s = state();
  std::lock_guard lock(s.mutex);
  s.peer_failed = true;
}

void set_last_error(const std::string& message) { last_error = message; }

weft_status fail_with(std::string* error, weft_status status, const std::string& message) noexcept {
  try {
    if (error) *error = message;
    last_error = message;
  } catch (...) {
  }
  return status;
}

}  // namespace weft::embed

using namespace weft;
using namespace weft::embed;

extern "C" {

const char* weft_version(void) { return WEFT_VERSION_STRING; }
int weft_api_version(void) { return WEFT_API_VERSION; }
int weft_has_nccl(void) { return weft::backend_available(weft::Backend::kNccl) ? 1 : 0; }
const char* weft_last_error(void) { return last_error.c_str(); }
void weft_free(char* string) { std::free(string); }

weft_status weft_set_log_callback(weft_log_fn fn, void* user) {
  return guarded(nullptr, nullptr, [&] {
    std::vector<spdlog::sink_ptr> sinks;
    if (fn != nullptr) sinks.push_back(std::make_shared<CallbackSink>(fn, user));
    replace_log_sinks(std::move(sinks));
  });
}

weft_status weft_finalize(void) {
  return guarded(nullptr, nullptr, [&] {
    ProcessState& s = state();
    std::shared_ptr<MpiRuntime> last;
    {
      std::lock_guard lock(s.mutex);
      if (s.finalized) return;
      s.finalized = true;
      last = std::move(s.held);
    }
    logger().flush();
    // `last` ends MPI here when no handle holds it any more (otherwise the last handle's destruction does).
  });
}

}  // extern "C"
