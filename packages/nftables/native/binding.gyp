{
  "targets": [
    {
      "target_name": "nftables_addon",
      "sources": ["nftables_addon.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "../../bpf-parser/native"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"],
      "libraries": ["-lnftables"]
    }
  ]
}
