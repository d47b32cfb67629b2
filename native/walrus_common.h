// Helpers shared by the parts of Walrus's addon that make system calls: Node-API failures
// rethrown as errors, errno turned into an Error whose `code` is the errno name (and `errno` its
// negative value, as Node's own fs errors), argument checks (a file descriptor, a file position
// past 4 GiB included, a call's fd, offset and length), each part's exported object, and the
// settling of an async call's promise. All static inline: each part gets its own copy and no
// symbol crosses between them.

#ifndef WALRUS_COMMON_H
#define WALRUS_COMMON_H

#include <node_api.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define CHECK(env, call)                                                                                                 \
  do {                                                                                                                   \
    if ((call) != napi_ok) return walrus_rethrow(env);                                                                   \
  } while (0)

/** Throws the last Node-API error unless an exception is already pending; returns NULL. */
static inline napi_value walrus_rethrow(napi_env env) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) {
    const napi_extended_error_info *info = NULL;
    napi_get_last_error_info(env, &info);
    napi_throw_error(env, "ERR_NAPI", info && info->error_message ? info->error_message : "Node-API call failed");
  }
  return NULL;
}

#define WALRUS_ERRNO_NAME(e)                                                                                             \
  case e: return #e;
static inline const char *walrus_errno_name(int error) {
  switch (error) {
    WALRUS_ERRNO_NAME(EACCES) WALRUS_ERRNO_NAME(EAGAIN) WALRUS_ERRNO_NAME(EBADF) WALRUS_ERRNO_NAME(EBUSY)
    WALRUS_ERRNO_NAME(ECANCELED) WALRUS_ERRNO_NAME(EFAULT) WALRUS_ERRNO_NAME(EFBIG) WALRUS_ERRNO_NAME(EINTR)
    WALRUS_ERRNO_NAME(EINVAL) WALRUS_ERRNO_NAME(EIO) WALRUS_ERRNO_NAME(EISDIR) WALRUS_ERRNO_NAME(EMFILE)
    WALRUS_ERRNO_NAME(ENFILE) WALRUS_ERRNO_NAME(ENODEV) WALRUS_ERRNO_NAME(ENOMEM) WALRUS_ERRNO_NAME(ENOSPC)
    WALRUS_ERRNO_NAME(ENOSYS) WALRUS_ERRNO_NAME(EOPNOTSUPP) WALRUS_ERRNO_NAME(EOVERFLOW) WALRUS_ERRNO_NAME(EPERM)
    WALRUS_ERRNO_NAME(EROFS) WALRUS_ERRNO_NAME(ESPIPE)
    default: return "EUNKNOWN";
  }
}
#undef WALRUS_ERRNO_NAME

/** An Error for `error` from the call `what`: message "what: strerror (ENAME)", code ENAME. NULL if it cannot be made. */
static inline napi_value walrus_errno_error(napi_env env, const char *what, int error) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s (%s)", what, strerror(error), walrus_errno_name(error));
  napi_value code, text, result, errno_value;
  if (napi_create_string_utf8(env, walrus_errno_name(error), NAPI_AUTO_LENGTH, &code) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text) != napi_ok) return NULL;
  if (napi_create_error(env, code, text, &result) != napi_ok) return NULL;
  if (napi_create_int32(env, -error, &errno_value) == napi_ok) napi_set_named_property(env, result, "errno", errno_value);
  return result;
}

static inline napi_value walrus_throw_errno(napi_env env, const char *what, int error) {
  napi_value value = walrus_errno_error(env, what, error);
  if (value != NULL) napi_throw(env, value);
  return NULL;
}

static inline bool walrus_get_fd(napi_env env, napi_value value, int *out) {
  int32_t fd;
  if (napi_get_value_int32(env, value, &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "fd must be a file descriptor");
    return false;
  }
  *out = fd;
  return true;
}

/** Sets exports[name] to a new object holding `props`; returns exports, or NULL with an exception pending. */
static inline napi_value walrus_export_object(napi_env env, napi_value exports, const char *name,
                                              const napi_property_descriptor *props, size_t count) {
  napi_value object;
  CHECK(env, napi_create_object(env, &object));
  CHECK(env, napi_define_properties(env, object, count, props));
  CHECK(env, napi_set_named_property(env, exports, name, object));
  return exports;
}

/** Settles a promise of an async call: resolved (undefined) when `error` is 0, else rejected with the errno Error of `what`. */
static inline void walrus_settle(napi_env env, napi_deferred deferred, const char *what, int error) {
  napi_value value;
  if (error == 0) {
    napi_get_undefined(env, &value);
    napi_resolve_deferred(env, deferred, value);
    return;
  }
  value = walrus_errno_error(env, what, error);
  if (value == NULL) napi_get_undefined(env, &value);
  napi_reject_deferred(env, deferred, value);
}

/** A non-negative integer argument below 2^53 (file positions past 4 GiB included). */
static inline bool walrus_get_size(napi_env env, napi_value value, const char *name, int64_t *out) {
  double number;
  if (napi_get_value_double(env, value, &number) != napi_ok || !(number >= 0 && number <= 9007199254740991.0) ||
      number != (double)(int64_t)number) {
    char message[128];
    snprintf(message, sizeof message, "%s must be a non-negative integer", name);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
    return false;
  }
  *out = (int64_t)number;
  return true;
}

/** The arguments (fd, offset, length) of a call on a file range; false with an exception thrown when bad. */
static inline bool walrus_get_fd_range(napi_env env, napi_callback_info info, int *fd, int64_t *offset,
                                       int64_t *length) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    walrus_rethrow(env);
    return false;
  }
  if (argc < 3) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "expected 3 arguments: fd, offset, length");
    return false;
  }
  return walrus_get_fd(env, argv[0], fd) && walrus_get_size(env, argv[1], "offset", offset) &&
         walrus_get_size(env, argv[2], "length", length);
}

#endif
