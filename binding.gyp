{
  "targets": [
    {
      "target_name": "usernet_native",
      "sources": ["src/native/usernet_native.c", "src/native/usernet_dgram.c", "src/native/usernet_sandbox.c", "src/native/usernet_echo.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    },
    {
      # usernet-slirp4netns's native launcher (src/native/launcher.c): execs the Node binary that
      # built it, so that a runtime's PATH does not decide which Node runs.
      "target_name": "usernet-slirp4netns",
      "type": "executable",
      "sources": ["src/native/launcher.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra"],
      "defines": ["USERNET_NODE=\"<!(node -p process.execPath)\""]
    }
  ]
}
