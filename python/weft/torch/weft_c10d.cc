// The c10d Backend "weft": torch.distributed's collectives over libweft's communicators (weft.h), on CPU tensors,
// and on CUDA tensors over libweft's NCCL groups (NcclGroup) or through host copies (HostStaging). Every call issues libweft's asynchronous operation under one lock (the C API wants one issuing thread at a time)
// and returns a Work whose future a completion thread finishes: it waits for libweft's handles in issue order, runs
// the operation's epilogue (copies out of staging buffers, the division of AVG) and completes or fails the future.
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#include <torch/python.h>

#include <pybind11/chrono.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "host_staging.h"
#include "nccl_group.h"
#include "pending_work.h"
#include "tensor_wire.h"
#include "torch_store.h"
#include "weft/weft.h"

namespace {

using weft_torch::dtype_of;
using weft_torch::HostStaging;
using weft_torch::NcclGroup;
using weft_torch::Pending;
using weft_torch::Route;
using weft_torch::WeftWork;
using weft_torch::native;
using weft_torch::Reduction;
using weft_torch::reduction_of;
using weft_torch::refuse;
using weft_torch::unwire;
using weft_torch::Wire;
using weft_torch::wire_of;

constexpr int kInternalTag = 32767;  // all_to_all's messages; user tags stay below it

class WeftBackend : public c10d::Backend {
 public:
  WeftBackend(weft_comm* comm, const c10::intrusive_ptr<c10d::Store>& store, int rank, int size, double timeout_s)
      : Backend(rank, size), comm_(comm), nccl_(store, rank, size, timeout_s) {
    completer_ = std::thread([this] { complete_loop(); });
  }

  ~WeftBackend() override { shutdown(); }

  // destroy_process_group(): finishes what was issued and frees the communicator (MPI can then end at exit; a socket
  // group closes its connections).
  void shutdown() override {
    std::lock_guard<std::mutex> issuing(issue_mutex_);
    if (comm_ == nullptr) return;
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      stopping_ = true;
    }
    queue_ready_.notify_all();
    completer_.join();
    nccl_.close();
    weft_comm_destroy(comm_);
    comm_ = nullptr;
  }

  const std::string getBackendName() const override { return "weft"; }

  // Each public operation stages CUDA tensors in host memory (HostStaging) and runs on what it staged.
  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& tensors,
                                           const c10d::AllreduceOptions& opts) override {
    if (Route r = route(tensors, "all_reduce", &opts.reduceOp); r.nccl)
      return reduce_each("all_reduce", c10d::OpType::ALLREDUCE, tensors, opts.reduceOp, -1, std::move(r));
    HostStaging staging;
    auto staged = staging.inout(tensors);
    return reduce_each("all_reduce", c10d::OpType::ALLREDUCE, staged, opts.reduceOp, -1);
  }

  c10::intrusive_ptr<c10d::Work> allreduce_coalesced(std::vector<at::Tensor>& tensors,
                                                     const c10d::AllreduceCoalescedOptions& opts) override {
    if (Route r = route(tensors, "all_reduce_coalesced", &opts.reduceOp); r.nccl)
      return reduce_each("all_reduce_coalesced", c10d::OpType::ALLREDUCE_COALESCED, tensors, opts.reduceOp, -1,
                         std::move(r));
    HostStaging staging;
    auto staged = staging.inout(tensors);
    return reduce_each("all_reduce_coalesced", c10d::OpType::ALLREDUCE_COALESCED, staged, opts.reduceOp, -1);
  }

  c10::intrusive_ptr<c10d::Work> reduce(std::vector<at::Tensor>& tensors, const c10d::ReduceOptions& opts) override {
    HostStaging staging;
    auto staged = staging.inout(tensors);
    return reduce_each("reduce", c10d::OpType::REDUCE, staged, opts.reduceOp, static_cast<int>(opts.rootRank));
  }

  c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& caller_tensors,
                                           const c10d::BroadcastOptions& opts) override {
    Route r = route(caller_tensors, "broadcast");
    HostStaging staging;
    auto tensors = r.nccl ? caller_tensors : staging.inout(caller_tensors);
    const int root = static_cast<int>(opts.rootRank);
    std::vector<Wire> wires;
    for (auto& t : tensors) wires.push_back(wire_of(t, "broadcast"));
    Pending p = begin("broadcast", c10d::OpType::BROADCAST, tensors, std::move(r));
    for (size_t i = 0; i < tensors.size(); ++i) {
      Wire& w = wires[i];
      issue(p, weft_broadcast(p.comm, w.buffer.data_ptr(), w.count, w.dtype, root, next(p)));
      add_copy_back(p, tensors[i], unwire(w.buffer, tensors[i]));
    }
    return submit(std::move(p));
  }

  c10::intrusive_ptr<c10d::Work> _allgather_base(at::Tensor& output, at::Tensor& input,
                                                 const c10d::AllgatherOptions&) override {
    if (Route r = route({output, input}, "all_gather_into_tensor"); r.nccl) {
      std::vector<at::Tensor> outputs{output}, inputs{input};
      return gather_into("all_gather_into_tensor", c10d::OpType::_ALLGATHER_BASE, outputs, inputs, std::move(r));
    }
    HostStaging staging;
    std::vector<at::Tensor> outputs{staging.out(output)}, inputs{staging.in(input)};
    return gather_into("all_gather_into_tensor", c10d::OpType::_ALLGATHER_BASE, outputs, inputs);
  }

  c10::intrusive_ptr<c10d::Work> allgather_into_tensor_coalesced(std::vector<at::Tensor>& outputs,
                                                                 std::vector<at::Tensor>& inputs,
                                                                 const c10d::AllgatherOptions&) override {
    if (Route r = route(joined(outputs, inputs), "all_gather_into_tensor_coalesced"); r.nccl)
      return gather_into("all_gather_into_tensor_coalesced", c10d::OpType::COALESCED, outputs, inputs, std::move(r));
    HostStaging staging;
    auto staged_outputs = staging.out(outputs), staged_inputs = staging.in(inputs);
    return gather_into("all_gather_into_tensor_coalesced", c10d::OpType::COALESCED, staged_outputs, staged_inputs);
  }

  c10::intrusive_ptr<c10d::Work> allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                           std::vector<at::Tensor>& inputs, const c10d::AllgatherOptions&) override {
    HostStaging staging;
    auto staged_outputs = out_lists(staging, outputs);
    auto staged_inputs = staging.in(inputs);
    return gather_lists("all_gather", c10d::OpType::ALLGATHER, staged_outputs, staged_inputs, -1);
  }

  c10::intrusive_ptr<c10d::Work> gather(std::vector<std::vector<at::Tensor>>& outputs,
                                        std::vector<at::Tensor>& inputs, const c10d::GatherOptions& opts) override {
    HostStaging staging;
    auto staged_outputs = out_lists(staging, outputs);
    auto staged_inputs = staging.in(inputs);
    return gather_lists("gather", c10d::OpType::GATHER, staged_outputs, staged_inputs, static_cast<int>(opts.rootRank));
  }

  c10::intrusive_ptr<c10d::Work> _reduce_scatter_base(at::Tensor& output, at::Tensor& input,
                                                      const c10d::ReduceScatterOptions& opts) override {
    if (Route r = route({output, input}, "reduce_scatter_tensor", &opts.reduceOp); r.nccl) {
      std::vector<at::Tensor> outputs{output}, inputs{input};
      return scatter_reduced("reduce_scatter_tensor", c10d::OpType::_REDUCE_SCATTER_BASE, outputs, inputs,
                             opts.reduceOp, std::move(r));
    }
    HostStaging staging;
    std::vector<at::Tensor> outputs{staging.out(output)}, inputs{staging.in(input)};
    return scatter_reduced("reduce_scatter_tensor", c10d::OpType::_REDUCE_SCATTER_BASE, outputs, inputs,
                           opts.reduceOp);
  }

  c10::intrusive_ptr<c10d::Work> reduce_scatter_tensor_coalesced(std::vector<at::Tensor>& outputs,
                                                                 std::vector<at::Tensor>& inputs,
                                                                 const c10d::ReduceScatterOptions& opts) override {
    if (Route r = route(joined(outputs, inputs), "reduce_scatter_tensor_coalesced", &opts.reduceOp); r.nccl)
      return scatter_reduced("reduce_scatter_tensor_coalesced", c10d::OpType::COALESCED, outputs, inputs,
                             opts.reduceOp, std::move(r));
    HostStaging staging;
    auto staged_outputs = staging.out(outputs), staged_inputs = staging.in(inputs);
    return scatter_reduced("reduce_scatter_tensor_coalesced", c10d::OpType::COALESCED, staged_outputs, staged_inputs,
                           opts.reduceOp);
  }

  c10::intrusive_ptr<c10d::Work> reduce_scatter(std::vector<at::Tensor>& caller_outputs,
                                                std::vector<std::vector<at::Tensor>>& inputs,
                                                const c10d::ReduceScatterOptions& opts) override {
    const std::string op = "reduce_scatter";
    if (inputs.size() != caller_outputs.size()) refuse(op, "one input list per output tensor is needed");
    HostStaging staging;
    auto outputs = staging.out(caller_outputs);
    std::vector<at::Tensor> flats;
    for (size_t i = 0; i < outputs.size(); ++i) flats.push_back(staging.in(flat_list(op, inputs[i], outputs[i])));
    return scatter_reduced(op, c10d::OpType::REDUCE_SCATTER, outputs, flats, opts.reduceOp);
  }

  c10::intrusive_ptr<c10d::Work> scatter(std::vector<at::Tensor>& caller_outputs,
                                         std::vector<std::vector<at::Tensor>>& inputs,
                                         const c10d::ScatterOptions& opts) override {
    const std::string op = "scatter";
    HostStaging staging;
    auto outputs = staging.out(caller_outputs);
    const int root = static_cast<int>(opts.rootRank);
    if (outputs.size() != 1) refuse(op, "exactly one output tensor is supported");
    at::Tensor& out = outputs[0];
    at::Tensor flat;
    if (rank_ == root) {
      if (inputs.size() != 1) refuse(op, "the root needs one list of inputs");
      flat = staging.in(flat_list(op, inputs[0], out));
    } else {
      flat = at::empty({size_ * out.numel()}, out.options());
    }
    // The root's inputs travel to every rank by broadcast; each keeps its own chunk.
    Pending p = begin(op, c10d::OpType::SCATTER, outputs);
    issue(p, weft_broadcast(p.comm, flat.data_ptr(), flat.numel(), dtype_of(out, op), root, next(p)));
    const int64_t n = out.numel();
    const int r = rank_;
    p.epilogue = [out, flat, n, r]() mutable { out.copy_(flat.narrow(0, r * n, n).view(out.sizes())); };
    return submit(std::move(p));
  }

  c10::intrusive_ptr<c10d::Work> alltoall_base(at::Tensor& caller_output, at::Tensor& caller_input,
                                               std::vector<int64_t>& output_splits,
                                               std::vector<int64_t>& input_splits,
                                               const c10d::AllToAllOptions&) override {
    const std::string op = "all_to_all_single";
    HostStaging staging;
    at::Tensor output = staging.out(caller_output), input = staging.in(caller_input);
    const weft_dtype dtype = dtype_of(input, op);
    if (output.scalar_type() != input.scalar_type()) refuse(op, "input and output dtypes differ");
    at::Tensor in = input.contiguous();
    at::Tensor out = output.contiguous();
    const auto in_offsets = split_offsets(op, in, input_splits);
    const auto out_offsets = split_offsets(op, out, output_splits);
    std::vector<at::Tensor> outputs{output};
    Pending p = begin(op, c10d::OpType::ALLTOALL_BASE, outputs);
    auto* in_bytes = static_cast<char*>(in.data_ptr());
    auto* out_bytes = static_cast<char*>(out.data_ptr());
    const int64_t item = in.element_size();
    std::memcpy(out_bytes + out_offsets[rank_] * item, in_bytes + in_offsets[rank_] * item,
                (in_offsets[rank_ + 1] - in_offsets[rank_]) * item);
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      issue(p, weft_recv(p.comm, out_bytes + out_offsets[peer] * item, out_offsets[peer + 1] - out_offsets[peer], dtype,
                         peer, kInternalTag, next(p)));
      issue(p, weft_send(p.comm, in_bytes + in_offsets[peer] * item, in_offsets[peer + 1] - in_offsets[peer], dtype,
                         peer, kInternalTag, next(p)));
    }
    p.epilogue = [in]() {};
    add_copy_back(p, output, out);
    return submit(std::move(p));
  }

  c10::intrusive_ptr<c10d::Work> send(std::vector<at::Tensor>& tensors, int dst, int tag) override {
    HostStaging staging;
    auto staged = staging.in(tensors);
    return point_to_point("send", c10d::OpType::SEND, staged, dst, tag);
  }

  c10::intrusive_ptr<c10d::Work> recv(std::vector<at::Tensor>& tensors, int src, int tag) override {
    HostStaging staging;
    auto staged = staging.out(tensors);
    return point_to_point("recv", c10d::OpType::RECV, staged, src, tag);
  }

  c10::intrusive_ptr<c10d::Work> recvAnysource(std::vector<at::Tensor>&, int) override {
    refuse("recv (any source)", "a receive needs its source rank");
  }

  c10::intrusive_ptr<c10d::Work> barrier(const c10d::BarrierOptions&) override {
    std::vector<at::Tensor> none;
    Pending p = begin("barrier", c10d::OpType::BARRIER, none);
    issue(p, weft_barrier(p.comm, next(p)));
    return submit(std::move(p));
  }

 private:
  static std::vector<std::vector<at::Tensor>> out_lists(HostStaging& staging,
                                                        const std::vector<std::vector<at::Tensor>>& lists) {
    std::vector<std::vector<at::Tensor>> staged;
    for (const auto& list : lists) staged.push_back(staging.out(list));
    return staged;
  }

  Route route(const std::vector<at::Tensor>& tensors, const std::string& op, const c10d::ReduceOp* reduce = nullptr) {
    Route r{std::unique_lock<std::mutex>(issue_mutex_), nullptr};
    r.nccl = nccl_.for_tensors(tensors, op, reduce);
    if (r.nccl == nullptr) r.issuing.unlock();
    return r;
  }

  static std::vector<at::Tensor> joined(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
    std::vector<at::Tensor> both = a;
    both.insert(both.end(), b.begin(), b.end());
    return both;
  }

  Pending begin(const std::string& op, c10d::OpType type, const std::vector<at::Tensor>& outputs, Route r = {}) {
    Pending p;
    p.issuing = r.issuing.owns_lock() ? std::move(r.issuing) : std::unique_lock<std::mutex>(issue_mutex_);
    p.op = op;
    p.comm = r.nccl != nullptr ? r.nccl : comm_;
    if (r.nccl != nullptr && !outputs.empty()) p.cuda_device = outputs[0].device();
    std::vector<at::Tensor> results = outputs;
    if (HostStaging* staging = HostStaging::current()) {
      for (auto& t : results) t = staging->original(t);
      p.copy_back = staging->take_copy_back();
    }
    p.work = c10::make_intrusive<WeftWork>(rank_, type, std::move(results));
    return p;
  }

  weft_work** next(Pending& p) {
    p.handles.push_back(nullptr);
    return &p.handles.back();
  }

  // A failed start: earlier handles of the operation are waited for and freed, then the caller gets the error.
  void issue(Pending& p, weft_status status) {
    if (status == WEFT_OK) return;
    const std::string message = weft_comm_error(p.comm);
    p.handles.pop_back();
    for (weft_work* h : p.handles) weft_work_destroy(h);
    p.handles.clear();
    refuse(p.op, message);  // p's lock is released as the exception leaves the operation
  }

  c10::intrusive_ptr<c10d::Work> submit(Pending p) {
    auto work = p.work;
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      queue_.push_back(std::move(p));
      queue_.back().issuing.unlock();
    }
    queue_ready_.notify_one();
    return work;
  }

  static void add_copy_back(Pending& p, at::Tensor target, at::Tensor staged) {
    if (target.is_same(staged)) return;
    auto before = std::move(p.epilogue);
    p.epilogue = [before, target, staged]() mutable {
      if (before) before();
      target.copy_(staged);
    };
  }

  void complete_loop() {
    for (;;) {
      Pending p;
      {
        std::unique_lock<std::mutex> lock(queue_mutex_);
        queue_ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        p = std::move(queue_.front());
        queue_.pop_front();
      }
      std::string error;
      for (weft_work* h : p.handles) {
        if (error.empty() && weft_work_wait(h, 0.0) != WEFT_OK) error = weft_work_error(h);
        weft_work_destroy(h);
      }
      std::exception_ptr failure;
      try {
        if (!error.empty()) refuse(p.op, error);
        if (p.epilogue) p.epilogue();
        if (p.cuda_device) NcclGroup::finish_on_device(*p.cuda_device);
        if (p.copy_back) p.copy_back();
      } catch (...) {
        failure = std::current_exception();
      }
      p.work->finish(failure);
    }
  }

  c10::intrusive_ptr<c10d::Work> reduce_each(const std::string& op, c10d::OpType type, std::vector<at::Tensor>& tensors,
                                             const c10d::ReduceOp& reduce_op, int root, Route r = {}) {
    for (auto& t : tensors) dtype_of(t, op), reduction_of(reduce_op, t, op);  // refuse before issuing anything
    Pending p = begin(op, type, tensors, std::move(r));
    for (auto& t : tensors) {
      const Reduction how = reduction_of(reduce_op, t, op);
      // reduce: every rank computes the all_reduce in a copy, the root keeps it.
      at::Tensor staged = root >= 0 ? t.contiguous().clone() : t.contiguous();
      issue(p, weft_all_reduce(p.comm, staged.data_ptr(), staged.numel(), dtype_of(t, op), how.op, next(p)));
      const bool keep = root < 0 || root == rank_;
      const int size = size_;
      auto before = std::move(p.epilogue);
      p.epilogue = [before, t, staged, keep, how, size]() mutable {
        if (before) before();
        if (how.average) staged.div_(size);
        if (keep && !t.is_same(staged)) t.copy_(staged);
      };
    }
    return submit(std::move(p));
  }

  c10::intrusive_ptr<c10d::Work> gather_into(const std::string& op, c10d::OpType type, std::vector<at::Tensor>& outputs,
                                             std::vector<at::Tensor>& inputs, Route r = {}) {
    if (outputs.size() != inputs.size()) refuse(op, "one output per input is needed");
    for (size_t i = 0; i < inputs.size(); ++i) check_scaled(op, outputs[i], inputs[i]);
    Pending p = begin(op, type, outputs, std::move(r));
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Wire in = wire_of(inputs[i], op);
      at::Tensor out = outputs[i].contiguous();
      // Other dtypes travel as padded words into a scratch buffer, then each rank's bytes are unpacked.
      const bool direct = native(inputs[i]);
      at::Tensor received = direct ? out : at::empty({size_ * in.count}, in.buffer.options());
      issue(p, weft_all_gather(p.comm, in.buffer.data_ptr(), received.data_ptr(), in.count, in.dtype, next(p)));
      auto before = std::move(p.epilogue);
      const at::Tensor like = inputs[i], kept = in.buffer;
      const int64_t n = in.count, size = size_;
      p.epilogue = [before, kept, received, out, like, n, size, direct]() mutable {
        if (before) before();
        if (direct) return;
        at::Tensor chunks = out.view({size, -1});
        for (int64_t r = 0; r < size; ++r) chunks[r].copy_(unwire(received.narrow(0, r * n, n), like).reshape({-1}));
      };
      add_copy_back(p, outputs[i], out);
    }
    return submit(std::move(p));
  }

  // all_gather and gather: every rank's input into a flat buffer, then copied into the list (gather: the root's).
  c10::intrusive_ptr<c10d::Work> gather_lists(const std::string& op, c10d::OpType type,
                                              std::vector<std::vector<at::Tensor>>& outputs,
                                              std::vector<at::Tensor>& inputs, int root) {
    if (inputs.size() != 1) refuse(op, "exactly one input tensor is supported");
    const Wire in = wire_of(inputs[0], op);
    const bool keep = root < 0 || root == rank_;
    if (keep && (outputs.size() != 1 || static_cast<int>(outputs[0].size()) != size_))
      refuse(op, "the output list must hold one tensor per rank");
    at::Tensor flat = at::empty({size_ * in.count}, in.buffer.options());
    std::vector<at::Tensor> results = keep ? outputs[0] : std::vector<at::Tensor>{};
    Pending p = begin(op, type, results);
    issue(p, weft_all_gather(p.comm, in.buffer.data_ptr(), flat.data_ptr(), in.count, in.dtype, next(p)));
    const int64_t n = in.count;
    at::Tensor kept = in.buffer;
    p.epilogue = [kept, flat, results, n]() mutable {
      for (size_t r = 0; r < results.size(); ++r) results[r].copy_(unwire(flat.narrow(0, r * n, n), results[r]));
    };
    return submit(std::move(p));
  }

  c10::intrusive_ptr<c10d::Work> scatter_reduced(const std::string& op, c10d::OpType type,
                                                 std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs,
                                                 const c10d::ReduceOp& reduce_op, Route r = {}) {
    if (outputs.size() != inputs.size()) refuse(op, "one output per input is needed");
    for (size_t i = 0; i < inputs.size(); ++i) {
      check_scaled(op, inputs[i], outputs[i]);
      dtype_of(inputs[i], op), reduction_of(reduce_op, inputs[i], op);
    }
    Pending p = begin(op, type, outputs, std::move(r));
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Reduction how = reduction_of(reduce_op, inputs[i], op);
      at::Tensor in = inputs[i].contiguous();
      at::Tensor out = outputs[i].contiguous();
      issue(p, weft_reduce_scatter(p.comm, in.data_ptr(), out.data_ptr(), out.numel(), dtype_of(in, op), how.op,
                                   next(p)));
      const int size = size_;
      auto before = std::move(p.epilogue);
      p.epilogue = [before, in, out, how, size] {
        if (before) before();
        if (how.average) out.div_(size);
      };
      add_copy_back(p, outputs[i], out);
    }
    return submit(std::move(p));
  }

  c10::intrusive_ptr<c10d::Work> point_to_point(const std::string& op, c10d::OpType type,
                                                std::vector<at::Tensor>& tensors, int peer, int tag) {
    if (tensors.size() != 1) refuse(op, "exactly one tensor is supported");
    if (tag < 0 || tag >= kInternalTag) refuse(op, "tag " + std::to_string(tag) + " is outside [0, 32766]");
    at::Tensor& t = tensors[0];
    const Wire w = wire_of(t, op);
    Pending p = begin(op, type, tensors);
    if (type == c10d::OpType::SEND) {
      issue(p, weft_send(p.comm, w.buffer.data_ptr(), w.count, w.dtype, peer, tag, next(p)));
      at::Tensor staged = w.buffer;
      p.epilogue = [staged] {};
    } else {
      issue(p, weft_recv(p.comm, w.buffer.data_ptr(), w.count, w.dtype, peer, tag, next(p)));
      add_copy_back(p, t, unwire(w.buffer, t));
    }
    return submit(std::move(p));
  }

  // `big` holds size_ x `small` elements of the same dtype.
  void check_scaled(const std::string& op, const at::Tensor& big, const at::Tensor& small) const {
    if (big.scalar_type() != small.scalar_type()) refuse(op, "input and output dtypes differ");
    if (big.numel() != small.numel() * size_)
      refuse(op, "the larger tensor holds " + std::to_string(big.numel()) + " elements, expected " +
                     std::to_string(size_) + " x " + std::to_string(small.numel()));
  }

  // The list's tensors (one per rank, each shaped like `like`) end to end.
  at::Tensor flat_list(const std::string& op, const std::vector<at::Tensor>& list, const at::Tensor& like) const {
    if (static_cast<int>(list.size()) != size_) refuse(op, "the input list must hold one tensor per rank");
    std::vector<at::Tensor> flat;
    for (const auto& t : list) {
      if (t.numel() != like.numel() || t.scalar_type() != like.scalar_type())
        refuse(op, "every tensor of the list must match the output's size and dtype");
      flat.push_back(t.reshape({-1}));
    }
    return at::cat(flat);
  }

  // Element offsets of each rank's part along dim 0 (equal parts when `splits` is empty); size_ + 1 entries.
  std::vector<int64_t> split_offsets(const std::string& op, const at::Tensor& t, const std::vector<int64_t>& splits) const {
    const int64_t rows = t.dim() == 0 ? 1 : t.size(0);
    const int64_t row = rows == 0 ? 0 : t.numel() / rows;
    std::vector<int64_t> offsets{0};
    if (splits.empty() && rows % size_ != 0)
      refuse(op, std::to_string(rows) + " rows do not split into " + std::to_string(size_) + " equal parts");
    if (!splits.empty() && static_cast<int>(splits.size()) != size_) refuse(op, "need one split size per rank");
    for (int r = 0; r < size_; ++r) offsets.push_back(offsets.back() + (splits.empty() ? rows / size_ : splits[r]) * row);
    if (offsets.back() != t.numel()) refuse(op, "the split sizes do not add up to the tensor's rows");
    return offsets;
  }

  weft_comm* comm_;
  NcclGroup nccl_;
  std::mutex issue_mutex_;
  std::mutex queue_mutex_;
  std::condition_variable queue_ready_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  std::thread completer_;
};

// The MPI job's world in torch's rank order (mpirun): each rank's MPI rank travels through torch's store, and the
// world is split into torch's order when the two differ.
c10::intrusive_ptr<c10d::Backend> create_mpi_world(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                   double timeout_s) {
  weft_comm* world = nullptr;
  if (weft_comm_world(timeout_s, &world) != WEFT_OK) refuse("init_process_group", weft_last_error());
  int world_rank = 0, world_size = 0;
  weft_comm_rank(world, &world_rank, &world_size);
  const std::string mine = std::to_string(world_rank);
  store->set("weft/mpi_rank/" + std::to_string(rank), std::vector<uint8_t>(mine.begin(), mine.end()));
  bool in_order = true;
  for (int r = 0; r < size; ++r) {
    const auto got = store->get("weft/mpi_rank/" + std::to_string(r));
    in_order = in_order && std::string(got.begin(), got.end()) == std::to_string(r);
  }
  if (in_order) return c10::make_intrusive<WeftBackend>(world, store, rank, size, timeout_s);
  weft_comm* ordered = nullptr;
  const weft_status split = weft_comm_split(world, 0, rank, "torch", &ordered);
  const std::string error = weft_comm_error(world);
  weft_comm_destroy(world);
  if (split != WEFT_OK) refuse("init_process_group", error);
  return c10::make_intrusive<WeftBackend>(ordered, store, rank, size, timeout_s);
}

// The backend for torch's group (`rank` of `size`; `world_size` is torch's default group's). When torch's world is
// the MPI job (mpirun), the default group is the MPI world and smaller groups are MPI groups that meet in torch's
// store. Otherwise (torchrun, or processes started any other way) every group is a socket group set up through
// torch's store alone: TCP connections between its members, no MPI.
c10::intrusive_ptr<c10d::Backend> create_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                 const std::chrono::duration<float>& timeout, int world_size) {
  const double timeout_s = timeout.count();
  int launched_rank = 0, launched = 1;
  if (weft_launcher_rank(&launched_rank, &launched) != WEFT_OK) refuse("init_process_group", weft_last_error());
  const bool mpi_job = launched > 1 && launched == world_size;
  if (mpi_job && size == world_size) return create_mpi_world(store, rank, size, timeout_s);
  weft_store* wrapped = weft_torch::wrap_store(store);
  if (wrapped == nullptr) refuse("init_process_group", weft_last_error());
  weft_comm* comm = nullptr;
  weft_status status;
  {
    // Members wait for each other here; other Python threads (and a Python store's callbacks) keep running.
    pybind11::gil_scoped_release released;
    status = weft_comm_create_transport(wrapped, "torch", rank, size, timeout_s,
                                        mpi_job ? WEFT_TRANSPORT_MPI : WEFT_TRANSPORT_SOCKET, &comm);
  }
  const std::string error = status == WEFT_OK ? "" : weft_last_error();
  weft_store_destroy(wrapped);
  if (status != WEFT_OK) refuse(size == world_size ? "init_process_group" : "new_group", error);
  return c10::make_intrusive<WeftBackend>(comm, store, rank, size, timeout_s);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("create_backend", &create_backend, "The weft c10d Backend (torch.distributed's creator_fn)",
        pybind11::arg("store"), pybind11::arg("rank"), pybind11::arg("size"), pybind11::arg("timeout"),
        pybind11::arg("world_size"));
}
