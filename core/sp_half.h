/* Host conversions between float and the 16-bit storage types, bit-exact
 * with the GPU's cvt.rn (round to nearest even, subnormals, inf, NaN). */
#ifndef SP_HALF_H
#define SP_HALF_H
#include <stdint.h>

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

float sp_f16_to_f32(uint16_t h);
uint16_t sp_f32_to_f16(float f);
float sp_bf16_to_f32(uint16_t b);
uint16_t sp_f32_to_bf16(float f);
#pragma GCC visibility pop
#endif
