/* simd.h — SIMD_CLONES: a loop-heavy function compiled twice, for any
 * x86-64 and for AVX2 (eight lanes per instruction where plain x86-64
 * takes a few per four, a popcount instruction), the one the CPU runs
 * chosen at load time (an ifunc). Elsewhere (another architecture, a
 * compiler without target_clones, or clang, whose callers in other files
 * would need the attribute on the declaration too to find the ifunc) the
 * function is compiled once. Header-only, no state.
 */
#ifndef FLAMEDB_COMMON_SIMD_H
#define FLAMEDB_COMMON_SIMD_H

#if defined(__x86_64__) && defined(__has_attribute) && !defined(__clang__)
#if __has_attribute(target_clones)
#define SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef SIMD_CLONES
#define SIMD_CLONES
#endif

#endif
