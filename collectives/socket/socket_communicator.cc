#include "collectives/socket/socket_communicator.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include <fmt/format.h>

#include "collectives/socket/socket_engine.h"
#include "collectives/socket/socket_mesh.h"
#include "runtime/error.h"

namespace weft {

namespace {

class SocketCommunicator final : public Communicator {
 public:
  SocketCommunicator(int rank, int size, std::string name, int world_rank, CommOptions options,
                     std::shared_ptr<Store> store, std::string prefix, SocketMesh mesh)
      : Communicator(rank, size, std::move(name), world_rank, options), store_(std::move(store)),
        prefix_(std::move(prefix)),
        engine_(std::make_shared<SocketEngine>(std::move(mesh), rank, size, options.timeout)) {}

  std::string_view backend() const override { return "socket"; }
  DeviceType memory_type() const override { return DeviceType::kCpu; }

 protected:
  std::unique_ptr<Work> start(const OpCall& call) override { return engine_->submit(call); }

  // Every rank's (color, key) travels by an all_gather of the parent; each sub-group then connects its own mesh
  // under a prefix no other split of this store uses (the parent's, this split's #N and the color).
  std::unique_ptr<Communicator> start_split(const OpDescriptor& desc, int color, int key,
                                            const std::string& name) override {
    std::int64_t mine[2] = {color, key};
    std::vector<std::int64_t> all(2 * static_cast<std::size_t>(size()));
    OpCall call;
    call.desc = desc;
    call.send = mine;
    call.recv = all.data();
    call.count = 2;
    call.dtype = DType::kI64;
    engine_->submit(call)->wait();
    if (color == kNoColor) return nullptr;
    std::vector<int> members;
    for (int r = 0; r < size(); ++r)
      if (all[2 * static_cast<std::size_t>(r)] == color) members.push_back(r);
    std::stable_sort(members.begin(), members.end(), [&](int a, int b) {
      return all[2 * static_cast<std::size_t>(a) + 1] < all[2 * static_cast<std::size_t>(b) + 1];
    });
    const int new_rank = static_cast<int>(std::find(members.begin(), members.end(), rank()) - members.begin());
    const int new_size = static_cast<int>(members.size());
    const std::string prefix = fmt::format("{}split{}/{}/", prefix_, desc.seq, color);
    SocketMesh mesh = connect_mesh(*store_, prefix, new_rank, new_size, name, options().timeout);
    return std::make_unique<SocketCommunicator>(new_rank, new_size, name, world_rank(), options(), store_, prefix,
                                                std::move(mesh));
  }

 private:
  std::shared_ptr<Store> store_;
  std::string prefix_;
  std::shared_ptr<SocketEngine> engine_;
};

}  // namespace

std::unique_ptr<Communicator> make_socket_communicator(std::shared_ptr<Store> store, const std::string& name,
                                                       int rank, int size, CommOptions options, int world_rank) {
  if (!store) fail_usage("socket communicator {}: no store", name);
  if (name.empty()) fail_usage("socket communicator: the group name is empty");
  if (size < 1 || rank < 0 || rank >= size)
    fail_usage("socket communicator {}: rank {} of size {}: need 0 <= rank < size", name, rank, size);
  const std::string prefix = fmt::format("weft/socket/{}/", name);
  SocketMesh mesh = connect_mesh(*store, prefix, rank, size, name, options.timeout);
  return std::make_unique<SocketCommunicator>(rank, size, name, world_rank < 0 ? rank : world_rank, options,
                                              std::move(store), prefix, std::move(mesh));
}

}  // namespace weft
