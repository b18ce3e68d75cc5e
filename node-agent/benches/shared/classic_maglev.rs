//! The fill the agent's tables had before the race (Maglev's own, NSDI
//! 2016 §3.4, equal weights): the `maglev` bench's baseline, on the same
//! permutations (`maglev::permutation`). Each backend in turn, in key
//! order, takes the next slot of its permutation that is still free.
use ballast_agent::maglev::{self, MaglevBackend};

pub fn build_table(backends: &[MaglevBackend], size: u32) -> Vec<u32> {
    const EMPTY: u32 = u32::MAX;
    let mut order: Vec<usize> = (0..backends.len()).collect();
    order.sort_by_key(|&i| backends[i].key);
    let m = u64::from(size);
    let mut walk: Vec<(u64, u64)> = order
        .iter()
        .map(|&i| maglev::permutation(backends[i].key, size))
        .collect();
    let mut slots = vec![EMPTY; size as usize];
    let mut filled = 0;
    loop {
        for (k, &i) in order.iter().enumerate() {
            let (next, skip) = &mut walk[k];
            let step = |c: u64| {
                if c + *skip >= m {
                    c + *skip - m
                } else {
                    c + *skip
                }
            };
            while slots[*next as usize] != EMPTY {
                *next = step(*next);
            }
            slots[*next as usize] = i as u32;
            *next = step(*next);
            filled += 1;
            if filled == m {
                return slots;
            }
        }
    }
}
