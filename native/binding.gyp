# The Node-API addon of Walrus (scripts/build-native.mjs builds it at install; everything that
# uses it falls back when it is absent): the engine's CRC-32, the system calls of the mmap
# and io_uring storage backends, flock for the node directory lock, and the writer's page-cache
# hints. Plain C, no libraries: io_uring is driven with its raw system calls, and the PCLMULQDQ
# code is enabled per function with target attributes and picked at run time, so one binary
# runs on any x86-64 (and the table-driven fallback compiles anywhere).
{
  "targets": [
    {
      "target_name": "walrus_native",
      "sources": [
        "addon.c",
        "../src/engine/native/crc32.c",
        "../src/engine/native/flock.c",
        "../src/engine/storage/native/mmap.c",
        "../src/engine/storage/native/page-cache.c",
        "../src/engine/storage/native/uring.c"
      ],
      "include_dirs": ["."],
      "cflags": ["-O2", "-std=gnu11", "-fvisibility=hidden"],
      "configurations": {
        # node's common.gypi adds -O3 to Release builds; -O2 is what this code is tuned for.
        "Release": { "cflags!": ["-O3"] }
      },
      "xcode_settings": { "GCC_OPTIMIZATION_LEVEL": "2" }
    }
  ]
}
