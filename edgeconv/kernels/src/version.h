// Version of the kernel library and of the weight layout it reads (part of the file format:
// bump EDGECONV_OP_VERSION when the packed layout changes, and the exporter with it).
#pragma once
#define EDGECONV_KERNELS_VERSION "1.1.0"
#define EDGECONV_OP_DOMAIN "edgeconv"
#define EDGECONV_OP_NAME "TVConv"
// The `edgeconv` opset version is the packed-layout version: 1 = every node "c_h_kk_w8";
// 2 = a node's `layout` attribute names "c_h_kk_w8" or (stride 1) "c_kk_hw". This library
// reads both; a library that reads only 1 leaves a version-2 file to its function bodies.
#define EDGECONV_OP_VERSION 2
#define EDGECONV_OP_VERSION_MIN 1
#define EDGECONV_LAYOUT "c_h_kk_w8"
#define EDGECONV_FLAT_LAYOUT "c_kk_hw"
// The NHWC kernel's packed weight layout (LiteRT delegate, composite edgeconv.tvconv).
#define EDGECONV_NHWC_LAYOUT "h_w_kk_c"
#define EDGECONV_NHWC_KERNEL_VERSION 1
