// Advisory whole-file locks for the node directory lock (src/node/node-lock.ts), exported as
// `flock.tryExclusive(fd)`. flock(2) and not a PID file: the kernel drops the lock when the last
// descriptor of the open file closes, which happens when the holder dies, before anyone reaps
// it, so a killed node never leaves a lock behind and a reused PID can never hold one.

#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <sys/file.h>

#include "walrus_common.h"

/** tryExclusive(fd): true when this descriptor now holds the exclusive lock, false when another does. */
static napi_value js_try_exclusive(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "tryExclusive(fd) needs a file descriptor");
    return NULL;
  }
  int fd;
  if (!walrus_get_fd(env, argv[0], &fd)) return NULL;
  int result;
  do {
    result = flock(fd, LOCK_EX | LOCK_NB);
  } while (result != 0 && errno == EINTR);
  if (result != 0 && errno != EWOULDBLOCK) return walrus_throw_errno(env, "flock", errno);
  napi_value held;
  CHECK(env, napi_get_boolean(env, result == 0, &held));
  return held;
}

napi_value walrus_flock_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"tryExclusive", NULL, js_try_exclusive, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return walrus_export_object(env, exports, "flock", props, sizeof props / sizeof props[0]);
}
