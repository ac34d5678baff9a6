// What backend "weft" keeps of an operation between issuing it and completing it (weft_c10d.cc): the Work torch
// holds, whose future the completion thread finishes, and the operation's libweft handles and epilogue.
#pragma once

#include <torch/csrc/distributed/c10d/Work.hpp>

#include <ATen/ATen.h>

#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "weft/weft.h"

namespace weft_torch {

// A Work whose future the completion thread finishes.
class WeftWork : public c10d::Work {
 public:
  WeftWork(int rank, c10d::OpType type, std::vector<at::Tensor> outputs)
      : Work(rank, type),
        outputs_(std::move(outputs)),
        future_(c10::make_intrusive<c10::ivalue::Future>(c10::ListType::create(c10::TensorType::get()))) {}

  bool isCompleted() override { return future_->completed(); }
  bool isSuccess() const override { return future_->completed() && !future_->hasError(); }
  std::exception_ptr exception() const override {
    return future_->hasError() ? future_->exception_ptr() : nullptr;
  }
  std::vector<at::Tensor> result() override { return outputs_; }
  bool wait(std::chrono::milliseconds /*timeout: libweft's own deadline applies*/) override {
    future_->wait();
    if (future_->hasError()) std::rethrow_exception(future_->exception_ptr());
    return true;
  }
  c10::intrusive_ptr<c10::ivalue::Future> getFuture() override { return future_; }

  void finish(std::exception_ptr error) {
    if (error)
      future_->setError(error);
    else
      future_->markCompleted(c10::IValue(outputs_));
  }

 private:
  std::vector<at::Tensor> outputs_;
  c10::intrusive_ptr<c10::ivalue::Future> future_;
};

// What an operation leaves to the completion thread.
struct Pending {
  std::string op;
  weft_comm* comm = nullptr;  // the group it was issued on: the backend's, or its NCCL group
  std::optional<at::Device> cuda_device;  // NCCL: the device whose epilogue work completes before the Work does
  std::vector<weft_work*> handles;
  std::function<void()> epilogue;  // runs after every handle succeeded; keeps the staging tensors alive
  std::function<void()> copy_back;  // then: host results into the caller's CUDA tensors (HostStaging)
  c10::intrusive_ptr<WeftWork> work;
  std::unique_lock<std::mutex> issuing;  // held from begin() to submit(): one thread issues at a time
};

// Which group an operation runs on, decided under the issue lock it then keeps until it is submitted: the NCCL
// group for CUDA tensors NCCL carries, else (nccl == null, lock not held) the backend's own.
struct Route {
  std::unique_lock<std::mutex> issuing;
  weft_comm* nccl = nullptr;
};

}  // namespace weft_torch
