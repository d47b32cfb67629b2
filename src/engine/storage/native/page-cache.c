// Page-cache hints for the fd and io_uring storage backends (src/engine/storage/page-cache.ts),
// as the `pageCache` object of the addon:
//
//   willNeed(fd, offset, length) -> Promise, settled after posix_fadvise(POSIX_FADV_WILLNEED)
//                                   of the range has run on a libuv worker thread, in steps of
//                                   1 MiB (one call brings in at most the device's read-ahead
//                                   size). Rejected with an Error whose `code` is the errno name.
//
// The writer asks for the part of a data file just past what it has written: where that part is
// a hole the kernel fills the page cache with zeroed, clean pages there and then, on the worker
// thread, so the writes that follow copy into pages that exist instead of each allocating one.
// Nothing is copied to user space. A hint only: the file's contents never change.

#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include "walrus_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>

#define WILLNEED_STEP ((int64_t)1 << 20)

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int64_t offset;
  int64_t length;
  int error;
} willneed_job_t;

static void willneed_execute(napi_env env, void *data) {
  (void)env;
  willneed_job_t *job = data;
  for (int64_t done = 0; done < job->length; done += WILLNEED_STEP) {
    int64_t step = job->length - done < WILLNEED_STEP ? job->length - done : WILLNEED_STEP;
    // posix_fadvise returns the error number itself and does not set errno.
    int result = posix_fadvise(job->fd, (off_t)(job->offset + done), (off_t)step, POSIX_FADV_WILLNEED);
    if (result != 0) {
      job->error = result;
      return;
    }
  }
}

static void willneed_complete(napi_env env, napi_status status, void *data) {
  willneed_job_t *job = data;
  if (status != napi_ok && job->error == 0) job->error = ECANCELED;
  if (job->error == 0) {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, job->deferred, undefined);
  } else {
    napi_value error = walrus_errno_error(env, "posix_fadvise", job->error);
    if (error == NULL) napi_get_undefined(env, &error);
    napi_reject_deferred(env, job->deferred, error);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value js_will_need(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "willNeed(fd, offset, length) needs three arguments");
    return NULL;
  }
  int fd;
  int64_t offset, length;
  if (!walrus_get_fd(env, argv[0], &fd) || !walrus_get_size(env, argv[1], "offset", &offset) ||
      !walrus_get_size(env, argv[2], "length", &length)) {
    return NULL;
  }
  willneed_job_t *job = calloc(1, sizeof *job);
  if (job == NULL) return walrus_throw_errno(env, "posix_fadvise", ENOMEM);
  job->fd = fd;
  job->offset = offset;
  job->length = length;
  napi_value promise, name;
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "walrus:willNeed", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, willneed_execute, willneed_complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    free(job);
    return walrus_rethrow(env);
  }
  return promise;
}

napi_value walrus_page_cache_init(napi_env env, napi_value exports) {
  napi_value object;
  CHECK(env, napi_create_object(env, &object));
  napi_property_descriptor props[] = {
    {"willNeed", NULL, js_will_need, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(env, napi_define_properties(env, object, sizeof props / sizeof props[0], props));
  CHECK(env, napi_set_named_property(env, exports, "pageCache", object));
  return exports;
}
