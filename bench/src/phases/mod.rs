//! The bench's phases, one a file. What the interleaved comparisons share stays here: how
//! many rounds they keep and in which order a round runs its paths.

pub(crate) mod attribution;
pub(crate) mod cleanup;
pub(crate) mod leftovers;
pub(crate) mod lifecycle;
pub(crate) mod networks_volumes;
pub(crate) mod pulls;
pub(crate) mod scale;
pub(crate) mod suite;
pub(crate) mod teardown;
pub(crate) mod throughput;

/// Samples per path in the interleaved comparisons (1 and 5), after `WARMUP` rounds that
/// are thrown away: the first ones pay for connections, the session image and the
/// session's pre-test check.
pub(crate) const N: usize = 20;
pub(crate) const WARMUP: usize = 2;

/// The order of three paths in a round: all six permutations in turn, so that each path
/// runs first, middle and last, and after each of the others, equally often. (A plain
/// rotation would always put the same path after the same one, and some removals leave the
/// daemon busy for a moment: a network's teardown slowed whatever came next.)
pub(crate) fn order(round: usize) -> [usize; 3] {
    const PERMS: [[usize; 3]; 6] = [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 2, 1], [2, 1, 0], [1, 0, 2]];
    PERMS[round % PERMS.len()]
}
