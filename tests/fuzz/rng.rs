//! A small seeded generator (SplitMix64): the same seed gives the same inputs, so a campaign can
//! be replayed; no dependency.

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True with `percent` % probability.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A count skewed to small ones, sometimes large: 1–4 mostly, up to `max` rarely.
    pub fn count(&mut self, max: usize) -> usize {
        let limit = match self.below(100) {
            0..=59 => 4,
            60..=84 => 64,
            85..=96 => 4096,
            _ => max,
        };
        1 + self.below(limit.min(max).max(1))
    }
}
