// libweft's internals behind include/weft/weft.h: the handles, the process-wide MPI, and the guard that turns
// every exception into a status code and a message (nothing escapes the C boundary, nothing ends the process).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "collectives/job_world.h"
#include "collectives/mpi/mpi_runtime.h"
#include "weft/weft.h"
#include "launcher/environment.h"
#include "launcher/peers.h"
#include "parallel/engine.h"
#include "runtime/error.h"

namespace weft::embed {

// MPI for every handle of this process: started on first need, shared, ended by weft_finalize once the last
// handle holding it is gone. Error(kUsage) after weft_finalize (MPI cannot start twice).
std::shared_ptr<MpiRuntime> mpi_runtime();
// A peer failure makes MPI_Finalize wait for the dead peer forever: weft_finalize skips it afterwards.
void note_peer_failure();

// The message of the thread's last failure (weft_last_error).
void set_last_error(const std::string& message);

// Runs `body`; an exception becomes its status (Error's kind, else internal) and message, stored in `error` (the
// handle's, may be null) and the thread's last error. A peer failure's message also names the ranks this host
// saw die (`peers`, may be null).
template <typename Body>
weft_status guarded(std::string* error, const PeerDirectory* peers, Body&& body) noexcept;

weft_status fail_with(std::string* error, weft_status status, const std::string& message) noexcept;

}  // namespace weft::embed

struct weft_trainer {
  std::shared_ptr<weft::MpiRuntime> mpi;  // first member: destroyed last
  weft::RankInfo rank;
  std::unique_ptr<weft::Device> device;
  weft::JobWorld world;
  std::optional<weft::PeerDirectory> peers;
  weft::ProcessGroups groups;
  std::unique_ptr<weft::Trainer> trainer;
  int done = 0;                     // the last completed (or restored) step
  std::string metrics;              // its JSON line
  std::vector<std::string> names;   // this rank's parameters, in order
  std::string error;
};

struct weft_store {
  std::shared_ptr<weft::Store> store;
  std::string error;
};

struct weft_comm {
  std::shared_ptr<weft::MpiRuntime> mpi;
  std::unique_ptr<weft::Communicator> comm;
  std::optional<weft::PeerDirectory> peers;  // world communicators: names dead ranks in timeouts
  std::string error;
};

struct weft_work {
  std::unique_ptr<weft::Work> work;
  std::string error;
};

namespace weft::embed {

template <typename Body>
weft_status guarded(std::string* error, const PeerDirectory* peers, Body&& body) noexcept {
  try {
    body();
    if (error) error->clear();
    return WEFT_OK;
  } catch (const Error& e) {
    std::string message = e.what();
    if (e.kind() == ErrorKind::kPeer) {
      // A mismatch ("rank 0 called ... but rank 1 called ...") fails every rank alike and leaves the group and MPI
      // usable; any other peer failure may have lost a peer.
      if (message.find(" but rank ") == std::string::npos) note_peer_failure();
      try {
        if (peers != nullptr)
          if (const std::string dead = peers->describe_dead_peers(); !dead.empty()) message += " (" + dead + ")";
      } catch (...) {
      }
    }
    return fail_with(error, static_cast<weft_status>(e.exit_code()), message);
  } catch (const std::bad_alloc&) {
    return fail_with(error, WEFT_ERROR_INTERNAL, "out of memory (an allocation failed)");
  } catch (const std::exception& e) {
    return fail_with(error, WEFT_ERROR_INTERNAL, e.what());
  } catch (...) {
    return fail_with(error, WEFT_ERROR_INTERNAL, "unknown exception");
  }
}

}  // namespace weft::embed

// A null handle is a usage error named after the function, not a crash.
#define WEFT_REQUIRE_HANDLE(handle)                                                                             \
  do {                                                                                                          \
    if ((handle) == nullptr)                                                                                    \
      return ::weft::embed::fail_with(nullptr, WEFT_ERROR_USAGE, std::string(__func__) + ": " #handle " is NULL"); \
  } while (0)
