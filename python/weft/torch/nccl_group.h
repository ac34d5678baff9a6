// NcclGroup: how backend "weft" moves CUDA tensors when libweft has NCCL: the collectives NCCL carries (all_reduce,
// broadcast, all_gather_into_tensor, reduce_scatter_tensor and their coalesced forms) run on an NCCL group of
// libweft's (weft_comm_create_nccl) on the tensors' device, made at the group's first such operation. Each starts
// after the work queued on the caller's current stream; its Work completes once the device has finished it.
// Everything else (other operations, dtypes, bitwise reductions, non-contiguous tensors) keeps the host copies of
// host_staging.h, and so does every CUDA tensor when libweft was built without CUDA or WEFT_TORCH_CUDA=host is set.
#pragma once

#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/python.h>

#include <ATen/ATen.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "tensor_wire.h"
#include "torch_store.h"
#include "weft/weft.h"

namespace weft_torch {

class NcclGroup {
 public:
  NcclGroup(c10::intrusive_ptr<c10d::Store> store, int rank, int size, double timeout_s)
      : store_(std::move(store)), rank_(rank), size_(size), timeout_s_(timeout_s) {
    const char* choice = std::getenv("WEFT_TORCH_CUDA");
    disabled_ = weft_has_nccl() == 0 || (choice != nullptr && std::string(choice) == "host");
  }
  ~NcclGroup() { close(); }
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  void close() {
    if (comm_ != nullptr) weft_comm_destroy(comm_);
    comm_ = nullptr;
  }

  // The NCCL group for an operation on `tensors` (with `op` for reductions), ordered after the caller's current
  // stream, or null when the operation keeps the host copies. Call with the backend's issue lock held: the first
  // call makes the group, which every member does at the same operation.
  weft_comm* for_tensors(const std::vector<at::Tensor>& tensors, const std::string& name,
                         const c10d::ReduceOp* op = nullptr) {
    if (disabled_ || tensors.empty()) return nullptr;
    const at::Device device = tensors[0].device();
    for (const at::Tensor& t : tensors)
      if (!t.is_cuda() || t.device() != device || !native(t) || !t.is_contiguous()) return nullptr;
    if (op != nullptr) {
      const weft_reduce_op how = reduction_of(*op, tensors[0], name).op;
      if (how != WEFT_SUM && how != WEFT_MAX && how != WEFT_MIN && how != WEFT_PRODUCT) return nullptr;
    }
    if (comm_ == nullptr) create(device, name);
    if (device.index() != device_index_)
      refuse(name, "tensors on " + device.str() + ", but this group's NCCL communicator is on cuda:" +
                       std::to_string(device_index_) + " (one CUDA device per process and group)");
    const c10::Stream stream = c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).getStream(device);
    if (weft_comm_set_cuda_stream(comm_, stream.native_handle()) != WEFT_OK) refuse(name, weft_comm_error(comm_));
    return comm_;
  }

  // After a completion-thread epilogue wrote CUDA tensors of `device` (AVG's division): wait for it on the device,
  // so a completed Work means finished results whatever stream the caller reads them on.
  static void finish_on_device(const at::Device& device) {
    const c10::DeviceGuard guard(device);
    c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).getStream(device).synchronize();
  }

 private:
  void create(const at::Device& device, const std::string& name) {
    weft_store* wrapped = wrap_store(store_);
    if (wrapped == nullptr) refuse(name, weft_last_error());
    weft_status status;
    {
      // Members wait for each other here; Python threads (and a Python store's callbacks) keep running.
      std::unique_ptr<pybind11::gil_scoped_release> released;
      if (PyGILState_Check()) released = std::make_unique<pybind11::gil_scoped_release>();
      status = weft_comm_create_nccl(wrapped, "torch-nccl", rank_, size_, timeout_s_, device.index(), &comm_);
    }
    const std::string error = status == WEFT_OK ? "" : weft_last_error();
    weft_store_destroy(wrapped);
    if (status != WEFT_OK) refuse(name, "creating the group's NCCL communicator: " + error);
    device_index_ = device.index();
  }

  c10::intrusive_ptr<c10d::Store> store_;
  int rank_, size_;
  double timeout_s_;
  weft_comm* comm_ = nullptr;
  int device_index_ = -1;
  bool disabled_ = false;
};

}  // namespace weft_torch
