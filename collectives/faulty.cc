#include "collectives/faulty.h"

#include <fmt/format.h>

#include "runtime/error.h"

namespace weft {

namespace {

class FaultyCommunicator final : public Communicator {
 public:
  FaultyCommunicator(std::unique_ptr<Communicator> inner, FaultSpec spec)
      : Communicator(inner->rank(), inner->size(), inner->name(), inner->world_rank(), inner->options()),
        inner_(std::move(inner)),
        spec_(spec),
        backend_(fmt::format("faulty({})", inner_->backend())) {}

  std::string_view backend() const override { return backend_; }
  DeviceType memory_type() const override { return inner_->memory_type(); }

 protected:
  std::unique_ptr<Work> start(const OpCall& call) override {
    if (!hits(call)) return reissue(*inner_, call);
    switch (spec_.kind) {
      case FaultKind::kSkip:
        // A state nobody completes: the wait runs into its deadline like a real lost operation.
        return std::make_unique<StateWork>(call.desc, std::make_shared<WorkState>());
      case FaultKind::kHang: {
        auto forwarded = reissue(*inner_, call);
        held_.push_back(std::move(forwarded));  // kept alive so the real operation still finishes
        return std::make_unique<StateWork>(call.desc, std::make_shared<WorkState>());
      }
      case FaultKind::kThrow:
        return make_failed_work(call.desc, std::make_exception_ptr(Error(
                                               ErrorKind::kPeer, fmt::format("weft: injected fault: rank {} failed {}",
                                                                             rank(), describe(call.desc)))));
      case FaultKind::kCorruptCount: {
        OpCall corrupted = call;
        if (corrupted.count > 0) --corrupted.count;
        return reissue(*inner_, corrupted);
      }
      case FaultKind::kNone: break;
    }
    return reissue(*inner_, call);
  }

  std::unique_ptr<Communicator> start_split(const OpDescriptor&, int color, int key,
                                            const std::string& name) override {
    return inner_->split(color, key, name);
  }

 private:
  bool hits(const OpCall& call) const {
    return spec_.kind != FaultKind::kNone && (spec_.rank < 0 || spec_.rank == rank()) &&
           call.desc.seq == spec_.seq && (!spec_.op || *spec_.op == call.desc.op);
  }

  std::unique_ptr<Communicator> inner_;
  FaultSpec spec_;
  std::string backend_;
  std::vector<std::unique_ptr<Work>> held_;
};

}  // namespace

std::unique_ptr<Communicator> make_faulty(std::unique_ptr<Communicator> inner, FaultSpec spec) {
  WEFT_CHECK(inner != nullptr, "make_faulty needs a communicator");
  return std::make_unique<FaultyCommunicator>(std::move(inner), spec);
}

}  // namespace weft
