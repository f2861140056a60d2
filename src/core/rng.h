/* rng.h - splitmix64: the one small generator and hash forja's deterministic randomness
 * uses (weight initialisation, LoRA init, dropout masks). State is always the caller's:
 * there is no global generator. */
#ifndef FJ_CORE_RNG_H
#define FJ_CORE_RNG_H

#include <stdint.h>

#define FJ_RNG_GOLDEN 0x9e3779b97f4a7c15ull

/* splitmix64's output function: a bijective mix of the 64 bits. */
static inline uint64_t fj_mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A hash of x (one splitmix64 step from state x, without keeping the state). */
static inline uint64_t fj_splitmix64(uint64_t x)
{
    return fj_mix64(x + FJ_RNG_GOLDEN);
}

/* The next number of the sequence whose state is *state. */
static inline uint64_t fj_rng_next(uint64_t *state)
{
    *state += FJ_RNG_GOLDEN;
    return fj_mix64(*state);
}

/* Uniform in [0, 1) with 53 bits. */
static inline double fj_rng_uniform(uint64_t *state)
{
    return (double)(fj_rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
