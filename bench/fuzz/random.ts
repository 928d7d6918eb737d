/**
 * The fuzzer's only source of chance: a small deterministic PRNG (mulberry32). Every case draws from a generator
 * seeded by (run seed, case index) alone, so any case can be rebuilt from those two numbers, in any order.
 */

/** murmur3's 32-bit finaliser: spreads nearby inputs (seed 1 case 5, seed 1 case 6) over the whole range. */
function mix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export function caseSeed(runSeed: number, index: number): number {
  return mix32(mix32(runSeed >>> 0) ^ Math.imul(index + 1, 0x9e3779b9));
}

export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A uniform 32-bit unsigned integer. */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** 0 <= n < bound (bound >= 1). */
  below(bound: number): number {
    return Math.floor((this.next() / 2 ** 32) * bound);
  }

  /** lo <= n <= hi. */
  between(lo: number, hi: number): number {
    return lo + this.below(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.next() / 2 ** 32 < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list');
    return items[this.below(items.length)]!;
  }

  /** One of `entries` with probability proportional to its weight. */
  weighted<T>(entries: readonly (readonly [T, number])[]): T {
    const total = entries.reduce((sum, [, w]) => sum + w, 0);
    let r = (this.next() / 2 ** 32) * total;
    for (const [item, w] of entries) {
      if (r < w) return item;
      r -= w;
    }
    return entries[entries.length - 1]![0];
  }

  bytes(length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = this.next() & 0xff;
    return out;
  }

  /**
   * An offset into `length` bytes, biased towards the start where the headers live: half the draws fall in the
   * first 256 bytes (or the whole buffer when it is smaller).
   */
  offset(length: number): number {
    if (length <= 0) return 0;
    return this.chance(0.5) ? this.below(Math.min(length, 256)) : this.below(length);
  }
}
