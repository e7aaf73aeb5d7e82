// Version of the kernel library and of the weight layout it reads (part of the file format:
// bump kLayoutVersion when the packed layout changes, and the exporter with it).
#pragma once
#define EDGECONV_KERNELS_VERSION "1.0.0"
#define EDGECONV_OP_DOMAIN "edgeconv"
#define EDGECONV_OP_NAME "TVConv"
#define EDGECONV_OP_VERSION 1
#define EDGECONV_LAYOUT "c_h_kk_w8"
// The NHWC kernel's packed weight layout (LiteRT delegate, composite edgeconv.tvconv).
#define EDGECONV_NHWC_LAYOUT "h_w_kk_c"
#define EDGECONV_NHWC_KERNEL_VERSION 1
