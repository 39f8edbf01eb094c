{
  "targets": [
    {
      "target_name": "dnsplane_bpf",
      "sources": [
        "native/addon.cc",
        "native/common.cc",
        "native/object.cc",
        "native/fd_ops.cc",
        "native/map_ops.cc",
        "native/prog_ops.cc",
        "native/ringbuf.cc",
        "native/tc_ops.cc",
        "native/system_ops.cc",
        "native/link_ops.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "libraries": ["-lbpf", "-lelf", "-lz"]
    }
  ]
}
