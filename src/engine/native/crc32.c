// CRC-32 for the write-ahead log as a Node-API addon (built by native/binding.gyp).
//
// The CRC is zlib's: reflected polynomial 0xEDB88320, initial value and final XOR 0xFFFFFFFF,
// and `initial` continues an earlier CRC exactly as zlib.crc32(data, initial) does. Inputs of
// 16 bytes or more are folded with carry-less multiplication (PCLMULQDQ), 4 x 128 bits at a time
// while they last, a partial last block merged in with byte shuffles; the folded 16 bytes are
// finished with a slicing-by-8 table, which is also the whole algorithm for shorter inputs and on
// CPUs without PCLMULQDQ (checked at run time, so one binary runs on any x86-64).
//
// Setting WALRUS_NATIVE_PORTABLE=1 before the module loads forces the table path, so tests can
// compare that path with zlib too.

#define NAPI_VERSION 8
#include <node_api.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define WALRUS_X86 1
#include <immintrin.h>
#define TARGET_PCLMUL __attribute__((target("pclmul,sse4.1")))
#endif

#define CRC_POLY 0xEDB88320u
// The record layout, as far as sealing and verifying need it. src/engine/format.ts owns the
// layout; these copies are exported as `recordLayout` (below) and a unit test checks that they
// equal format.ts's RECORD_LAYOUT, so the two cannot drift apart unnoticed.
#define RECORD_MAGIC 0x43455257u /* "WREC" as a little-endian u32 */
#define RECORD_HEADER_BYTES 32u
#define RECORD_CRC_FROM 8u       /* the CRC covers header bytes [8, 32) and the payload */
#define RECORD_CRC_AT 4u
#define RECORD_LENGTH_AT 16u
#define MAX_SAFE_INTEGER 9007199254740991.0

// ---------------------------------------------------------------------------------------------
// Tables and folding constants, computed once when the library is loaded (dlopen runs
// constructors once per process, before any thread can call in, so workers share them safely).

// crc_table[k][b]: the CRC register after byte b followed by k zero bytes, from a zero register.
static uint32_t crc_table[8][256];

#ifdef WALRUS_X86
// In the reflected bit order used throughout, bit i of a 32-bit value stands for x^(31-i).
// Returns x^n mod P in that order (multiplying by x is a right shift, reduced by the polynomial).
static uint32_t xpow_mod(unsigned n) {
  uint32_t r = 0x80000000u; // x^0
  while (n--) r = (r >> 1) ^ (CRC_POLY & (0u - (r & 1u)));
  return r;
}

// A 128-bit block loaded little-endian holds the polynomial with bit k standing for x^(127-k)
// (relative to the end of the block): its low qword H is the high-degree half, its high qword L
// the low-degree half. Moving the block D bits further along the message means computing
// H*x^(D+64) + L*x^D mod P. A 64x64 carry-less product of two reflected values comes out one
// bit short (bit k stands for x^(126-k)), so the constants carry one power of x less:
// fold_k[j] = { x^(D+63) mod P, x^(D-1) mod P } for D = 128*(j+1), each placed in the top 32
// bits of its qword (bit 63-m stands for x^m) so that the products fit in 128 bits.
static uint64_t fold_k[4][2];
#endif

__attribute__((constructor)) static void crc_init(void) {
  for (uint32_t b = 0; b < 256; b++) {
    uint32_t c = b;
    for (int i = 0; i < 8; i++) c = (c >> 1) ^ (CRC_POLY & (0u - (c & 1u)));
    crc_table[0][b] = c;
  }
  for (int k = 1; k < 8; k++)
    for (int b = 0; b < 256; b++) crc_table[k][b] = (crc_table[k - 1][b] >> 8) ^ crc_table[0][crc_table[k - 1][b] & 0xff];
#ifdef WALRUS_X86
  for (unsigned j = 0; j < 4; j++) {
    unsigned d = 128 * (j + 1);
    fold_k[j][0] = (uint64_t)xpow_mod(d + 63) << 32;
    fold_k[j][1] = (uint64_t)xpow_mod(d - 1) << 32;
  }
#endif
}

static inline uint32_t load_le32(const uint8_t *p) {
  // Byte by byte so it is right on any host; compilers turn it into one load on x86.
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void store_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

// ---------------------------------------------------------------------------------------------
// The CRC proper. `crc` below is the raw register (the complement of the CRC value).

static uint32_t crc_table_update(uint32_t crc, const uint8_t *p, size_t n) {
  while (n >= 8) {
    uint32_t a = crc ^ load_le32(p), b = load_le32(p + 4);
    crc = crc_table[7][a & 0xff] ^ crc_table[6][(a >> 8) & 0xff] ^ crc_table[5][(a >> 16) & 0xff] ^ crc_table[4][a >> 24] ^
          crc_table[3][b & 0xff] ^ crc_table[2][(b >> 8) & 0xff] ^ crc_table[1][(b >> 16) & 0xff] ^ crc_table[0][b >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc;
}

#ifdef WALRUS_X86
static int cpu_has_pclmul(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
}

// x*x^D + next, with k holding fold_k for D.
TARGET_PCLMUL static inline __m128i fold(__m128i x, __m128i k, __m128i next) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), next);
}

TARGET_PCLMUL static inline __m128i fold_k_reg(int j) {
  return _mm_set_epi64x((long long)fold_k[j][1], (long long)fold_k[j][0]);
}

// pshufb masks for variable byte shifts: 16 bytes from shift_masks + 16 - k shift a register
// left by k bytes (towards later message bytes), from shift_masks + 16 + k right by k bytes.
// 0x80 entries produce zero bytes; their top bit also drives _mm_blendv_epi8 below.
static const uint8_t shift_masks[48] = {
  0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
  0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
};

// Needs n >= 16. The register is XORed into the first 4 bytes, after which the message is
// treated as one CRCed from a zero register (the CRC is linear in both).
TARGET_PCLMUL static uint32_t crc_pclmul_update(uint32_t crc, const uint8_t *p, size_t n) {
  const uint8_t *end = p + n;
  const __m128i k128 = fold_k_reg(0);
  __m128i x = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128((int)crc));
  p += 16;

  if (end - p >= 48) {
    // Four independent chains hide the multiplier's latency. The prefetch, 4 KiB ahead, keeps
    // inputs bigger than the caches streaming (64 MiB went from ~0.12 to ~0.09 ns/byte here);
    // prefetching past the end is harmless.
    __m128i x0 = x, x1 = _mm_loadu_si128((const __m128i *)p);
    __m128i x2 = _mm_loadu_si128((const __m128i *)p + 1), x3 = _mm_loadu_si128((const __m128i *)p + 2);
    const __m128i k512 = fold_k_reg(3);
    for (p += 48; end - p >= 64; p += 64) {
      const __m128i *v = (const __m128i *)p;
      _mm_prefetch((const char *)((uintptr_t)p + 4096), _MM_HINT_T0); // integer math: no out-of-bounds pointer
      x0 = fold(x0, k512, _mm_loadu_si128(v));
      x1 = fold(x1, k512, _mm_loadu_si128(v + 1));
      x2 = fold(x2, k512, _mm_loadu_si128(v + 2));
      x3 = fold(x3, k512, _mm_loadu_si128(v + 3));
    }
    // Fold the four lanes into the last one in parallel.
    x = fold(x0, fold_k_reg(2), _mm_xor_si128(fold(x1, fold_k_reg(1), x3), fold(x2, k128, _mm_setzero_si128())));
  }
  for (; end - p >= 16; p += 16) x = fold(x, k128, _mm_loadu_si128((const __m128i *)p));

  size_t r = (size_t)(end - p);
  if (r) {
    // x followed by r tail bytes is 16 + r bytes: the first r (x shifted towards the end, zeros
    // in front) fold over the last 16, which are x's other bytes followed by the tail, taken from
    // one unaligned load of the input's last 16 bytes (there are at least 16).
    __m128i right = _mm_loadu_si128((const __m128i *)(shift_masks + 16 + r));
    __m128i first = _mm_shuffle_epi8(x, _mm_loadu_si128((const __m128i *)(shift_masks + r)));
    __m128i last = _mm_blendv_epi8(_mm_shuffle_epi8(x, right), _mm_loadu_si128((const __m128i *)(end - 16)), right);
    x = fold(first, k128, last);
  }

  // x is congruent to the whole input; CRC its 16 bytes from a zero register.
  uint8_t bytes[16];
  _mm_storeu_si128((__m128i *)bytes, x);
  return crc_table_update(0, bytes, 16);
}
#endif

static uint32_t crc32_bytes(uint32_t initial, const uint8_t *p, size_t n, int fast) {
  uint32_t crc = ~initial;
#ifdef WALRUS_X86
  if (fast && n >= 16) return ~crc_pclmul_update(crc, p, n);
#else
  (void)fast;
#endif
  return ~crc_table_update(crc, p, n);
}

// ---------------------------------------------------------------------------------------------
// Node-API glue. Each function gets the chosen path (1 = PCLMULQDQ) as its callback data, so
// there is no shared mutable state between module instances (main thread and workers).

#define NAPI_CALL(env, call)                                                                                             \
  do {                                                                                                                   \
    if ((call) != napi_ok) return throw_last_error(env);                                                                 \
  } while (0)

static napi_value throw_last_error(napi_env env) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) {
    const napi_extended_error_info *info = NULL;
    napi_get_last_error_info(env, &info);
    napi_throw_error(env, NULL, info && info->error_message ? info->error_message : "Node-API call failed");
  }
  return NULL;
}

static int path_of(void *data) { return (int)(uintptr_t)data; }

// The bytes of a TypedArray or DataView (any element type, viewed as bytes, like zlib.crc32);
// with `only_u8`, a Uint8Array (Buffer included) only. Throws and returns 0 on anything else.
static int get_bytes(napi_env env, napi_value value, const char *name, int only_u8, uint8_t **data, size_t *len) {
  napi_typedarray_type type;
  size_t count = 0;
  void *ptr = NULL;
  if (napi_get_typedarray_info(env, value, &type, &count, &ptr, NULL, NULL) == napi_ok) {
    size_t size;
    switch (type) {
      case napi_int8_array:
      case napi_uint8_array:
      case napi_uint8_clamped_array: size = 1; break;
      case napi_int16_array:
      case napi_uint16_array: size = 2; break;
      case napi_int32_array:
      case napi_uint32_array:
      case napi_float32_array: size = 4; break;
      case napi_float64_array:
      case napi_bigint64_array:
      case napi_biguint64_array: size = 8; break;
      default: size = 0; break;
    }
    if (size != 0 && (!only_u8 || type == napi_uint8_array)) {
      *data = ptr;
      *len = count * size;
      return 1;
    }
  } else if (!only_u8) {
    bool is_view = false;
    if (napi_is_dataview(env, value, &is_view) == napi_ok && is_view &&
        napi_get_dataview_info(env, value, &count, &ptr, NULL, NULL) == napi_ok) {
      *data = ptr;
      *len = count;
      return 1;
    }
  }
  char msg[160];
  snprintf(msg, sizeof msg, "The \"%s\" argument must be %s", name, only_u8 ? "a Uint8Array or Buffer" : "a TypedArray or DataView");
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return 0;
}

// Checks that a JS number is an integer in [0, max]; throws a RangeError and returns 0 otherwise.
static int check_integer(napi_env env, double v, const char *name, double max) {
  if (v == v && v >= 0 && v <= max && v == (double)(int64_t)v) return 1;
  char msg[160];
  snprintf(msg, sizeof msg, "The value of \"%s\" is out of range. It must be an integer >= 0 && <= %.0f. Received %.17g", name, max, v);
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
  return 0;
}

static void throw_not_number(napi_env env, const char *name) {
  char msg[160];
  snprintf(msg, sizeof msg, "The \"%s\" argument must be of type number", name);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
}

// An integer argument in [0, max]. Throws and returns 0 otherwise.
static int get_integer(napi_env env, napi_value value, const char *name, double max, double *out) {
  if (napi_get_value_double(env, value, out) != napi_ok) {
    throw_not_number(env, name);
    return 0;
  }
  return check_integer(env, *out, name, max);
}

// crc32(data, initial = 0): the CRC-32 of data, continuing from `initial` like zlib.crc32.
// Kept to as few Node-API calls as possible: they are most of the cost of a short input.
static napi_value js_crc32(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result; // missing arguments come back as undefined
  void *path;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, &path));
  uint8_t *data;
  size_t len;
  if (!get_bytes(env, argv[0], "data", 0, &data, &len)) return NULL;
  uint32_t initial = 0;
  if (argc > 1) {
    double v;
    if (napi_get_value_double(env, argv[1], &v) == napi_ok) {
      if (!check_integer(env, v, "initial", 4294967295.0)) return NULL;
      initial = (uint32_t)v;
    } else {
      napi_valuetype type;
      NAPI_CALL(env, napi_typeof(env, argv[1], &type));
      if (type != napi_undefined) {
        throw_not_number(env, "initial");
        return NULL;
      }
    }
  }
  NAPI_CALL(env, napi_create_uint32(env, crc32_bytes(initial, data, len, path_of(path)), &result));
  return result;
}

// Reads (buffer, start, end) for the record functions, checking start <= end <= buffer length.
static int get_range(napi_env env, napi_callback_info info, void **path, uint8_t **data, size_t *start, size_t *end) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, path) != napi_ok) {
    throw_last_error(env);
    return 0;
  }
  if (argc < 3) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "Expected 3 arguments: buffer, start, end");
    return 0;
  }
  size_t len;
  double s, e;
  if (!get_bytes(env, argv[0], "buffer", 1, data, &len)) return 0;
  if (!get_integer(env, argv[1], "start", MAX_SAFE_INTEGER, &s) || !get_integer(env, argv[2], "end", MAX_SAFE_INTEGER, &e)) return 0;
  char msg[200];
  if (s > e) {
    snprintf(msg, sizeof msg, "start (%.0f) is after end (%.0f)", s, e);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return 0;
  }
  if (e > (double)len) {
    snprintf(msg, sizeof msg, "end (%.0f) is past the buffer's length (%zu)", e, len);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return 0;
  }
  *start = (size_t)s;
  *end = (size_t)e;
  return 1;
}

// Bytes a record at `at` spans (header and payload), as a 64-bit sum so it cannot wrap.
static inline uint64_t record_bytes(const uint8_t *data, size_t at) {
  return (uint64_t)RECORD_HEADER_BYTES + load_le32(data + at + RECORD_LENGTH_AT);
}

// sealRecords(buffer, start, end): stores each record's CRC. Every record is checked to lie
// inside [start, end) before any is written, so a bad range changes nothing.
static napi_value js_seal_records(napi_env env, napi_callback_info info) {
  void *path;
  uint8_t *data;
  size_t start, end;
  if (!get_range(env, info, &path, &data, &start, &end)) return NULL;
  for (size_t at = start; at < end;) {
    char msg[200];
    if (end - at < RECORD_HEADER_BYTES) {
      snprintf(msg, sizeof msg, "record at offset %zu runs past end (%zu): only %zu of its 32 header bytes are there", at, end, end - at);
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
      return NULL;
    }
    uint64_t bytes = record_bytes(data, at);
    if (bytes > end - at) {
      snprintf(msg, sizeof msg, "record at offset %zu runs past end (%zu): it spans %llu bytes", at, end, (unsigned long long)bytes);
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
      return NULL;
    }
    at += (size_t)bytes;
  }
  int fast = path_of(path);
  for (size_t at = start; at < end;) {
    size_t bytes = (size_t)record_bytes(data, at);
    store_le32(data + at + RECORD_CRC_AT, crc32_bytes(0, data + at + RECORD_CRC_FROM, bytes - RECORD_CRC_FROM, fast));
    at += bytes;
  }
  return NULL;
}

// verifyRecords(buffer, start, end): the offset just past the last record, from start on, whose
// magic, length and CRC check out (start when none does).
static napi_value js_verify_records(napi_env env, napi_callback_info info) {
  void *path;
  uint8_t *data;
  size_t start, end;
  if (!get_range(env, info, &path, &data, &start, &end)) return NULL;
  int fast = path_of(path);
  size_t at = start;
  while (end - at >= RECORD_HEADER_BYTES && load_le32(data + at) == RECORD_MAGIC) {
    uint64_t bytes = record_bytes(data, at);
    if (bytes > end - at) break;
    uint32_t crc = crc32_bytes(0, data + at + RECORD_CRC_FROM, (size_t)bytes - RECORD_CRC_FROM, fast);
    if (crc != load_le32(data + at + RECORD_CRC_AT)) break;
    at += (size_t)bytes;
  }
  napi_value result;
  NAPI_CALL(env, napi_create_double(env, (double)at, &result));
  return result;
}

// The layout constants above as a frozen object { headerBytes, magic, crcAt, crcFrom, lengthAt }
// (the names of format.ts's RECORD_LAYOUT). NULL with an exception pending on failure.
static napi_value record_layout(napi_env env) {
  static const struct {
    const char *name;
    uint32_t value;
  } fields[] = {
    {"headerBytes", RECORD_HEADER_BYTES}, {"magic", RECORD_MAGIC}, {"crcAt", RECORD_CRC_AT},
    {"crcFrom", RECORD_CRC_FROM},         {"lengthAt", RECORD_LENGTH_AT},
  };
  napi_value layout, value;
  NAPI_CALL(env, napi_create_object(env, &layout));
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    NAPI_CALL(env, napi_create_uint32(env, fields[i].value, &value));
    NAPI_CALL(env, napi_set_named_property(env, layout, fields[i].name, value));
  }
  NAPI_CALL(env, napi_object_freeze(env, layout));
  return layout;
}

// Adds the CRC functions to the addon's exports (native/addon.c calls it once per environment).
napi_value walrus_crc32_init(napi_env env, napi_value exports) {
  int fast = 0;
#ifdef WALRUS_X86
  const char *portable = getenv("WALRUS_NATIVE_PORTABLE");
  fast = cpu_has_pclmul() && !(portable && strcmp(portable, "1") == 0);
#endif
  void *path = (void *)(uintptr_t)fast;
  napi_value has_pclmul;
  NAPI_CALL(env, napi_get_boolean(env, fast, &has_pclmul));
  napi_value layout = record_layout(env);
  if (layout == NULL) return NULL;
  napi_property_descriptor props[] = {
    {"crc32", NULL, js_crc32, NULL, NULL, NULL, napi_enumerable, path},
    {"sealRecords", NULL, js_seal_records, NULL, NULL, NULL, napi_enumerable, path},
    {"verifyRecords", NULL, js_verify_records, NULL, NULL, NULL, napi_enumerable, path},
    {"hasPclmul", NULL, NULL, NULL, NULL, has_pclmul, napi_enumerable, NULL},
    {"recordLayout", NULL, NULL, NULL, NULL, layout, napi_enumerable, NULL},
  };
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}
