// The one Node-API addon of Walrus: each part adds its functions to the exports. The CRC-32
// functions sit at the top level (src/engine/native/crc32.c); the mmap backend's are under
// `mmap` (src/engine/storage/native/mmap.c) and the io_uring backend's under `uring`
// (src/engine/storage/native/uring.c); `flock` (src/engine/native/flock.c) locks a node's
// directory, and `pageCache` (src/engine/storage/native/page-cache.c) holds the writer's
// page-cache hints. NAPI_MODULE_INIT makes the addon context-aware, so it loads in worker
// threads too; no part keeps state shared between environments.

#define NAPI_VERSION 8
#include <node_api.h>

napi_value walrus_crc32_init(napi_env env, napi_value exports);
napi_value walrus_mmap_init(napi_env env, napi_value exports);
napi_value walrus_uring_init(napi_env env, napi_value exports);
napi_value walrus_flock_init(napi_env env, napi_value exports);
napi_value walrus_page_cache_init(napi_env env, napi_value exports);

NAPI_MODULE_INIT() {
  if (walrus_crc32_init(env, exports) == NULL) return NULL;
  if (walrus_mmap_init(env, exports) == NULL) return NULL;
  if (walrus_uring_init(env, exports) == NULL) return NULL;
  if (walrus_flock_init(env, exports) == NULL) return NULL;
  if (walrus_page_cache_init(env, exports) == NULL) return NULL;
  return exports;
}
