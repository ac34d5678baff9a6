// OptimizerOffload: ZeRO-Offload (Ren et al. 2021) and ZeRO-Infinity's offload to NVMe (Rajbhandari et al. 2021):
// the fp32 master weights, Adam's moments and the AdamW step live in host memory (parallel.offload: host) or in a
// scratch file under parallel.offload_dir (disk); the device keeps the parameters in their storage type.
//
// Per step: backward hands each bucket's reduced gradients over as soon as they are final, and they stream to the
// host (and on to the file) while backward goes on, freeing the device's copy. After the gradient norm, the update
// runs on a host thread in tiles of the buckets' ranges (the last bucket first: the next forward needs the
// embeddings first): the disk variant reads tile k+1 and writes tile k-1 back while tile k is stepped, and the
// updated parameters of each tile are copied to the device while the next tile is stepped. The next step's forward
// starts meanwhile and waits only for the buckets it reads (ParamStore's before_reading hook).
//
// The arithmetic is AdamW's element by element (adamw_update) on the same values, so an offloaded run equals the
// same layout without offload bit for bit where the host runs the device's kernels (the CPU engine). The gradient
// norm is summed on the device before the hand-over (Trainer), as without offload.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <vector>

#include "model/optimizer.h"
#include "parallel/offload_file.h"
#include "parallel/offload_layout.h"
#include "runtime/config.h"
#include "runtime/device.h"
#include "runtime/task_queue.h"
#include "runtime/tensor.h"
#include "runtime/trace.h"

namespace weft {

class OptimizerOffload {
 public:
  // One bucket's share of the update: its range of the flat parameters, and where those parameters start on the
  // device (ParamStore::update_view).
  struct Target {
    ParamRange range;
    void* device_params = nullptr;
  };

  // `type`: the parameters' and gradients' storage type. Disk: creates and fills the file (a usage error when
  // parallel.offload_dir cannot hold it). Host memory is charged to host_memory(), never to the device.
  // `initial`: where the master weights start (the same source as the parameters).
  OptimizerOffload(const Config& config, const ParamLayout& params, const InitialValues& initial,
                   std::vector<Target> targets, DType type, Device& device, int rank, Tracer* tracer);
  ~OptimizerOffload();
  OptimizerOffload(const OptimizerOffload&) = delete;
  OptimizerOffload& operator=(const OptimizerOffload&) = delete;

  // Backward: bucket b's reduced gradients are final in `gradients`, its update range from element `offset`.
  // Starts copying them to the host (and on to the file); `gradients` is freed once the copy is done.
  void gradients_ready(std::size_t b, Tensor gradients, std::int64_t offset);
  // After backward: every bucket's gradients are on the host (and in the file).
  void gradients_landed();
  // Starts the update of every bucket on the host thread and returns; `grad_scale` as in AdamWOptimizer::step.
  void start_update(int step, float lr, float grad_scale);
  // Returns once bucket b's new parameters are on the device (at once when no update runs); an update's error.
  void wait_for(std::size_t b);
  void wait_all();

  // Checkpoints: bucket b's fp32 weights (the master weights, or fp32 parameters' exact copy), Adam's m and v over
  // its update range.
  std::array<std::vector<float>, 3> state(std::size_t b);
  void set_state(std::size_t b, const std::array<std::vector<float>, 3>& values);

  MemoryAccounting& host_memory() { return host_->memory(); }
  std::int64_t file_bytes() const { return file_ ? file_->bytes() : 0; }

 private:
  class HostBuffer;
  using Tile = OffloadLayout::Tile;
  struct Slot;
  struct Resident;
  struct Staging;
  struct Views {
    float* weights;  // fp32: the master weights (fp32 parameters are their own)
    float* m;
    float* v;
    void* grads;
  };

  std::size_t param_bytes() const { return dtype_size(type_); }
  Views views(const Tile& tile, Slot& slot);
  // Waits until a slot's last file transfer and device copy are done, so it can be filled again.
  void settle(Slot& slot);
  void run_update(int step, float lr, float grad_scale);
  // Disk: writes the master weights, m and v of tile `t` from `slot`'s region.
  void write_state(const Tile& tile, Slot& slot);
  // Copies bucket b's state between `values` (fp32, over its range) and its home, in either direction.
  enum class Direction { kToHome, kFromHome };
  void move_state(std::size_t b, std::array<std::vector<float>, 3>& values, Direction direction);

  std::vector<Target> targets_;
  DType type_;
  Device& device_;
  Tracer* tracer_;
  std::unique_ptr<Device> host_;                // the host as a device: its kernels and its memory accounting
  std::vector<AdamWOptimizer> adams_;           // per bucket: AdamW's segments of its range, moments kept here
  OffloadLayout layout_;                        // the tiles, and what is allocated for them
  std::vector<std::size_t> order_;              // the tiles in update order
  std::vector<Resident> resident_;              // host: per bucket
  std::unique_ptr<HostBuffer> widened_;         // 16-bit: the tile's gradients in fp32 for the step
  std::unique_ptr<OffloadFile> file_;           // disk
  std::vector<Slot> slots_;
  std::vector<Staging> staging_;                // disk: gradients on their way to the file
  std::size_t next_staging_ = 0;
  std::deque<std::pair<std::size_t, Tensor>> copying_;  // device gradients whose copy is in flight
  std::unique_ptr<Stream> to_host_, to_device_;
  std::unique_ptr<Event> computed_;
  std::vector<std::unique_ptr<Event>> landed_, updated_;  // per bucket

  std::mutex mutex_;
  std::condition_variable progress_;
  std::vector<char> ready_;  // per bucket: its new parameters are on the device (true while no update runs)
  bool running_ = false;
  std::future<void> update_;
  // Last, so they stop (finishing what they run) before anything their tasks use goes away.
  std::unique_ptr<TaskQueue> io_;
  TaskQueue worker_;
};

}  // namespace weft
