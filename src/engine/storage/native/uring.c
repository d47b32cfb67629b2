// The system calls of the io_uring storage backend (src/engine/storage/uring.ts), as the
// `uring` object of the addon. No liburing: the ring is set up, mapped and driven with the raw
// io_uring_setup / io_uring_enter / io_uring_register system calls.
//
//   create(entries)              -> ring handle (an External). Also makes an eventfd, registers it
//                                   with the ring and polls it (uv_poll_t) on this environment's loop.
//   read(ring, fd, buffer, offset, length, position) -> bytes read; waits for the READ in the call.
//   writev(ring, fd, buffers, position) -> bytesWritten * 2 + (inline ? 1 : 0), where inline means
//                                   every WRITEV had completed when its io_uring_enter returned.
//   fsync(ring, fd, callback)    -> submits an fdatasync and returns; callback(error | null) runs
//                                   later from the event loop.
//   writevSync(ring, fd, buffers, position, callback) -> as writev, with an fdatasync linked after
//                                   the (last) WRITEV and submitted with it; callback as for fsync.
//   close(ring)                  -> idempotent; throws EBUSY while callbacks are still due.
//   pending(ring)                -> callbacks not yet delivered.
//
// Synchronous calls never run JS: completions of async operations that they reap are queued on the
// ring and delivered from the next poll callback (the kernel signalled the eventfd for them too).
// The poll handle is referenced only while callbacks are due, so an idle ring keeps no loop alive.
// Async operations are bounded by the CQ size (EAGAIN beyond), so the CQ cannot overflow.
//
// Callback rules: each fsync/writevSync that returns calls back exactly once. When writevSync
// throws (its write failed), its callback is never called; the linked fdatasync, which the kernel
// completes with ECANCELED, is reaped and dropped (it counts in pending() until then). A short
// write breaks the link too: writevSync then returns the short count and the callback gets ECANCELED.
//
// Lifetime: close() refuses (EBUSY) rather than block the event loop while callbacks are due. A
// handle collected without close() is torn down by its finalizer, or after its last callback if
// some are due. An environment that ends first (a worker) tears its rings down in a cleanup hook.
// Everything lives in the per-ring struct: rings of different environments share nothing.
// Errors are thrown (or passed) as Error objects whose `code` is the errno name.

#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include "walrus_common.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__linux__) && defined(__has_include)
#if __has_include(<linux/io_uring.h>)
#include <linux/io_uring.h>
#include <sys/syscall.h>
#endif
#endif

#if defined(IORING_FEAT_RW_CUR_POS) && defined(__NR_io_uring_setup)

#include <dlfcn.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#define IOV_CHUNK 1024        // iovecs per WRITEV (IOV_MAX); longer lists become several WRITEVs
#define MAX_READ 0x7ffff000u  // the kernel's per-call cap; JS loops on short reads
#define SYNC_TAG 1u           // user_data of synchronous ops: (sequence << 1) | 1; async ops: op_t *

/** An async operation (fsync) whose callback is due. */
typedef struct op_s {
  struct op_s *prev, *next;  // the ring's list of live ops
  struct op_s *ready_next;   // the ring's queue of completed, undelivered ops
  napi_ref callback;
  napi_async_context context;
  int res;
  bool dropped;  // its submitter threw: reap it, never call back
} op_t;

typedef struct {
  napi_env env;
  int fd, event_fd;
  bool eventfd_registered, hooked, torn_down, js_alive, delivering, pinned;
  uv_poll_t *poll;
  void *sq_ring, *cq_ring;
  size_t sq_ring_size, cq_ring_size, sqes_size;
  struct io_uring_sqe *sqes;
  unsigned *sq_head, *sq_tail, sq_mask, sq_entries;
  unsigned *cq_head, *cq_tail, cq_mask, cq_entries;
  struct io_uring_cqe *cqes;
  uint64_t sync_seq;  // the synchronous op being waited for
  bool sync_done;
  int sync_res;
  op_t *live, *ready_head, *ready_tail;
  unsigned pending;  // live ops (submitted, not yet delivered)
} ring_t;

static const napi_type_tag RING_TAG = {0x57616c7275735552ull, 0x696e67486e646c65ull};

// ---- errors and arguments (the shared helpers are in native/walrus_common.h) -----------------

/** The arguments of a JS call (missing ones are undefined, which every check rejects). */
#define ARGS(n)                                                                                                          \
  size_t argc = n;                                                                                                       \
  napi_value argv[n];                                                                                                    \
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL))

// ---- the rings ----------------------------------------------------------------------------------

static unsigned load_acquire(const unsigned *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void store_release(unsigned *p, unsigned v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static int sys_enter(ring_t *r, unsigned to_submit, unsigned min_complete, unsigned flags) {
  long ret = syscall(__NR_io_uring_enter, r->fd, to_submit, min_complete, flags, NULL, 0);
  return ret < 0 ? -errno : (int)ret;
}

/** Maps the SQ ring, the CQ ring (one mapping with IORING_FEAT_SINGLE_MMAP) and the SQE array. */
static int map_rings(ring_t *r, const struct io_uring_params *p) {
  r->sq_ring_size = p->sq_off.array + p->sq_entries * sizeof(unsigned);
  r->cq_ring_size = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);
  bool single = (p->features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single) {
    if (r->cq_ring_size > r->sq_ring_size) r->sq_ring_size = r->cq_ring_size;
    r->cq_ring_size = r->sq_ring_size;
  }
  void *sq = mmap(NULL, r->sq_ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
  if (sq == MAP_FAILED) return errno;
  r->sq_ring = sq;
  void *cq = sq;
  if (!single) {
    cq = mmap(NULL, r->cq_ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
    if (cq == MAP_FAILED) return errno;
  }
  r->cq_ring = cq;
  r->sqes_size = p->sq_entries * sizeof(struct io_uring_sqe);
  void *sqes = mmap(NULL, r->sqes_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
  if (sqes == MAP_FAILED) return errno;
  r->sqes = sqes;
  char *s = sq, *c = cq;
  r->sq_head = (unsigned *)(s + p->sq_off.head);
  r->sq_tail = (unsigned *)(s + p->sq_off.tail);
  r->sq_mask = *(unsigned *)(s + p->sq_off.ring_mask);
  r->sq_entries = p->sq_entries;
  r->cq_head = (unsigned *)(c + p->cq_off.head);
  r->cq_tail = (unsigned *)(c + p->cq_off.tail);
  r->cq_mask = *(unsigned *)(c + p->cq_off.ring_mask);
  r->cq_entries = p->cq_entries;
  r->cqes = (struct io_uring_cqe *)(c + p->cq_off.cqes);
  // SQEs are always queued in order, so slot i of the index array can name SQE i once and for all.
  unsigned *array = (unsigned *)(s + p->sq_off.array);
  for (unsigned i = 0; i < p->sq_entries; i++) array[i] = i;
  return 0;
}

static void push_ready(ring_t *r, op_t *op) {
  op->ready_next = NULL;
  if (r->ready_tail != NULL) r->ready_tail->ready_next = op;
  else r->ready_head = op;
  r->ready_tail = op;
}

/** Moves every CQE out of the CQ: the awaited synchronous result, or an async op to the ready queue. */
static void reap(ring_t *r) {
  unsigned head = *r->cq_head;  // only this thread writes it
  unsigned tail = load_acquire(r->cq_tail);
  for (; head != tail; head++) {
    const struct io_uring_cqe *cqe = &r->cqes[head & r->cq_mask];
    uint64_t data = cqe->user_data;
    if (data & SYNC_TAG) {
      // A completion of an abandoned synchronous op (see wait_sync) has an old sequence: dropped.
      if ((data >> 1) == r->sync_seq) {
        r->sync_res = cqe->res;
        r->sync_done = true;
      }
    } else {
      op_t *op = (op_t *)(uintptr_t)data;
      op->res = cqe->res;
      push_ready(r, op);
    }
  }
  store_release(r->cq_head, head);
}

/**
 * Hands every queued SQE to the kernel (with `wait`, also waiting for one completion in the same
 * call). On a hard failure the SQEs the kernel did not take are dropped and -errno is returned.
 */
static int flush(ring_t *r, bool wait) {
  int busy = 0;
  for (;;) {
    unsigned queued = *r->sq_tail - load_acquire(r->sq_head);
    if (queued == 0) return 0;
    int ret = sys_enter(r, queued, wait ? 1 : 0, wait ? IORING_ENTER_GETEVENTS : 0);
    if (ret > 0 || ret == -EINTR) continue;
    if ((ret == 0 || ret == -EAGAIN || ret == -EBUSY) && ++busy < 1000) {
      reap(r);  // short of kernel resources: make room, let others run, retry
      sched_yield();
      continue;
    }
    store_release(r->sq_tail, load_acquire(r->sq_head));
    return ret < 0 ? ret : -EAGAIN;
  }
}

/** True once the kernel has consumed the SQE queued at tail position `index`. */
static bool consumed(ring_t *r, unsigned index) { return (int)(load_acquire(r->sq_head) - index) > 0; }

/** The next free SQE, zeroed (its position in *index), or NULL when the SQ stays full. */
static struct io_uring_sqe *next_sqe(ring_t *r, unsigned *index) {
  if (*r->sq_tail - load_acquire(r->sq_head) >= r->sq_entries) flush(r, false);
  unsigned tail = *r->sq_tail;
  if (tail - load_acquire(r->sq_head) >= r->sq_entries) return NULL;
  struct io_uring_sqe *sqe = &r->sqes[tail & r->sq_mask];
  memset(sqe, 0, sizeof *sqe);
  if (index != NULL) *index = tail;
  return sqe;
}

/** Publishes the SQE filled by next_sqe (release: the kernel sees it whole). */
static void queue_sqe(ring_t *r) { store_release(r->sq_tail, *r->sq_tail + 1); }

/** Queues an fdatasync of fd for `op`; false when the SQ stays full. */
static bool queue_fsync(ring_t *r, int fd, op_t *op, unsigned *index) {
  struct io_uring_sqe *sqe = next_sqe(r, index);
  if (sqe == NULL) return false;
  sqe->opcode = IORING_OP_FSYNC;
  sqe->fd = fd;
  sqe->fsync_flags = IORING_FSYNC_DATASYNC;
  sqe->user_data = (uint64_t)(uintptr_t)op;
  queue_sqe(r);
  return true;
}

/** Starts a synchronous op: its user_data. */
static uint64_t sync_tag(ring_t *r) {
  r->sync_seq++;
  r->sync_done = false;
  return (r->sync_seq << 1) | SYNC_TAG;
}

/**
 * Submits what is queued and waits for the current synchronous op; returns its result (>= 0 or
 * -errno). With `inlined`, submission and waiting are separate calls and *inlined says whether the
 * CQE was there as soon as the submitting io_uring_enter returned; without, they are one call.
 */
static int wait_sync(ring_t *r, unsigned index, bool *inlined) {
  int err = flush(r, inlined == NULL);
  if (err < 0 && !consumed(r, index)) return err;
  reap(r);
  if (inlined != NULL) *inlined = r->sync_done;
  while (!r->sync_done) {
    int ret = sys_enter(r, 0, 1, IORING_ENTER_GETEVENTS);
    // Only a broken ring fails here (EFAULT, EBADF); the op is then abandoned and its late CQE dropped.
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) return ret;
    reap(r);
  }
  return r->sync_res;
}

static void update_ref(ring_t *r) {
  if (r->poll == NULL) return;
  if (r->pending > 0) uv_ref((uv_handle_t *)r->poll);
  else uv_unref((uv_handle_t *)r->poll);
}

static void free_poll(uv_handle_t *handle) { free(handle); }

/**
 * A worker's environment unloads its addons when it ends, but the loop still runs the close
 * callback of a poll handle closed at teardown afterwards: that code must stay mapped. Marks this
 * library RTLD_NODELETE; when that fails, the handle is closed without a callback and leaked.
 */
static bool pin_library(void) {
  Dl_info info;
  if (dladdr(&RING_TAG, &info) == 0 || info.dli_fname == NULL) return false;
  return dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE) != NULL;
}

static void cleanup_hook(void *arg);

/**
 * Releases the kernel side and the poll handle (whatever of them exists). Live ops are only left
 * when the environment exits first: their memory is freed and their callbacks are never called.
 */
static void teardown(ring_t *r, bool env_exiting) {
  if (r->torn_down) return;
  r->torn_down = true;
  if (r->hooked && !env_exiting) napi_remove_env_cleanup_hook(r->env, cleanup_hook, r);
  r->hooked = false;
  if (r->eventfd_registered) syscall(__NR_io_uring_register, r->fd, IORING_UNREGISTER_EVENTFD, NULL, 0);
  if (r->poll != NULL) uv_close((uv_handle_t *)r->poll, r->pinned ? free_poll : NULL);
  r->poll = NULL;
  if (r->event_fd >= 0) close(r->event_fd);
  if (r->sqes != NULL) munmap(r->sqes, r->sqes_size);
  if (r->cq_ring != NULL && r->cq_ring != r->sq_ring) munmap(r->cq_ring, r->cq_ring_size);
  if (r->sq_ring != NULL) munmap(r->sq_ring, r->sq_ring_size);
  if (r->fd >= 0) close(r->fd);  // the kernel cancels or finishes what it still has
  for (op_t *op = r->live, *next; op != NULL; op = next) {
    next = op->next;
    free(op);
  }
  r->live = r->ready_head = r->ready_tail = NULL;
  r->pending = 0;
}

static void cleanup_hook(void *arg) {
  ring_t *r = arg;
  r->hooked = false;
  teardown(r, true);
  if (!r->js_alive) free(r);  // else the handle's finalizer frees it, if it still runs
}

/** The handle was collected: tear down now, or (callbacks due) after the last one is delivered. */
static void finalize_ring(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  ring_t *r = data;
  r->js_alive = false;
  if (r->delivering) return;  // deliver() finishes the job when its callback returns
  if (r->pending == 0) teardown(r, false);
  if (r->torn_down) free(r);
}

static op_t *new_op(napi_env env, ring_t *r, napi_value callback) {
  op_t *op = calloc(1, sizeof *op);
  if (op == NULL) return NULL;
  napi_value name;
  if (napi_create_reference(env, callback, 1, &op->callback) != napi_ok) {
    free(op);
    return NULL;
  }
  if (napi_create_string_utf8(env, "walrus:uring.fsync", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, NULL, name, &op->context) != napi_ok) {
    napi_delete_reference(env, op->callback);
    free(op);
    return NULL;
  }
  op->next = r->live;
  if (r->live != NULL) r->live->prev = op;
  r->live = op;
  r->pending++;
  update_ref(r);
  return op;
}

/** Unlinks and frees an op (delivered, or never handed to the kernel). */
static void free_op(napi_env env, ring_t *r, op_t *op) {
  if (op->prev != NULL) op->prev->next = op->next;
  else r->live = op->next;
  if (op->next != NULL) op->next->prev = op->prev;
  r->pending--;
  update_ref(r);
  if (op->context != NULL) napi_async_destroy(env, op->context);
  napi_delete_reference(env, op->callback);
  free(op);
}

/** Calls back every completed op, in completion order, from the event loop. */
static void deliver(ring_t *r) {
  napi_env env = r->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  r->delivering = true;
  while (!r->torn_down && r->ready_head != NULL) {
    op_t *op = r->ready_head;
    r->ready_head = op->ready_next;
    if (r->ready_head == NULL) r->ready_tail = NULL;
    napi_value callback, argument, global;
    if (!op->dropped && napi_get_reference_value(env, op->callback, &callback) == napi_ok && callback != NULL &&
        napi_get_global(env, &global) == napi_ok) {
      if (op->res < 0) argument = walrus_errno_error(env, "fsync", -op->res);
      else napi_get_null(env, &argument);
      if (argument == NULL) napi_get_undefined(env, &argument);
      napi_async_context context = op->context;
      op->context = NULL;
      free_op(env, r, op);  // before the call: the callback may close the ring
      napi_status status = napi_make_callback(env, context, global, callback, 1, &argument, NULL);
      if (status == napi_pending_exception) {
        napi_value error;
        napi_get_and_clear_last_exception(env, &error);
        napi_fatal_exception(env, error);  // like a throw from any event-loop callback
      }
      napi_async_destroy(env, context);
    } else {
      free_op(env, r, op);
    }
  }
  napi_close_handle_scope(env, scope);
  r->delivering = false;
  if (!r->js_alive) {  // collected while callbacks were due: gone once the last one is delivered
    if (r->pending == 0) teardown(r, false);
    if (r->torn_down) free(r);
  }
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  (void)status;
  (void)events;
  ring_t *r = handle->data;
  uint64_t count;
  while (read(r->event_fd, &count, sizeof count) < 0 && errno == EINTR) {
  }
  reap(r);
  deliver(r);
}

/** Makes the poll fire although no CQE came (an op completed by this code, not the kernel). */
static void poke(ring_t *r) {
  uint64_t one = 1;
  while (write(r->event_fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

// ---- arguments ----------------------------------------------------------------------------------

/** The ring behind a handle made by create() (the type tag rules out any other External). */
static ring_t *unwrap_ring(napi_env env, napi_value value) {
  napi_valuetype type;
  bool tagged = false;
  void *data = NULL;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external ||
      napi_check_object_type_tag(env, value, &RING_TAG, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, value, &data) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "not an io_uring ring made by create()");
    return NULL;
  }
  return data;
}

/** An open ring. */
static ring_t *get_ring(napi_env env, napi_value value) {
  ring_t *r = unwrap_ring(env, value);
  if (r != NULL && r->torn_down) {
    walrus_throw_errno(env, "io_uring ring is closed", EBADF);
    return NULL;
  }
  return r;
}

static bool get_bytes(napi_env env, napi_value value, void **data, size_t *length) {
  bool is_typed = false;
  napi_typedarray_type type;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, value, &type, length, data, NULL, NULL) != napi_ok ||
      (type != napi_uint8_array && type != napi_int8_array && type != napi_uint8_clamped_array)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "buffers must be Uint8Arrays");
    return false;
  }
  if (*data == NULL) *data = "";  // an empty array may have no store; the kernel still wants an address
  return true;
}

/** The iovecs of a JS array of Uint8Arrays; *iov is `local` when it fits, else malloc'd. */
static bool get_iovecs(napi_env env, napi_value array, struct iovec *local, uint32_t local_count, struct iovec **iov,
                       uint32_t *count, uint64_t *total) {
  bool is_array = false;
  if (napi_is_array(env, array, &is_array) != napi_ok || !is_array || napi_get_array_length(env, array, count) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "buffers must be an array of Uint8Arrays");
    return false;
  }
  *iov = *count <= local_count ? local : malloc(*count * sizeof **iov);
  if (*iov == NULL) return walrus_throw_errno(env, "writev", ENOMEM), false;
  *total = 0;
  for (uint32_t i = 0; i < *count; i++) {
    napi_value element;
    if (napi_get_element(env, array, i, &element) != napi_ok ||
        !get_bytes(env, element, &(*iov)[i].iov_base, &(*iov)[i].iov_len)) {
      if (*iov != local) free(*iov);
      return walrus_rethrow(env), false;
    }
    *total += (*iov)[i].iov_len;
  }
  return true;
}

// ---- the functions ------------------------------------------------------------------------------

static napi_value js_create(napi_env env, napi_callback_info info) {
  ARGS(1);
  uint32_t entries;
  // At least 2: writevSync queues a WRITEV and its fdatasync together.
  if (napi_get_value_uint32(env, argv[0], &entries) != napi_ok || entries < 2 || entries > 4096) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "entries must be an integer from 2 to 4096");
    return NULL;
  }
  ring_t *r = malloc(sizeof *r);
  if (r == NULL) return walrus_throw_errno(env, "io_uring_setup", ENOMEM);
  *r = (ring_t){.env = env, .fd = -1, .event_fd = -1, .js_alive = true, .pinned = pin_library()};
  struct io_uring_params params;
  memset(&params, 0, sizeof params);
  const char *what = "io_uring_setup";
  int err;
  uv_loop_t *loop;
  napi_value handle;
  if ((r->fd = (int)syscall(__NR_io_uring_setup, entries, &params)) < 0) goto fail_errno;
  what = "io_uring (needs Linux 5.6)", err = ENOSYS;
  if (!(params.features & IORING_FEAT_RW_CUR_POS)) goto fail;
  what = "io_uring mmap";
  if ((err = map_rings(r, &params)) != 0) goto fail;
  what = "eventfd";
  if ((r->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) goto fail_errno;
  what = "io_uring_register";
  if (syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_EVENTFD, &r->event_fd, 1) != 0) goto fail_errno;
  r->eventfd_registered = true;
  what = "uv_poll", err = ENOMEM;  // libuv's errors are -errno on Unix
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || (r->poll = malloc(sizeof *r->poll)) == NULL) goto fail;
  if ((err = -uv_poll_init(loop, r->poll, r->event_fd)) != 0) {
    free(r->poll);
    r->poll = NULL;
    goto fail;
  }
  r->poll->data = r;
  uv_unref((uv_handle_t *)r->poll);
  if ((err = -uv_poll_start(r->poll, UV_READABLE, on_poll)) != 0) goto fail;
  if (napi_create_external(env, r, finalize_ring, NULL, &handle) != napi_ok) {
    teardown(r, false);
    free(r);
    return walrus_rethrow(env);
  }
  // From here the handle's finalizer owns r.
  CHECK(env, napi_type_tag_object(env, handle, &RING_TAG));
  CHECK(env, napi_add_env_cleanup_hook(env, cleanup_hook, r));
  r->hooked = true;
  return handle;
fail_errno:
  err = errno;
fail:
  teardown(r, false);
  free(r);
  return walrus_throw_errno(env, what, err);
}

static napi_value js_read(napi_env env, napi_callback_info info) {
  ARGS(6);
  ring_t *r = get_ring(env, argv[0]);
  int fd;
  void *data;
  size_t size;
  int64_t offset, length, position;
  if (r == NULL || !walrus_get_fd(env, argv[1], &fd) || !get_bytes(env, argv[2], &data, &size) ||
      !walrus_get_size(env, argv[3], "offset", &offset) || !walrus_get_size(env, argv[4], "length", &length) ||
      !walrus_get_size(env, argv[5], "position", &position))
    return NULL;
  if ((uint64_t)offset > size || (uint64_t)length > size - (uint64_t)offset) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "offset + length is past the end of the buffer");
    return NULL;
  }
  int res = 0;
  if (length > 0) {
    unsigned index;
    struct io_uring_sqe *sqe = next_sqe(r, &index);
    if (sqe == NULL) return walrus_throw_errno(env, "io_uring read", EAGAIN);
    sqe->opcode = IORING_OP_READ;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)((char *)data + offset);
    sqe->len = length > MAX_READ ? MAX_READ : (uint32_t)length;
    sqe->off = (uint64_t)position;
    sqe->user_data = sync_tag(r);
    queue_sqe(r);
    res = wait_sync(r, index, NULL);
    if (res < 0) return walrus_throw_errno(env, "io_uring read", -res);
  }
  napi_value result;
  CHECK(env, napi_create_int32(env, res, &result));
  return result;
}

/**
 * Writes the iovecs from `position`, IOV_CHUNK per WRITEV, each waited for. With `link`, the last
 * WRITEV carries IOSQE_IO_LINK and is followed by that op's fdatasync in the same submission
 * (*linked: the kernel took it). Stops after a short write. Returns 0 or the first error (-errno).
 */
static int write_chunks(ring_t *r, int fd, const struct iovec *iov, uint32_t count, int64_t position, op_t *link,
                        uint64_t *written, bool *all_inline, bool *linked) {
  *written = 0;
  *all_inline = true;
  *linked = false;
  for (uint32_t start = 0; start < count;) {
    uint32_t n = count - start < IOV_CHUNK ? count - start : IOV_CHUNK;
    bool linking = link != NULL && start + n == count;
    uint64_t bytes = 0;
    for (uint32_t i = start; i < start + n; i++) bytes += iov[i].iov_len;
    if (linking && r->sq_entries - (*r->sq_tail - load_acquire(r->sq_head)) < 2) flush(r, false);
    unsigned index, link_index;
    struct io_uring_sqe *sqe = next_sqe(r, &index);
    if (sqe == NULL) return -EAGAIN;
    sqe->opcode = IORING_OP_WRITEV;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)(iov + start);
    sqe->len = n;
    sqe->off = (uint64_t)position + *written;
    sqe->user_data = sync_tag(r);
    if (linking) sqe->flags = IOSQE_IO_LINK;
    queue_sqe(r);
    link_index = *r->sq_tail;  // stays unconsumed should the SQ have no room for the fdatasync
    if (linking) queue_fsync(r, fd, link, &link_index);
    bool inlined = false;
    int res = wait_sync(r, index, &inlined);
    if (linking) *linked = consumed(r, link_index);
    if (!inlined) *all_inline = false;
    if (res < 0) return res;
    *written += (uint64_t)res;
    if ((uint64_t)res < bytes) return 0;
    start += n;
  }
  return 0;
}

/** Validates a callback and makes room for one more async op (bounded so the CQ never overflows). */
static op_t *start_op(napi_env env, ring_t *r, napi_value callback) {
  napi_valuetype type;
  if (napi_typeof(env, callback, &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "callback must be a function");
    return NULL;
  }
  // At most one synchronous op is in flight besides the async ones: together they fit the CQ.
  if (r->pending + 1 >= r->cq_entries) {
    walrus_throw_errno(env, "io_uring: too many fsyncs in flight", EAGAIN);
    return NULL;
  }
  op_t *op = new_op(env, r, callback);
  if (op == NULL) walrus_rethrow(env);
  return op;
}

/**
 * writev, writevSync and fsync. Writes the buffers (when there are bytes) and, with a callback,
 * queues an fdatasync linked after the last WRITEV, or alone when there is nothing to write.
 * Returns bytesWritten * 2 + (all inline ? 1 : 0).
 */
static napi_value write_and_sync(napi_env env, napi_value *argv, napi_value buffers, napi_value callback) {
  ring_t *r = get_ring(env, argv[0]);
  int fd;
  int64_t position = 0;
  struct iovec local[64], *iov = local;
  uint32_t count = 0;
  uint64_t total = 0, written = 0;
  if (r == NULL || !walrus_get_fd(env, argv[1], &fd) ||
      (buffers != NULL && (!walrus_get_size(env, argv[3], "position", &position) ||
                           !get_iovecs(env, buffers, local, 64, &iov, &count, &total))))
    return NULL;
  op_t *op = NULL;
  if (callback != NULL && (op = start_op(env, r, callback)) == NULL) {
    if (iov != local) free(iov);
    return NULL;
  }
  bool all_inline = true, linked = false;
  int err = 0;
  if (total > 0) {
    err = write_chunks(r, fd, iov, count, position, op, &written, &all_inline, &linked);
  } else if (op != NULL) {
    unsigned index = *r->sq_tail;
    err = queue_fsync(r, fd, op, &index) ? flush(r, false) : -EAGAIN;
    if ((linked = err == 0 || consumed(r, index))) err = 0;  // taken before a failure: it completes
  }
  if (iov != local) free(iov);
  if (err < 0) {
    // This call throws, so the callback is never called: a linked fdatasync the kernel took (it
    // completes with ECANCELED) is reaped and dropped; one it never took is freed now.
    if (op != NULL && linked) op->dropped = true;
    else if (op != NULL) free_op(env, r, op);
    return walrus_throw_errno(env, total > 0 ? "io_uring writev" : "io_uring fsync", -err);
  }
  if (op != NULL && !linked) {
    // A short write before the last WRITEV: the fdatasync was never submitted. The callback still
    // runs once, with ECANCELED, as when the kernel cancels a link after a short write.
    op->res = -ECANCELED;
    push_ready(r, op);
    poke(r);
  }
  napi_value result;
  CHECK(env, napi_create_double(env, (double)written * 2 + (all_inline ? 1 : 0), &result));
  return result;
}

static napi_value js_writev(napi_env env, napi_callback_info info) {
  ARGS(4);
  return write_and_sync(env, argv, argv[2], NULL);
}

static napi_value js_writev_sync(napi_env env, napi_callback_info info) {
  ARGS(5);
  return write_and_sync(env, argv, argv[2], argv[4]);
}

static napi_value js_fsync(napi_env env, napi_callback_info info) {
  ARGS(3);
  write_and_sync(env, argv, NULL, argv[2]);
  return NULL;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  ARGS(1);
  ring_t *r = unwrap_ring(env, argv[0]);
  if (r == NULL || r->torn_down) return NULL;
  // Refuse rather than block the event loop on a disk flush: callbacks and their memory are still due.
  if (r->pending > 0) return walrus_throw_errno(env, "io_uring close: fsync callbacks are still due", EBUSY);
  teardown(r, false);
  return NULL;
}

static napi_value js_pending(napi_env env, napi_callback_info info) {
  ARGS(1);
  ring_t *r = unwrap_ring(env, argv[0]);
  if (r == NULL) return NULL;
  napi_value result;
  CHECK(env, napi_create_uint32(env, r->torn_down ? 0 : r->pending, &result));
  return result;
}

napi_value walrus_uring_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"create", NULL, js_create, NULL, NULL, NULL, napi_enumerable, NULL},
    {"read", NULL, js_read, NULL, NULL, NULL, napi_enumerable, NULL},
    {"writev", NULL, js_writev, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fsync", NULL, js_fsync, NULL, NULL, NULL, napi_enumerable, NULL},
    {"writevSync", NULL, js_writev_sync, NULL, NULL, NULL, napi_enumerable, NULL},
    {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
    {"pending", NULL, js_pending, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return walrus_export_object(env, exports, "uring", props, sizeof props / sizeof props[0]);
}

#else  // no usable <linux/io_uring.h>: the part says why, the rest of the addon still builds

#if defined(__linux__) && defined(__has_include)
#if __has_include(<linux/io_uring.h>)
#define URING_MISSING "built with a <linux/io_uring.h> older than Linux 5.6"
#endif
#endif
#ifndef URING_MISSING
#define URING_MISSING "built without <linux/io_uring.h>"
#endif

napi_value walrus_uring_init(napi_env env, napi_value exports) {
  napi_value object, reason;
  if (napi_create_object(env, &object) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, URING_MISSING, NAPI_AUTO_LENGTH, &reason) != napi_ok) return NULL;
  if (napi_set_named_property(env, object, "unavailable", reason) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "uring", object) != napi_ok) return NULL;
  return exports;
}

#endif
