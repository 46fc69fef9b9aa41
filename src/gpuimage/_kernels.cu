// gpuimage's conversion kernel: layout, pitch, dtype, per-channel affine map, channel reversal, batches.
//
// _kernels.py compiles it with NVRTC (through CuPy) once per variant, prepending the #defines that
// specialise it (see _convert.Variant): SRC_T, DST_T (storage types), ACC_T, RINT, LOAD_ACC, STORE_ACC,
// LOAD_INT, STORE_INT, CHANNELS, PIXELS, SRC_KIND, DST_KIND, SRC_VEC, DST_VEC, MODE, ARITHMETIC, REVERSE.
// It is compiled with --fmad=false: x * scale + offset rounds twice, exactly as the NumPy reference does.
//
// One thread converts PIXELS consecutive pixels of one row, all channels. Whole runs move with the widest
// aligned accesses (up to 16 bytes, chosen on the host from the pointers and pitches); a row's last
// partial run, and images whose pixels are neither interleaved nor planar, go one element at a time.

#define KIND_GENERIC 0
#define KIND_INTERLEAVED 1
#define KIND_PLANAR 2
#define MODE_COPY 0
#define MODE_INTEGER 1
#define MODE_FLOAT 2

template <int N> struct Vec;
template <> struct Vec<1> { typedef unsigned char T; };
template <> struct Vec<2> { typedef unsigned short T; };
template <> struct Vec<4> { typedef unsigned int T; };
template <> struct Vec<8> { typedef uint2 T; };
template <> struct Vec<16> { typedef uint4 T; };

// BYTES bytes from global memory into registers, VEC bytes per load (the caller checked alignment).
template <int VEC, int BYTES>
__device__ __forceinline__ void load_run(const unsigned char* __restrict__ from, unsigned char* into) {
  typedef typename Vec<VEC>::T V;
#pragma unroll
  for (int i = 0; i < BYTES / VEC; ++i) reinterpret_cast<V*>(into)[i] = reinterpret_cast<const V*>(from)[i];
}

template <int VEC, int BYTES>
__device__ __forceinline__ void store_run(unsigned char* __restrict__ into, const unsigned char* from) {
  typedef typename Vec<VEC>::T V;
#pragma unroll
  for (int i = 0; i < BYTES / VEC; ++i) reinterpret_cast<V*>(into)[i] = reinterpret_cast<const V*>(from)[i];
}

// float16 and bfloat16 travel as their bits (unsigned short): no cuda_fp16.h needed at run time.
__device__ __forceinline__ float half_to_float(unsigned short bits) {
  float value;
  asm("cvt.f32.f16 %0, %1;" : "=f"(value) : "h"(bits));
  return value;
}
__device__ __forceinline__ unsigned short float_to_half(float value) {
  unsigned short bits;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(value));
  return bits;
}
__device__ __forceinline__ unsigned short double_to_half(double value) {
  unsigned short bits;
  asm("cvt.rn.f16.f64 %0, %1;" : "=h"(bits) : "d"(value));
  return bits;
}
__device__ __forceinline__ float bfloat_to_float(unsigned short bits) {
  return __uint_as_float(((unsigned int)bits) << 16);
}
__device__ __forceinline__ unsigned short float_to_bfloat(float value) {
  unsigned int bits = __float_as_uint(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((bits >> 16) | 0x40u);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round half to even
  return (unsigned short)(bits >> 16);
}

// Saturating conversions to an integer target: round half to even, clamp, NaN -> 0.
template <typename T>
__device__ __forceinline__ T saturate_float(ACC_T value, ACC_T lowest, ACC_T highest, T low, T high) {
  if (!(value == value)) return (T)0;
  const ACC_T rounded = RINT(value);
  if (rounded <= lowest) return low;
  if (rounded >= highest) return high;
  return (T)rounded;
}
template <typename T>
__device__ __forceinline__ T saturate_integer(long long value, long long low, long long high) {
  return (T)(value < low ? low : (value > high ? high : value));
}

extern "C" __global__ void gpuimage_convert(
    const long long* __restrict__ items,  // batch: 6 values per item (see BatchItem); NULL: one image
    unsigned long long src, long long src_row, long long src_pixel, long long src_channel,
    unsigned long long dst, long long dst_row, long long dst_pixel, long long dst_channel,
    long long dst_item,  // batch: bytes between two items' destinations
    int height, int width, int out_height, int out_width,
    ACC_T scale0, ACC_T scale1, ACC_T scale2, ACC_T scale3,
    ACC_T offset0, ACC_T offset1, ACC_T offset2, ACC_T offset3, ACC_T pad) {
  // x: runs of PIXELS pixels along a row; y: rows (a grid-stride loop past 65535 blocks); z: items.
  const int x0 = (blockIdx.x * blockDim.x + threadIdx.x) * PIXELS;
  if (x0 >= out_width) return;
  if (items != 0) {
    const long long* item = items + 6 * (long long)blockIdx.z;
    src = (unsigned long long)item[0];
    src_row = item[1];
    src_pixel = item[2];
    src_channel = item[3];
    height = (int)item[4];
    width = (int)item[5];
    dst += (unsigned long long)(dst_item * blockIdx.z);
  }
  for (int row = blockIdx.y * blockDim.y + threadIdx.y; row < out_height; row += gridDim.y * blockDim.y) {
    const int count = min(PIXELS, out_width - x0);  // pixels this thread writes
    const int valid = row < height ? max(0, min(count, width - x0)) : 0;  // of which read from the source
    const unsigned char* in_row = (const unsigned char*)src + row * src_row + x0 * src_pixel;
    unsigned char* out_row = (unsigned char*)dst + row * dst_row + x0 * dst_pixel;

    __align__(16) SRC_T in[PIXELS * CHANNELS];  // pixel-major: in[p * CHANNELS + c]
    if (valid == PIXELS && SRC_KIND == KIND_INTERLEAVED) {
      load_run<SRC_VEC, PIXELS * CHANNELS * sizeof(SRC_T)>(in_row, (unsigned char*)in);
    } else if (valid == PIXELS && SRC_KIND == KIND_PLANAR) {
#pragma unroll
      for (int c = 0; c < CHANNELS; ++c) {
        __align__(16) SRC_T plane[PIXELS];
        load_run<SRC_VEC, PIXELS * sizeof(SRC_T)>(in_row + c * src_channel, (unsigned char*)plane);
#pragma unroll
        for (int p = 0; p < PIXELS; ++p) in[p * CHANNELS + c] = plane[p];
      }
    } else {
#pragma unroll
      for (int p = 0; p < PIXELS; ++p)
#pragma unroll
        for (int c = 0; c < CHANNELS; ++c)
          in[p * CHANNELS + c] =
              p < valid ? *(const SRC_T*)(in_row + p * src_pixel + c * src_channel) : (SRC_T)0;
    }

    const ACC_T scale[4] = {scale0, scale1, scale2, scale3};
    const ACC_T offset[4] = {offset0, offset1, offset2, offset3};
    const DST_T padding = STORE_ACC(pad);
    __align__(16) DST_T out[PIXELS * CHANNELS];
#pragma unroll
    for (int p = 0; p < PIXELS; ++p) {
#pragma unroll
      for (int c = 0; c < CHANNELS; ++c) {
        const SRC_T value = in[p * CHANNELS + (REVERSE ? CHANNELS - 1 - c : c)];
        DST_T result;
#if MODE == MODE_COPY
        result = value;
#elif MODE == MODE_INTEGER
        result = STORE_INT(LOAD_INT(value));
#else
        ACC_T wide = LOAD_ACC(value);
#if ARITHMETIC
        // beyond 4 channels every channel shares one map (checked on the host)
        wide = wide * scale[CHANNELS <= 4 ? c : 0] + offset[CHANNELS <= 4 ? c : 0];
#endif
        result = STORE_ACC(wide);
#endif
        out[p * CHANNELS + c] = p < valid ? result : padding;
      }
    }

    if (count == PIXELS && DST_KIND == KIND_INTERLEAVED) {
      store_run<DST_VEC, PIXELS * CHANNELS * sizeof(DST_T)>(out_row, (const unsigned char*)out);
    } else if (count == PIXELS && DST_KIND == KIND_PLANAR) {
#pragma unroll
      for (int c = 0; c < CHANNELS; ++c) {
        __align__(16) DST_T plane[PIXELS];
#pragma unroll
        for (int p = 0; p < PIXELS; ++p) plane[p] = out[p * CHANNELS + c];
        store_run<DST_VEC, PIXELS * sizeof(DST_T)>(out_row + c * dst_channel, (const unsigned char*)plane);
      }
    } else {
#pragma unroll
      for (int p = 0; p < PIXELS; ++p)
#pragma unroll
        for (int c = 0; c < CHANNELS; ++c)
          if (p < count) *(DST_T*)(out_row + p * dst_pixel + c * dst_channel) = out[p * CHANNELS + c];
    }
  }
}
