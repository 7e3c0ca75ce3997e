//! A sequence of u32 numbers kept packed: each author's chain (the record
//! number at every sequence number) and a report's element index of every
//! position grow by one number per entry, and as plain vectors they kept
//! four to eight bytes an entry (a vector doubles as it grows) for as long
//! as a node runs.
//!
//! The numbers come in blocks of [`BLOCK`]. A full block is kept as its
//! first number, a stride (the average step across the block) and each
//! number's difference from `first + i * stride`, zigzag-encoded in the
//! fewest bytes (0, 1, 2, 4 or 8) that hold the largest. Record numbers of
//! writers taking turns step evenly and need no bytes beyond the block's
//! 16; uneven steps of up to a few hundred, one or two bytes a number. Any
//! number of a block is read without decoding the others. The last,
//! unfilled block is kept as it is, and a number changed in a full block
//! (a withheld position revealed) is kept aside.

use std::collections::HashMap;

/// Numbers per block.
const BLOCK: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Block {
    first: u32,
    stride: u32,
    /// Where its differences start in [`Packed::bytes`].
    at: u32,
    /// Bytes per difference: 0, 1, 2, 4 or 8.
    width: u8,
}

/// A growable sequence of u32 numbers, packed (see the module).
#[derive(Debug, Clone, Default)]
pub(crate) struct Packed {
    blocks: Vec<Block>,
    bytes: Vec<u8>,
    tail: Vec<u32>,
    changed: HashMap<usize, u32>,
}

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

impl Packed {
    pub(crate) fn len(&self) -> usize {
        self.blocks.len() * BLOCK + self.tail.len()
    }

    pub(crate) fn get(&self, i: usize) -> Option<u32> {
        let packed = self.blocks.len() * BLOCK;
        if i >= packed {
            return self.tail.get(i - packed).copied();
        }
        if !self.changed.is_empty() {
            if let Some(&v) = self.changed.get(&i) {
                return Some(v);
            }
        }
        let b = self.blocks[i / BLOCK];
        let j = i % BLOCK;
        let w = usize::from(b.width);
        let mut z = [0u8; 8];
        let from = b.at as usize + j * w;
        z[..w].copy_from_slice(self.bytes.get(from..from + w)?);
        let guess = i64::from(b.first) + j as i64 * i64::from(b.stride);
        u32::try_from(guess + unzigzag(u64::from_le_bytes(z))).ok()
    }

    pub(crate) fn push(&mut self, v: u32) {
        self.tail.push(v);
        if self.tail.len() == BLOCK {
            self.pack();
        }
    }

    /// Changes the number at `i` (below [`Packed::len`]).
    pub(crate) fn set(&mut self, i: usize, v: u32) {
        let packed = self.blocks.len() * BLOCK;
        if i >= packed {
            if let Some(slot) = self.tail.get_mut(i - packed) {
                *slot = v;
            }
        } else {
            self.changed.insert(i, v);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.blocks.shrink_to_fit();
        self.bytes.shrink_to_fit();
    }

    /// Packs the full tail into a block.
    fn pack(&mut self) {
        let t = std::mem::take(&mut self.tail);
        let (first, last) = (t[0], t[BLOCK - 1]);
        let stride = last.saturating_sub(first) / (BLOCK as u32 - 1);
        let diffs: Vec<u64> = t
            .iter()
            .enumerate()
            .map(|(j, &v)| zigzag(i64::from(v) - (i64::from(first) + j as i64 * i64::from(stride))))
            .collect();
        let most = diffs.iter().copied().max().unwrap_or(0);
        let width: u8 = match most {
            0 => 0,
            1..=0xff => 1,
            0x100..=0xffff => 2,
            0x1_0000..=0xffff_ffff => 4,
            _ => 8,
        };
        let at = self.bytes.len() as u32;
        for d in diffs {
            self.bytes
                .extend_from_slice(&d.to_le_bytes()[..usize::from(width)]);
        }
        self.blocks.push(Block {
            first,
            stride,
            at,
            width,
        });
        self.tail = Vec::with_capacity(BLOCK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(values: &[u32]) -> Packed {
        let mut p = Packed::default();
        for (i, &v) in values.iter().enumerate() {
            p.push(v);
            assert_eq!(p.len(), i + 1);
        }
        for (i, &v) in values.iter().enumerate() {
            assert_eq!(p.get(i), Some(v), "number {i}");
        }
        assert_eq!(p.get(values.len()), None);
        assert_eq!(p.iter().collect::<Vec<_>>(), values);
        p
    }

    #[test]
    fn every_number_reads_back_whatever_the_steps() {
        // Writers taking turns: no bytes beyond the blocks.
        let even: Vec<u32> = (0..10_000).map(|i| 3 * i + 1).collect();
        let p = check(&even);
        assert!(p.bytes.is_empty());
        // Uneven steps of up to 200: two bytes a number at most.
        let mut v = 0u32;
        let irregular: Vec<u32> = (0..10_000u32)
            .map(|i| {
                v += 1 + (i * 7919) % 200;
                v
            })
            .collect();
        let p = check(&irregular);
        assert!(p.bytes.len() <= 2 * p.blocks.len() * BLOCK);
        // Not increasing, extremes, jumps across the whole range.
        let wild: Vec<u32> = (0..1_000u32)
            .map(|i| match i % 5 {
                0 => u32::MAX,
                1 => 0,
                2 => i.wrapping_mul(2_654_435_761),
                3 => u32::MAX - i,
                _ => i,
            })
            .collect();
        check(&wild);
        check(&[]);
        check(&[7]);
    }

    #[test]
    fn a_number_changed_anywhere_reads_back_changed() {
        let mut p = check(&(0..300).collect::<Vec<u32>>());
        p.set(5, 9_999);
        p.set(299, 42);
        assert_eq!(p.get(5), Some(9_999));
        assert_eq!(p.get(299), Some(42));
        assert_eq!(p.get(6), Some(6));
        p.push(1_000);
        assert_eq!(p.get(300), Some(1_000));
        let copy = p.clone();
        assert_eq!(
            copy.iter().collect::<Vec<_>>(),
            p.iter().collect::<Vec<_>>()
        );
    }
}
