// The C API's stores, communicators and work handles: weft's Communicator on the caller's buffers.
#include <cstdlib>
#include <cstring>

#include "collectives/mpi/mpi_communicator.h"
#include "collectives/registry.h"
#include "collectives/socket/socket_communicator.h"
#include "collectives/store.h"
#include "embed/api.h"
#include "embed/callback_store.h"

using namespace weft;
using namespace weft::embed;

namespace {

std::chrono::milliseconds timeout_of(double seconds) {
  if (!(seconds > 0.0)) return CommOptions{}.timeout;
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000.0));
}

// A C caller may pass any int where the header says weft_dtype or weft_reduce_op (C enums are ints), but reading a
// value outside the enumerators' range through the C++ enum type is undefined behaviour (UBSan's -fsanitize=enum
// reported it for the invalid-dtype checks): the argument's bytes are read as an int and checked before any cast.
template <typename Enum>
int raw_enum(const Enum& value) {
  static_assert(sizeof(Enum) == sizeof(int), "the C API's enums are passed as ints");
  int raw;
  std::memcpy(&raw, &value, sizeof raw);
  return raw;
}

DType dtype_of(const weft_dtype& dtype) {
  const int raw = raw_enum(dtype);
  if (raw < WEFT_FLOAT32 || raw > WEFT_INT64)
    fail_usage("dtype {} is not one of WEFT_FLOAT32, WEFT_BFLOAT16, WEFT_FLOAT16, WEFT_INT32, WEFT_INT64", raw);
  return static_cast<DType>(raw);
}

ReduceOp op_of(const weft_reduce_op& op) {
  const int raw = raw_enum(op);
  if (raw < WEFT_SUM || raw > WEFT_BXOR)
    fail_usage("reduce op {} is not one of WEFT_SUM, WEFT_MAX, WEFT_MIN, WEFT_PRODUCT, WEFT_BAND, WEFT_BOR, WEFT_BXOR",
               raw);
  return static_cast<ReduceOp>(raw);
}

void require_buffer(const void* data, std::size_t count, const char* what) {
  if (data == nullptr && count > 0) fail_usage("{}: the buffer is NULL but count is {}", what, count);
}

// Runs one operation: blocking when `work` is NULL, else hands its Work to the caller.
template <typename Start>
weft_status issue(weft_comm* c, weft_work** work, Start&& start) {
  if (work != nullptr) *work = nullptr;
  return guarded(&c->error, c->peers ? &*c->peers : nullptr, [&] {
    std::unique_ptr<Work> started = start(*c->comm);
    if (work == nullptr) return started->wait();
    auto handle = std::make_unique<weft_work>();
    handle->work = std::move(started);
    *work = handle.release();
  });
}

std::unique_ptr<weft_comm> wrap(std::shared_ptr<MpiRuntime> mpi, std::unique_ptr<Communicator> comm) {
  auto c = std::make_unique<weft_comm>();
  c->mpi = std::move(mpi);
  c->comm = std::move(comm);
  return c;
}

// weft_comm_create_transport and weft_comm_create_nccl: `cuda_device` is the NCCL group's device (< 0: current).
weft_status create_group(weft_store* store, const char* name, int rank, int size, double timeout_s,
                         weft_transport transport, int cuda_device, weft_comm** out) {
  WEFT_REQUIRE_HANDLE(out);
  *out = nullptr;
  WEFT_REQUIRE_HANDLE(store);
  return guarded(nullptr, nullptr, [&] {
    if (name == nullptr || *name == '\0') fail_usage("weft_comm_create: the group name is NULL or empty");
    if (size < 1 || rank < 0 || rank >= size)
      fail_usage("weft_comm_create: rank {} of size {}: need 0 <= rank < size", rank, size);
    const int raw_transport = raw_enum(transport);
    if (raw_transport < WEFT_TRANSPORT_AUTO || raw_transport > WEFT_TRANSPORT_NCCL)
      fail_usage("weft_comm_create: transport {} is not one of WEFT_TRANSPORT_AUTO, WEFT_TRANSPORT_MPI, "
                 "WEFT_TRANSPORT_SOCKET, WEFT_TRANSPORT_NCCL",
                 raw_transport);
    CommOptions options;
    options.timeout = timeout_of(timeout_s);
    if (transport == WEFT_TRANSPORT_AUTO) {
      // MPI only when this process is one of an MPI launch that can hold the group; processes that torchrun (or
      // anything else) started are MPI singletons whose world has 1 rank.
      const int launched = detect_rank().info.world_size;
      transport = launched > 1 && size <= launched ? WEFT_TRANSPORT_MPI : WEFT_TRANSPORT_SOCKET;
    }
    if (transport == WEFT_TRANSPORT_SOCKET) {
      *out = wrap(nullptr, make_socket_communicator(store->store, name, rank, size, options)).release();
      return;
    }
    if (transport == WEFT_TRANSPORT_NCCL) {
      *out = wrap(nullptr, make_embedded_nccl_group(*store->store, rank, size, name, cuda_device, options)).release();
      return;
    }
    auto mpi = mpi_runtime();
    if (size > mpi->world_size())
      fail_usage("weft_comm_create: group {} has {} ranks but the MPI job has {}; use WEFT_TRANSPORT_SOCKET for "
                 "processes that are not one MPI job",
                 name, size, mpi->world_size());
    // The members meet in the store: each publishes its MPI world rank under the group's name.
    const std::string prefix = fmt::format("weft/group/{}/", name);
    store->store->set(prefix + std::to_string(rank), std::to_string(mpi->world_rank()));
    std::vector<int> world_ranks;
    for (int r = 0; r < size; ++r) world_ranks.push_back(std::stoi(store->store->get(prefix + std::to_string(r), options.timeout)));
    auto c = wrap(mpi, make_mpi_group(mpi->engine(), world_ranks, name, options));
    *out = c.release();
  });
}

}  // namespace

extern "C" {

// ---- Stores

weft_status weft_store_create_file(const char* dir, weft_store** out) {
  WEFT_REQUIRE_HANDLE(out);
  *out = nullptr;
  return guarded(nullptr, nullptr, [&] {
    if (dir == nullptr || *dir == '\0') fail_usage("weft_store_create_file: the directory is NULL or empty");
    auto s = std::make_unique<weft_store>();
    s->store = make_file_store(dir);
    *out = s.release();
  });
}

weft_status weft_store_create_callbacks(const weft_store_callbacks* callbacks, void* user, weft_store** out) {
  WEFT_REQUIRE_HANDLE(out);
  *out = nullptr;
  WEFT_REQUIRE_HANDLE(callbacks);
  return guarded(nullptr, nullptr, [&] {
    auto s = std::make_unique<weft_store>();
    s->store = make_callback_store(*callbacks, user);
    *out = s.release();
  });
}

void weft_store_destroy(weft_store* store) { delete store; }

const char* weft_store_error(const weft_store* store) {
  return store ? store->error.c_str() : "weft_store_error: store is NULL";
}

weft_status weft_store_set(weft_store* s, const char* key, const void* value, size_t size) {
  WEFT_REQUIRE_HANDLE(s);
  return guarded(&s->error, nullptr, [&] {
    if (key == nullptr) fail_usage("weft_store_set: key is NULL");
    require_buffer(value, size, "weft_store_set");
    s->store->set(key, std::string(static_cast<const char*>(value), size));
  });
}

weft_status weft_store_get(weft_store* s, const char* key, double timeout_s, char** value, size_t* size) {
  WEFT_REQUIRE_HANDLE(s);
  return guarded(&s->error, nullptr, [&] {
    if (key == nullptr || value == nullptr) fail_usage("weft_store_get: key or value is NULL");
    const std::string got = s->store->get(key, timeout_of(timeout_s));
    char* copy = static_cast<char*>(std::malloc(got.size() + 1));
    if (copy == nullptr) throw std::bad_alloc();
    std::memcpy(copy, got.data(), got.size());
    copy[got.size()] = '\0';
    *value = copy;
    if (size) *size = got.size();
  });
}

weft_status weft_store_add(weft_store* s, const char* key, int64_t delta, int64_t* result) {
  WEFT_REQUIRE_HANDLE(s);
  return guarded(&s->error, nullptr, [&] {
    if (key == nullptr) fail_usage("weft_store_add: key is NULL");
    const std::int64_t value = s->store->add(key, delta);
    if (result) *result = value;
  });
}

// ---- Communicators

weft_status weft_comm_world(double timeout_s, weft_comm** out) {
  WEFT_REQUIRE_HANDLE(out);
  *out = nullptr;
  return guarded(nullptr, nullptr, [&] {
    auto mpi = mpi_runtime();
    CommOptions options;
    options.timeout = timeout_of(timeout_s);
    auto c = wrap(mpi, mpi->world(options));
    c->peers.emplace(*c->comm);
    *out = c.release();
  });
}

weft_status weft_launcher_rank(int* rank, int* size) {
  return guarded(nullptr, nullptr, [&] {
    const DetectedRank detected = detect_rank();
    if (rank) *rank = detected.info.rank;
    if (size) *size = detected.info.world_size;
  });
}

weft_status weft_comm_create_transport(weft_store* store, const char* name, int rank, int size, double timeout_s,
                                       weft_transport transport, weft_comm** out) {
  return create_group(store, name, rank, size, timeout_s, transport, -1, out);
}

weft_status weft_comm_create_nccl(weft_store* store, const char* name, int rank, int size, double timeout_s,
                                  int cuda_device, weft_comm** out) {
  return create_group(store, name, rank, size, timeout_s, WEFT_TRANSPORT_NCCL, cuda_device, out);
}

weft_status weft_comm_create(weft_store* store, const char* name, int rank, int size, double timeout_s,
                             weft_comm** out) {
  return weft_comm_create_transport(store, name, rank, size, timeout_s, WEFT_TRANSPORT_AUTO, out);
}

weft_status weft_comm_transport(const weft_comm* c, weft_transport* transport) {
  WEFT_REQUIRE_HANDLE(c);
  WEFT_REQUIRE_HANDLE(transport);
  const std::string_view backend = c->comm->backend();
  *transport = backend == "socket" ? WEFT_TRANSPORT_SOCKET : backend == "nccl" ? WEFT_TRANSPORT_NCCL : WEFT_TRANSPORT_MPI;
  return WEFT_OK;
}

weft_status weft_comm_set_cuda_stream(weft_comm* c, void* cuda_stream) {
  WEFT_REQUIRE_HANDLE(c);
  return guarded(&c->error, nullptr, [&] { set_device_input_stream(*c->comm, cuda_stream); });
}

weft_status weft_comm_split(weft_comm* c, int color, int key, const char* name, weft_comm** out) {
  WEFT_REQUIRE_HANDLE(c);
  WEFT_REQUIRE_HANDLE(out);
  *out = nullptr;
  return guarded(&c->error, c->peers ? &*c->peers : nullptr, [&] {
    if (name == nullptr || *name == '\0') fail_usage("weft_comm_split: the group name is NULL or empty");
    auto made = c->comm->split(color < 0 ? Communicator::kNoColor : color, key, name);
    if (made) *out = wrap(c->mpi, std::move(made)).release();
  });
}

void weft_comm_destroy(weft_comm* comm) { delete comm; }

const char* weft_comm_error(const weft_comm* comm) { return comm ? comm->error.c_str() : "weft_comm_error: comm is NULL"; }

weft_status weft_comm_rank(const weft_comm* c, int* rank, int* size) {
  WEFT_REQUIRE_HANDLE(c);
  if (rank) *rank = c->comm->rank();
  if (size) *size = c->comm->size();
  return WEFT_OK;
}

weft_status weft_all_reduce(weft_comm* c, void* data, size_t count, weft_dtype dtype, weft_reduce_op op,
                            weft_work** work) {
  WEFT_REQUIRE_HANDLE(c);
  return issue(c, work, [&](Communicator& comm) {
    require_buffer(data, count, "weft_all_reduce");
    return comm.all_reduce(data, count, dtype_of(dtype), op_of(op));
  });
}

weft_status weft_reduce_scatter(weft_comm* c, const void* send, void* recv, size_t recv_count, weft_dtype dtype,
                                weft_reduce_op op, weft_work** work) {
  WEFT_REQUIRE_HANDLE(c);
  return issue(c, work, [&](Communicator& comm) {
    require_buffer(send, recv_count, "weft_reduce_scatter (send)");
    require_buffer(recv, recv_count, "weft_reduce_scatter (recv)");
    return comm.reduce_scatter(send, recv, recv_count, dtype_of(dtype), op_of(op));
  });
}

weft_status weft_all_gather(weft_comm* c, const void* send, void* recv, size_t send_count, weft_dtype dtype,
                            weft_work** work) {
  WEFT_REQUIRE_HANDLE(c);
  return issue(c, work, [&](Communicator& comm) {
    require_buffer(send, send_count, "weft_all_gather (send)");
    require_buffer(recv, send_count, "weft_all_gather (recv)");
    return comm.all_gather(send, recv, send_count, dtype_of(dtype));
  });
}

weft_status weft_broadcast(weft_comm* c, void* data, size_t count, weft_dtype dtype, int root, weft_work** work) {
  WEFT_REQUIRE_HANDLE(c);
  return issue(c, work, [&](Communicator& comm) {
    require_buffer(data, count, "weft_broadcast");
    return comm.broadcast(data, count, dtype_of(dtype), root);
  });
}

weft_status weft_send(weft_comm* c, const void* data, size_t count, weft_dtype dtype, int peer, int tag,
                      weft_work** work) {
  WEFT_REQUIRE_HANDLE(c);
  return issue(c, work, [&](Communicator& comm) {
    require_buffer(data, count, "weft_send");
    return comm.send(data, count, dtype_of(dtype), peer, tag);
  });
}

weft_status weft_recv(weft_comm* c, void* data, size_t count, weft_dtype dtype, int peer, int tag, weft_work** work) {
  WEFT_REQUIRE_HANDLE(c);
  return issue(c, work, [&](Communicator& comm) {
    require_buffer(data, count, "weft_recv");
    return comm.recv(data, count, dtype_of(dtype), peer, tag);
  });
}

weft_status weft_barrier(weft_comm* c, weft_work** work) {
  WEFT_REQUIRE_HANDLE(c);
  return issue(c, work, [&](Communicator& comm) { return comm.barrier(); });
}

// ---- Work

weft_status weft_work_wait(weft_work* w, double timeout_s) {
  WEFT_REQUIRE_HANDLE(w);
  return guarded(&w->error, nullptr, [&] {
    if (timeout_s > 0.0)
      w->work->wait(timeout_of(timeout_s));
    else
      w->work->wait();
  });
}

weft_status weft_work_test(weft_work* w, int* done) {
  WEFT_REQUIRE_HANDLE(w);
  WEFT_REQUIRE_HANDLE(done);
  *done = w->work->is_completed() ? 1 : 0;
  return WEFT_OK;
}

const char* weft_work_error(const weft_work* work) { return work ? work->error.c_str() : "weft_work_error: work is NULL"; }

void weft_work_destroy(weft_work* w) {
  if (w == nullptr) return;
  // The backend may still write the caller's buffers: finish first (its error was the caller's to collect).
  if (!w->work->is_completed()) weft_work_wait(w, 0.0);
  delete w;
}

}  // extern "C"
