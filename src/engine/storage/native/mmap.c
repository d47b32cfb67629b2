// The system calls of the mmap storage backend (src/engine/storage/mmap.ts), as the
// `mmap` object of the addon:
//
//   map(fd, offset, length)     -> ArrayBuffer over a MAP_SHARED read/write mapping of the file
//                                  range (offset page-aligned); JS copies into and out of it.
//   unmap(arrayBuffer)          -> detaches the ArrayBuffer (every view of it becomes empty) and
//                                  unmaps the range, so no JS object can reach unmapped memory.
//   msync(arrayBuffer, offset, length) -> Promise, settled after msync(MS_SYNC) of that part of
//                                  the mapping has run on a libuv worker thread.
//   fallocate(fd, offset, length) -> reserves disk blocks (and extends the size) so that running
//                                  out of space is an error here, not a SIGBUS on a later store.
//   pageSize                    -> the mapping granularity.
//
// A mapping that JS drops without unmap() is unmapped when the ArrayBuffer is collected.
// Errors are thrown (or rejected) as Error objects whose `code` is the errno name.

#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include "walrus_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
  void *addr;
  size_t length;
  bool unmapped;
} mapping_t;

static void finalize_mapping(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  mapping_t *mapping = hint;
  if (!mapping->unmapped) munmap(mapping->addr, mapping->length);
  free(mapping);
}

/**
 * The mapping behind the first argument, an ArrayBuffer made by map(), of a call that needs
 * `needed` arguments; NULL with a TypeError thrown when they are missing or it is anything else.
 */
static mapping_t *get_mapping(napi_env env, size_t argc, size_t needed, napi_value value, const char *what) {
  mapping_t *mapping = NULL;
  if (argc < needed || napi_unwrap(env, value, (void **)&mapping) != napi_ok || mapping == NULL) {
    char message[96];
    snprintf(message, sizeof message, "%s needs an ArrayBuffer made by map()", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
    return NULL;
  }
  return mapping;
}

static napi_value js_map(napi_env env, napi_callback_info info) {
  int fd;
  int64_t offset, length;
  if (!walrus_get_fd_range(env, info, &fd, &offset, &length)) return NULL;
  long page = sysconf(_SC_PAGESIZE);
  if (length == 0 || offset % page != 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "map needs a length above 0 and a page-aligned offset");
    return NULL;
  }
  void *addr = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
  if (addr == MAP_FAILED) return walrus_throw_errno(env, "mmap", errno);
  mapping_t *mapping = malloc(sizeof *mapping);
  if (mapping == NULL) {
    munmap(addr, (size_t)length);
    return walrus_throw_errno(env, "mmap", ENOMEM);
  }
  *mapping = (mapping_t){addr, (size_t)length, false};
  napi_value buffer;
  if (napi_create_external_arraybuffer(env, addr, (size_t)length, finalize_mapping, mapping, &buffer) != napi_ok) {
    munmap(addr, (size_t)length);
    free(mapping);
    return walrus_rethrow(env);
  }
  // The wrap finds the mapping again in unmap(); it owns nothing (the ArrayBuffer's finalizer frees it).
  if (napi_wrap(env, buffer, mapping, NULL, NULL, NULL) != napi_ok) return walrus_rethrow(env);
  return buffer;
}

static napi_value js_unmap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  mapping_t *mapping = get_mapping(env, argc, 1, argv[0], "unmap");
  if (mapping == NULL) return NULL;
  if (mapping->unmapped) return NULL;
  // Detach first: from here no view of the buffer can read or write the range.
  CHECK(env, napi_detach_arraybuffer(env, argv[0]));
  mapping->unmapped = true;
  if (munmap(mapping->addr, mapping->length) != 0) return walrus_throw_errno(env, "munmap", errno);
  return NULL;
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref keep;  // the ArrayBuffer, so it cannot be collected (and unmapped) during the call
  mapping_t *mapping;
  size_t offset;
  size_t length;
  int error;
} msync_job_t;

static void msync_execute(napi_env env, void *data) {
  (void)env;
  msync_job_t *job = data;
  // unmap() during a sync is the caller's bug; it then gets ENOMEM here rather than a crash.
  if (job->mapping->unmapped) {
    job->error = ENOMEM;
    return;
  }
  job->error = msync((char *)job->mapping->addr + job->offset, job->length, MS_SYNC) == 0 ? 0 : errno;
}

static void msync_complete(napi_env env, napi_status status, void *data) {
  msync_job_t *job = data;
  if (status != napi_ok && job->error == 0) job->error = EINTR;
  walrus_settle(env, job->deferred, "msync", job->error);
  napi_delete_reference(env, job->keep);
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value js_msync(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  mapping_t *mapping = get_mapping(env, argc, 3, argv[0], "msync");
  if (mapping == NULL) return NULL;
  int64_t offset, length;
  if (!walrus_get_size(env, argv[1], "offset", &offset) || !walrus_get_size(env, argv[2], "length", &length)) return NULL;
  if ((uint64_t)offset > mapping->length || (uint64_t)length > mapping->length - (uint64_t)offset) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "msync range is outside the mapping");
    return NULL;
  }
  if (mapping->unmapped) {
    napi_throw_error(env, "ERR_INVALID_STATE", "msync of a mapping that was unmapped");
    return NULL;
  }
  // msync wants a page-aligned start: round the range out to whole pages.
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t start = (size_t)offset - (size_t)offset % page;
  size_t end = (size_t)(offset + length);
  msync_job_t *job = calloc(1, sizeof *job);
  if (job == NULL) return walrus_throw_errno(env, "msync", ENOMEM);
  job->mapping = mapping;
  job->offset = start;
  job->length = end - start;
  napi_value promise, name;
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_reference(env, argv[0], 1, &job->keep) != napi_ok ||
      napi_create_string_utf8(env, "walrus:msync", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, msync_execute, msync_complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    free(job);  // a half-made job: the leaked reference keeps one ArrayBuffer alive, nothing worse
    return walrus_rethrow(env);
  }
  return promise;
}

static napi_value js_fallocate(napi_env env, napi_callback_info info) {
  int fd;
  int64_t offset, length;
  if (!walrus_get_fd_range(env, info, &fd, &offset, &length)) return NULL;
  if (length == 0) return NULL;
  int result;
  do {
    result = fallocate(fd, 0, (off_t)offset, (off_t)length);
  } while (result != 0 && errno == EINTR);
  if (result != 0) return walrus_throw_errno(env, "fallocate", errno);
  return NULL;
}

napi_value walrus_mmap_init(napi_env env, napi_value exports) {
  napi_value page_size;
  CHECK(env, napi_create_int32(env, (int32_t)sysconf(_SC_PAGESIZE), &page_size));
  napi_property_descriptor props[] = {
    {"map", NULL, js_map, NULL, NULL, NULL, napi_enumerable, NULL},
    {"unmap", NULL, js_unmap, NULL, NULL, NULL, napi_enumerable, NULL},
    {"msync", NULL, js_msync, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fallocate", NULL, js_fallocate, NULL, NULL, NULL, napi_enumerable, NULL},
    {"pageSize", NULL, NULL, NULL, NULL, page_size, napi_enumerable, NULL},
  };
  return walrus_export_object(env, exports, "mmap", props, sizeof props / sizeof props[0]);
}
