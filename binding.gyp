{
  "target_defaults": {
    "cflags!": ["-fno-exceptions", "-O2"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++14", "-std=gnu++17", "-O2"],
    "cflags_cc": ["-std=c++17", "-O3", "-fopenmp-simd", "-fno-trapping-math", "-fPIC", "-fvisibility=hidden"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
    "conditions": [
      ["target_arch=='x64'", {"defines": ["AE_HAVE_AVX2", "AE_HAVE_AVX512"]}]
    ]
  },
  "targets": [
    {
      "target_name": "advantage_engine",
      "sources": [
        "<!@(node -p \"const s=require('./native/sources.json'); s.core.concat(s.addon).join(' ')\")"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "conditions": [
        ["target_arch=='x64'", {"dependencies": ["ae_avx2", "ae_avx512"]}]
      ]
    }
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "ae_avx2",
          "type": "static_library",
          "sources": ["<!@(node -p \"require('./native/sources.json').avx2.join(' ')\")"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c"]
        },
        {
          "target_name": "ae_avx512",
          "type": "static_library",
          "sources": ["<!@(node -p \"require('./native/sources.json').avx512.join(' ')\")"],
          "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c", "-Wno-maybe-uninitialized", "-Wno-uninitialized"]
        }
      ]
    }]
  ]
}
