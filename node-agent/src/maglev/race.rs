//! The table fill: a bounded-load race along Maglev's permutations.
//!
//! Every backend walks its permutation of the slots (Maglev's offset +
//! j·skip), one position per step, and claims the slot it stands on if the
//! slot is free and the backend is below its cap. Position j of a backend
//! of weight w is reached at time ⌊τ(j)·2^24/w⌋, and all steps of all
//! backends happen in the order of their times (ties: heavier weight
//! first, then key order). Without caps, a slot would belong to the backend
//! that reaches it first: rendezvous hashing, where a leaving backend moves
//! only its own slots. The caps keep the balance that rendezvous alone lacks at tens of
//! slots a backend; their price is that a leaving backend's slot may land on
//! a backend at its cap and push a later slot on — measured in `cargo bench
//! --bench maglev` and kept under 1.2× the ideal by the table size.
//!
//! Why not Maglev's own fill (a backend that finds its slot taken walks on
//! to its next free one within the same turn): a leaving backend then
//! changes which slot every later turn takes, and that cascade grows like
//! N²/M (6.7× the ideal at 1000 backends and 65537 slots, 4.8× at 524309).
//!
//! τ(j) = Σ_{i=M-j+1}^{M} ⌊2^32/i⌋ is the expected j-th smallest of M
//! exponential draws, in fixed point: a backend's positions are uniform
//! over its permutation, so τ turns them into exponential times, and
//! exponential times divided by weights make a backend first to a slot
//! with probability w/W (uniform times divided by weights would favour
//! heavy backends). Integer arithmetic throughout, so every director gets
//! the same table.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;

use super::EMPTY;

/// Slack of each backend's cap over its exact share, as a fraction 1/20:
/// cap = ⌈(1 + 1/20)·M·w/W⌉, so no backend gets more than 1.05× its
/// share plus one slot.
const CAP_SLACK_DEN: u128 = 20;

/// τ's fixed-point scale: τ < 2^32·(ln M + 1) < 2^37 for any u32 M.
const TAU_ONE: u64 = 1 << 32;

/// A step's time is ⌊τ·2^24/w⌋: below 2^61, and it rises at every step
/// of any weight in tables of up to 2^24 slots (τ rises by ⌊2^32/(M-j)⌋ ≥
/// 2^8, so τ·2^24 by ≥ 2^32 > w); in larger ones (`--maglev-size` only) a
/// heavy backend's steps may share a time, ordered as ties are. One u64 a
/// step keeps the heap cheap when every backend has a weight of its own.
const TIME_SHIFT: u32 = 24;

fn time(tau: u64, weight: u32) -> u64 {
    (tau << TIME_SHIFT) / u64::from(weight)
}

/// A backend with weight > 0, in key order.
pub(super) struct Racer {
    /// What the table holds for the slots it wins (index in the caller's list).
    pub owner: u32,
    pub weight: u32,
    /// First slot of its permutation and the step (1 ≤ skip < M).
    pub offset: u64,
    pub skip: u64,
}

/// Each racer's cap: ⌈(1 + 1/20)·M·w/W⌉. The caps sum to at least M, so
/// the race fills every slot.
pub(super) fn caps(racers: &[Racer], m: u64) -> Vec<u64> {
    let total: u128 = racers.iter().map(|r| u128::from(r.weight)).sum();
    racers
        .iter()
        .map(|r| {
            let num = (CAP_SLACK_DEN + 1) * u128::from(m) * u128::from(r.weight);
            num.div_ceil(CAP_SLACK_DEN * total) as u64
        })
        .collect()
}

/// The backends of one weight, stepping together: with equal weights, a
/// step of every member falls at the same time, and ties go in key order,
/// so a group's step is one pass over its members.
struct Group {
    weight: u32,
    /// Rank among groups by weight, heaviest first: the tie-break.
    rank: usize,
    /// Members still below their cap, in key order (indexes into racers).
    members: Vec<usize>,
    /// The position the members stand on, and τ of it.
    j: u64,
    tau: u64,
}

/// When a group's next step falls, then its rank, as one integer (time
/// above bit 64, rank below): the heap's order at one comparison a level.
fn step_at(time: u64, rank: usize) -> u128 {
    (u128::from(time) << 64) | rank as u128
}

/// Fills a table of `m` slots (prime, ≥ racers.len() ≥ 1).
pub(super) fn fill(racers: &[Racer], m: u64) -> Vec<u32> {
    let caps = caps(racers, m);
    let mut weights: Vec<u32> = racers.iter().map(|r| r.weight).collect();
    weights.sort_unstable_by(|a, b| b.cmp(a));
    weights.dedup();
    let mut groups: Vec<Group> = weights
        .iter()
        .enumerate()
        .map(|(rank, &weight)| Group {
            weight,
            rank,
            members: (0..racers.len())
                .filter(|&i| racers[i].weight == weight)
                .collect(),
            j: 0,
            tau: 0,
        })
        .collect();
    let mut heap: BinaryHeap<Reverse<u128>> =
        groups.iter().map(|g| Reverse(step_at(0, g.rank))).collect();
    let mut at: Vec<u64> = racers.iter().map(|r| r.offset).collect();
    let mut load = vec![0u64; racers.len()];
    let mut slots = vec![EMPTY; m as usize];
    let mut filled = 0u64;
    // A racer below its cap that has stepped over every slot has found each
    // taken or taken it, so the table is full before any group runs out of
    // members or positions: the heap cannot empty first.
    // The group stepping next is replaced at the top of the heap in place
    // (one sift instead of a pop and a push).
    while let Some(mut next) = heap.peek_mut() {
        let rank = next.0 as u64 as usize;
        let g = &mut groups[rank];
        let mut capped = false;
        for &i in &g.members {
            let s = at[i] as usize;
            if slots[s] == EMPTY {
                slots[s] = racers[i].owner;
                load[i] += 1;
                filled += 1;
                if filled == m {
                    return slots;
                }
                capped |= load[i] == caps[i];
            }
            at[i] += racers[i].skip;
            if at[i] >= m {
                at[i] -= m;
            }
        }
        if capped {
            g.members.retain(|&i| load[i] < caps[i]);
        }
        // τ(j+1) = τ(j) + ⌊2^32/(M-j)⌋.
        g.tau += TAU_ONE / (m - g.j);
        g.j += 1;
        if !g.members.is_empty() && g.j < m {
            *next = Reverse(step_at(time(g.tau, g.weight), rank));
        } else {
            PeekMut::pop(next);
        }
    }
    unreachable!("the caps sum to at least {m}, so the race fills every slot");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maglev::mix64;

    fn racers(weights: &[u32], m: u64) -> Vec<Racer> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Racer {
                owner: i as u32,
                weight,
                offset: mix64(i as u64) % m,
                skip: mix64(i as u64 + 99) % (m - 1) + 1,
            })
            .collect()
    }

    /// The race as defined: one step of one racer at a time, every racer's
    /// next step in a heap keyed by (time, weight descending, key order).
    fn reference(racers: &[Racer], m: u64) -> Vec<u32> {
        let caps = caps(racers, m);
        let tau = |j: u64| (0..j).map(|k| TAU_ONE / (m - k)).sum::<u64>();
        // (time, heavier first, key order, position).
        type Step = (u64, Reverse<u32>, usize, u64);
        let mut heap: BinaryHeap<Reverse<Step>> = racers
            .iter()
            .enumerate()
            .map(|(i, r)| Reverse((0, Reverse(r.weight), i, 0)))
            .collect();
        let mut slots = vec![EMPTY; m as usize];
        let mut load = vec![0; racers.len()];
        while let Some(Reverse((_, Reverse(w), i, j))) = heap.pop() {
            let s = ((racers[i].offset + j * racers[i].skip) % m) as usize;
            if slots[s] == EMPTY {
                slots[s] = racers[i].owner;
                load[i] += 1;
            }
            if !slots.contains(&EMPTY) {
                break;
            }
            if load[i] < caps[i] {
                heap.push(Reverse((time(tau(j + 1), w), Reverse(w), i, j + 1)));
            }
        }
        slots
    }

    #[test]
    fn group_steps_replay_the_race_one_step_at_a_time() {
        let mut state = 0x5eed_u64;
        let mut rnd = || {
            state = mix64(state);
            state
        };
        for m in [2u64, 3, 13, 101, 257] {
            for _ in 0..30 {
                let n = 1 + (rnd() % m.min(12)) as usize;
                let cap = [1, 3, 100, 65535][(rnd() % 4) as usize];
                let weights: Vec<u32> = (0..n).map(|_| 1 + (rnd() % cap) as u32).collect();
                let r = racers(&weights, m);
                assert_eq!(fill(&r, m), reference(&r, m), "M={m} weights {weights:?}");
            }
        }
    }

    #[test]
    fn no_backend_exceeds_its_cap_and_every_slot_is_filled() {
        for (weights, m) in [
            (&[1u32; 7][..], 4099u64),
            (&[1, 2, 3, 4], 1031),
            (&[65535, 1], 257),
            (&[5; 3], 3),
        ] {
            let r = racers(weights, m);
            let t = fill(&r, m);
            let caps = caps(&r, m);
            assert!(caps.iter().sum::<u64>() >= m);
            for (i, cap) in caps.iter().enumerate() {
                let got = t.iter().filter(|&&o| o == i as u32).count() as u64;
                assert!(
                    got <= *cap,
                    "{weights:?}: backend {i} has {got} > cap {cap}"
                );
            }
        }
    }

    #[test]
    fn caps_are_five_percent_over_the_share_rounded_up() {
        let r = racers(&[1, 1, 2], 1031);
        // Shares 257.75, 257.75, 515.5 slots; ×1.05 = 270.6, 270.6, 541.3.
        assert_eq!(caps(&r, 1031), [271, 271, 542]);
    }
}
