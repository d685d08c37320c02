{
  "targets": [
    {
      "target_name": "usernet_native",
      "sources": ["src/native/usernet_native.c", "src/native/usernet_dgram.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    }
  ]
}
