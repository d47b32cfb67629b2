# The Node-API addon holding the engine's CRC-32 (scripts/build-native.mjs builds it; the engine
# falls back to zlib.crc32 when it is absent). Plain C, no libraries: the PCLMULQDQ code is
# enabled per function with target attributes and picked at run time, so one binary runs on any
# x86-64 (and the table-driven fallback compiles anywhere).
{
  "targets": [
    {
      "target_name": "walrus_native",
      "sources": ["../src/engine/native/crc32.c"],
      "cflags": ["-O2", "-std=gnu11", "-fvisibility=hidden"],
      "configurations": {
        # node's common.gypi adds -O3 to Release builds; -O2 is what this code is tuned for.
        "Release": { "cflags!": ["-O3"] }
      },
      "xcode_settings": { "GCC_OPTIMIZATION_LEVEL": "2" }
    }
  ]
}
