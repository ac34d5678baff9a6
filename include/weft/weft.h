/* weft.h: the C API of libweft: trainers, checkpoints, plans, stores and communicators behind opaque handles. */
#ifndef WEFT_WEFT_H
#define WEFT_WEFT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define WEFT_API __attribute__((visibility("default")))
#else
#define WEFT_API
#endif

/* Raised only when a released function changes incompatibly; additions keep it. */
#define WEFT_API_VERSION 1

/* Every function returns one of these; the values are the exit codes of the `weft` CLI (docs/embedding.md). */
typedef enum weft_status {
  WEFT_OK = 0,
  WEFT_ERROR_INTERNAL = 1, /* anything else: a failed system call, an unexpected state */
  WEFT_ERROR_USAGE = 2,    /* bad config, key, value, name, size, dtype or handle: nothing was changed */
  WEFT_ERROR_PEER = 3      /* a peer died, a collective timed out: the group is unusable, end the job */
} weft_status;

/* Element types (numbered as inside weft). */
typedef enum weft_dtype {
  WEFT_FLOAT32 = 0,
  WEFT_BFLOAT16 = 1,
  WEFT_FLOAT16 = 2,
  WEFT_INT32 = 3,
  WEFT_INT64 = 4
} weft_dtype;

/* BAND, BOR and BXOR take int32 or int64 elements only. */
typedef enum weft_reduce_op {
  WEFT_SUM = 0,
  WEFT_MAX = 1,
  WEFT_MIN = 2,
  WEFT_PRODUCT = 3,
  WEFT_BAND = 4,
  WEFT_BOR = 5,
  WEFT_BXOR = 6
} weft_reduce_op;

typedef enum weft_log_level {
  WEFT_LOG_DEBUG = 1,
  WEFT_LOG_INFO = 2,
  WEFT_LOG_WARNING = 3,
  WEFT_LOG_ERROR = 4
} weft_log_level;

typedef struct weft_trainer weft_trainer;
typedef struct weft_comm weft_comm;
typedef struct weft_store weft_store;
typedef struct weft_work weft_work;

#define WEFT_MAX_DIMS 8

/* ---- The library ---------------------------------------------------------------------------------------------- */

WEFT_API const char* weft_version(void); /* "0.1.0" */
WEFT_API int weft_api_version(void);     /* WEFT_API_VERSION of the library loaded */
/* 1 when this libweft was built with CUDA and NCCL (NCCL groups exist: WEFT_TRANSPORT_NCCL), else 0. A build with
   NCCL may still find no device at run time. */
WEFT_API int weft_has_nccl(void);
/* The message of this thread's last failed call (any handle, or none); "" after none. Valid until this thread's
   next failing call. */
WEFT_API const char* weft_last_error(void);
/* Frees a string the library returned through a char** (plans, inspections). NULL is ignored. */
WEFT_API void weft_free(char* string);

/* Where weft's log lines go: fn(level, message, user) instead of stderr; NULL restores stderr. Called from any
   thread that logs; set it before creating handles. */
typedef void (*weft_log_fn)(int level, const char* message, void* user);
WEFT_API weft_status weft_set_log_callback(weft_log_fn fn, void* user);

/* Ends MPI once every handle is destroyed (call it before exit in an MPI job; MPI cannot be started again). After a
   peer failure it skips MPI_Finalize, which would wait for the dead peer. Idempotent. */
WEFT_API weft_status weft_finalize(void);

/* ---- Trainers ------------------------------------------------------------------------------------------------- */

/* A trainer for one rank of a job: rank and world size come from the launcher's environment (mpirun, srun, PMI;
   without one, a job of one). Exactly one of `yaml_path` and `yaml_text` is non-NULL; `overrides` are n "key=value"
   strings as `weft train --set` takes. Collective: every rank of the job creates its trainer together. */
WEFT_API weft_status weft_trainer_create(const char* yaml_path, const char* yaml_text, const char* const* overrides,
                                         size_t n_overrides, weft_trainer** out);
/* Frees the trainer (NULL is ignored). Destroy trainers on every rank in the same order. */
WEFT_API void weft_trainer_destroy(weft_trainer* trainer);
/* The message of this trainer's last failed call; "" after none. Valid until its next call. */
WEFT_API const char* weft_trainer_error(const weft_trainer* trainer);

/* This process's rank and the job's world size (either pointer may be NULL). */
WEFT_API weft_status weft_trainer_rank(const weft_trainer* trainer, int* rank, int* world_size);
/* The last completed step (0 before the first, or the step a load restored) and train.steps. */
WEFT_API weft_status weft_trainer_steps(const weft_trainer* trainer, int* done, int* planned);
/* Runs the next optimizer step (collective): weft_trainer_backward then weft_trainer_apply. Steps beyond
   train.steps are allowed (the LR schedule holds its end). */
WEFT_API weft_status weft_trainer_step(weft_trainer* trainer);
/* The two halves of a step, for reading or changing gradients before the update (collective, both).
   weft_trainer_backward: forward and backward of the next step's batch and the gradient reduction over the
   data-parallel group; the gradients are then final (weft_trainer_get_gradient, weft_trainer_set_gradient).
   weft_trainer_apply: clipping by the global norm of the gradients as they are then, the optimizer update, the
   step's metrics (and evaluation, checkpoint as weft_trainer_step). WEFT_ERROR_USAGE for a backward while one waits
   for its apply, and for an apply without a backward. */
WEFT_API weft_status weft_trainer_backward(weft_trainer* trainer);
WEFT_API weft_status weft_trainer_apply(weft_trainer* trainer);
/* The last step's metrics: the JSON object `weft train --metrics` writes for it (contract.md "Metrics"), with
   "val_loss" added on the steps train.eval_every evaluates at (`weft train` writes it on a line of its own). Owned
   by the trainer, valid until its next call. WEFT_ERROR_USAGE before the first step. */
WEFT_API weft_status weft_trainer_metrics(weft_trainer* trainer, const char** json);

/* The parameters this rank holds (its pipeline stage, each its tensor-parallel part), in the model's order. */
WEFT_API weft_status weft_trainer_tensor_count(const weft_trainer* trainer, size_t* count);
/* Name i (owned by the trainer, valid while it lives). */
WEFT_API weft_status weft_trainer_tensor_name(const weft_trainer* trainer, size_t i, const char** name);
/* This rank's shape of parameter `name` (its gradient has the same) and the dtype it is stored in. */
WEFT_API weft_status weft_trainer_tensor_shape(const weft_trainer* trainer, const char* name, int* ndim,
                                               int64_t shape[WEFT_MAX_DIMS]);
WEFT_API weft_status weft_trainer_tensor_dtype(const weft_trainer* trainer, const char* name, weft_dtype* dtype);
/* Copies parameter `name` out of, or into, the trainer as `count` fp32 values (count must be its element count).
   Reads give the values the model computes with; under parallel.zero = 3 a read is collective over the
   data-parallel group. A write sets the parameter for the following steps (and the fp32 master weights under
   bf16/fp16); every data-parallel rank must write the same values. */
WEFT_API weft_status weft_trainer_get_parameter(weft_trainer* trainer, const char* name, float* values, size_t count);
WEFT_API weft_status weft_trainer_set_parameter(weft_trainer* trainer, const char* name, const float* values,
                                                size_t count);
/* The last backward's gradient of `name` as `count` fp32 values: the gradient of the mean loss, reduced over the
   data-parallel ranks, before clipping (fp16: the loss scale divided out; bf16/fp16 storage widened). Under
   parallel.zero = 1-3 each rank keeps only its shard, so the read gathers it: collective over the data-parallel
   group (every member reads the same names in the same order). WEFT_ERROR_USAGE before any backward and under
   parallel.offload (whose gradients stream to the optimizer). */
WEFT_API weft_status weft_trainer_get_gradient(weft_trainer* trainer, const char* name, float* values, size_t count);
/* Replaces the gradient of `name` between weft_trainer_backward and weft_trainer_apply (WEFT_ERROR_USAGE
   otherwise): the next apply clips and applies these values. Every data-parallel rank passes the same whole
   tensor (under ZeRO 1-3 each keeps its shard of it). Not collective. */
WEFT_API weft_status weft_trainer_set_gradient(weft_trainer* trainer, const char* name, const float* values,
                                               size_t count);
/* The trainer's own storage of parameter (gradient) `name`: fp32, host memory, row-major, valid while the trainer
   lives. Reading it between steps sees the current values; writing a parameter through it changes what is
   trained, writing a gradient through it between backward and apply changes what is applied. WEFT_ERROR_USAGE,
   with the reason, when the tensor is not held whole in fp32 on the host (ZeRO 3, bf16/fp16 storage, a GPU;
   gradients also under ZeRO 1-2 and offload): the copying functions work there. */
WEFT_API weft_status weft_trainer_parameter_data(weft_trainer* trainer, const char* name, float** data);
WEFT_API weft_status weft_trainer_gradient_data(weft_trainer* trainer, const char* name, float** data);

/* Saves a checkpoint of the last completed step under directory `root` (as checkpoint.dir; `root`/step_N).
   Collective. */
WEFT_API weft_status weft_trainer_save(weft_trainer* trainer, const char* root);
/* Restores from checkpoint `path` (or the newest complete one under a checkpoint root), saved under any layout;
   *step (may be NULL) receives its step, and the next weft_trainer_step runs the one after (gradients waiting for
   weft_trainer_apply are dropped). Collective. */
WEFT_API weft_status weft_trainer_load(weft_trainer* trainer, const char* path, int* step);
/* `weft plan --json` for this trainer's config and world size; free *json with weft_free. */
WEFT_API weft_status weft_trainer_plan(const weft_trainer* trainer, char** json);

/* ---- Without a trainer ---------------------------------------------------------------------------------------- */

/* `weft plan --json` for a config (path or text, as weft_trainer_create) on `world_size` ranks. */
WEFT_API weft_status weft_plan(const char* yaml_path, const char* yaml_text, const char* const* overrides,
                               size_t n_overrides, int world_size, char** json);
/* What checkpoint `path` holds, as JSON (step, model, layout, files, tensors), after verifying every checksum.
   Free *json with weft_free. */
WEFT_API weft_status weft_checkpoint_inspect(const char* path, char** json);

/* ---- Stores --------------------------------------------------------------------------------------------------- */

/* A key-value store in directory `dir` (created if missing) that every process of a job can see. */
WEFT_API weft_status weft_store_create_file(const char* dir, weft_store** out);
WEFT_API void weft_store_destroy(weft_store* store);
WEFT_API const char* weft_store_error(const weft_store* store);
WEFT_API weft_status weft_store_set(weft_store* store, const char* key, const void* value, size_t size);
/* Waits up to timeout_s for `key`; *value (free with weft_free) holds *size bytes plus a terminating 0. */
WEFT_API weft_status weft_store_get(weft_store* store, const char* key, double timeout_s, char** value, size_t* size);
WEFT_API weft_status weft_store_add(weft_store* store, const char* key, int64_t delta, int64_t* result);

/* A store whose operations are the caller's functions, so a framework hands weft its own key-value store (torch's
   c10d::Store, an etcd client, ...). Each function returns WEFT_OK on success, WEFT_ERROR_PEER when a key did not
   appear within the time given (get) and any other status for another failure. weft calls them from the threads that
   create communicators, possibly several at once (a get that waits must not hold up a set). `set`, `get`, `add` and
   `check` are required:
     set(user, key, value, size)                 sets or replaces `key`;
     get(user, key, timeout_s, put, sink)        waits up to timeout_s for `key`, then calls put(sink, value, size) once
                                                 (weft copies the bytes before put returns);
     add(user, key, delta, *result)              adds delta to the integer at `key` (0 when absent), *result = the sum;
     check(user, key, *present)                  *present = 1 when `key` is set now, else 0; never waits.
   `error` (may be NULL) returns the reason of the last failure, quoted in weft's message; `release` (may be NULL) is
   called once when weft no longer needs `user`: after weft_store_destroy and the destruction of every communicator
   built over the store. */
typedef void (*weft_store_put_fn)(void* sink, const void* value, size_t size);
typedef struct weft_store_callbacks {
  weft_status (*set)(void* user, const char* key, const void* value, size_t size);
  weft_status (*get)(void* user, const char* key, double timeout_s, weft_store_put_fn put, void* sink);
  weft_status (*add)(void* user, const char* key, int64_t delta, int64_t* result);
  weft_status (*check)(void* user, const char* key, int* present);
  const char* (*error)(void* user);
  void (*release)(void* user);
} weft_store_callbacks;
/* The callbacks are copied; `user` is passed to each. WEFT_ERROR_USAGE when a required callback is NULL (then
   `release` is not called). */
WEFT_API weft_status weft_store_create_callbacks(const weft_store_callbacks* callbacks, void* user, weft_store** out);

/* ---- Communicators -------------------------------------------------------------------------------------------- */

/* The MPI world of this process (a 1-rank group without a launcher). Every wait is bounded by timeout_s (<= 0:
   300 s). Collective over the world. */
WEFT_API weft_status weft_comm_world(double timeout_s, weft_comm** out);
/* How a communicator's ranks exchange data. MPI: the members are processes of one MPI job (mpirun, srun). SOCKET: TCP
   connections between every pair of members, set up through the store alone, so any processes that share a store
   form a group (torchrun's, a framework's own). Each member listens on an ephemeral port of every interface and
   publishes "<hostname> <address> <port>" in the store; members on the same hostname connect over loopback, others
   to the address: WEFT_SOCKET_ADDR when set in that member's environment (a name or IP the others reach), else the
   first non-loopback IPv4 address its hostname resolves to, else the address it reaches MASTER_ADDR from, else its
   first interface that is up and not loopback. Both give the same results (fp32 sums in rank order).
   NCCL: CUDA device memory, in a build with CUDA: the group lives on the CUDA device current on the calling thread
   (cudaSetDevice) when it is created, its members meet in the store (NCCL's unique id), and every buffer passed to
   its operations is device memory of that device. Each operation starts after the work queued so far on the stream
   given by weft_comm_set_cuda_stream (by default the legacy default stream) and runs on a stream of the group's
   own; weft_work_wait and weft_work_test report its completion on the device. NCCL reduces bf16/fp16 in their own
   type and has no bitwise reductions (WEFT_ERROR_USAGE). Never chosen by WEFT_TRANSPORT_AUTO. */
typedef enum weft_transport {
  WEFT_TRANSPORT_AUTO = 0,
  WEFT_TRANSPORT_MPI = 1,
  WEFT_TRANSPORT_SOCKET = 2,
  WEFT_TRANSPORT_NCCL = 3
} weft_transport;

/* The rank and size the launcher's environment gives this process (mpirun, srun, PMI; 0 and 1 without one), without
   starting MPI. Either pointer may be NULL. */
WEFT_API weft_status weft_launcher_rank(int* rank, int* size);

/* A group of processes that meet through `store`: each passes its `rank` in [0, size) and the same `name`, `size`,
   timeout and transport; a name is used once per store. Collective over the group's members only.
   WEFT_TRANSPORT_AUTO is MPI when this process is one of an MPI launch of at least `size` processes
   (weft_launcher_rank), else SOCKET (torchrun, or processes started any other way).
   MPI: once MPI runs in every process of the job (MPI's start waits for all of them: create the world communicator or
   a trainer everywhere first), the members publish their MPI ranks in the store. SOCKET: no MPI is started; the store
   must serve every member until the group and the groups split from it are created. A member that does not arrive
   fails the others with WEFT_ERROR_PEER naming it within timeout_s. */
WEFT_API weft_status weft_comm_create_transport(weft_store* store, const char* name, int rank, int size,
                                                double timeout_s, weft_transport transport, weft_comm** out);
/* weft_comm_create_transport with WEFT_TRANSPORT_NCCL on CUDA device `cuda_device` (an ordinal of this process; < 0:
   the calling thread's current device), for callers whose current device lives in another copy of the CUDA runtime. */
WEFT_API weft_status weft_comm_create_nccl(weft_store* store, const char* name, int rank, int size, double timeout_s,
                                           int cuda_device, weft_comm** out);
/* weft_comm_create_transport with WEFT_TRANSPORT_AUTO. */
WEFT_API weft_status weft_comm_create(weft_store* store, const char* name, int rank, int size, double timeout_s,
                                      weft_comm** out);
/* The transport `comm` uses (MPI, SOCKET or NCCL; the world communicator and its splits are MPI). */
WEFT_API weft_status weft_comm_transport(const weft_comm* comm, weft_transport* transport);
/* NCCL groups: operations issued after this call start after the work queued on `cuda_stream` (a cudaStream_t of
   the group's device; NULL is the legacy default stream) at the time each is issued. WEFT_ERROR_USAGE for a group of
   another transport. */
WEFT_API weft_status weft_comm_set_cuda_stream(weft_comm* comm, void* cuda_stream);
/* Collective over `comm`: the ranks with the same color form a group named `name`, ordered by (key, rank); *out is
   NULL for color < 0. */
WEFT_API weft_status weft_comm_split(weft_comm* comm, int color, int key, const char* name, weft_comm** out);
/* Frees the communicator (NULL is ignored) after its operations complete. */
WEFT_API void weft_comm_destroy(weft_comm* comm);
WEFT_API const char* weft_comm_error(const weft_comm* comm);
WEFT_API weft_status weft_comm_rank(const weft_comm* comm, int* rank, int* size);

/* Collectives on host buffers. Counts are elements of `dtype`. With work == NULL the call returns once the operation
   completed (or failed, or timed out). Otherwise it returns at once with *work, and the buffers must stay valid and
   untouched until weft_work_wait succeeds. Issue a communicator's operations in the same order on every rank, from
   one thread at a time. Sums of fp32 are added in rank order, bf16/fp16 in fp32 and rounded once, integers exactly:
   every rank gets the same bits. */
WEFT_API weft_status weft_all_reduce(weft_comm* comm, void* data, size_t count, weft_dtype dtype, weft_reduce_op op,
                                     weft_work** work);
/* `send` holds size x recv_count elements; rank r receives the reduced chunk r. `recv` may be chunk r of `send`. */
WEFT_API weft_status weft_reduce_scatter(weft_comm* comm, const void* send, void* recv, size_t recv_count,
                                         weft_dtype dtype, weft_reduce_op op, weft_work** work);
/* `recv` holds size x send_count elements: chunk r comes from rank r. */
WEFT_API weft_status weft_all_gather(weft_comm* comm, const void* send, void* recv, size_t send_count,
                                     weft_dtype dtype, weft_work** work);
WEFT_API weft_status weft_broadcast(weft_comm* comm, void* data, size_t count, weft_dtype dtype, int root,
                                    weft_work** work);
/* Point to point; a send matches the recv with the same (peer, tag), tag in [0, 32767]. A blocking send returns
   once delivered: post a recv that pairs with it first, or use work handles. */
WEFT_API weft_status weft_send(weft_comm* comm, const void* data, size_t count, weft_dtype dtype, int peer, int tag,
                               weft_work** work);
WEFT_API weft_status weft_recv(weft_comm* comm, void* data, size_t count, weft_dtype dtype, int peer, int tag,
                               weft_work** work);
WEFT_API weft_status weft_barrier(weft_comm* comm, weft_work** work);

/* Waits up to timeout_s (<= 0: the communicator's) for the operation; WEFT_ERROR_PEER naming the rank and the
   operation when it does not complete in time, or at once when a member of a SOCKET group closed its connection
   (its process exited or died): "... could not complete all_reduce #3 (group g, 4.0 kB): rank 2 closed its
   connection ...". After either the group is unusable. */
WEFT_API weft_status weft_work_wait(weft_work* work, double timeout_s);
/* *done = 1 once the operation finished (successfully or not; weft_work_wait says which). Never blocks. */
WEFT_API weft_status weft_work_test(weft_work* work, int* done);
WEFT_API const char* weft_work_error(const weft_work* work);
/* Frees the handle; an operation still running is waited for first (up to the communicator's timeout). */
WEFT_API void weft_work_destroy(weft_work* work);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_WEFT_H */
