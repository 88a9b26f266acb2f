//! Helpers shared by the fuzz targets.
//!
//! Owns: turning the first bytes of an input into cut points, so a target can feed the rest
//! of the input in pieces and check that pieces give the same answer as the whole.

/// How many leading bytes [`split`] takes as seeds.
pub const SEED_BYTES: usize = 3;

/// Splits `data` into seeds (the first [`SEED_BYTES`], or fewer) and the rest, and returns
/// up to `SEED_BYTES` sorted cut points into the rest (each in `0..=rest.len()`).
pub fn split(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let n = data.len().min(SEED_BYTES);
    let (seeds, rest) = data.split_at(n);
    let mut cuts: Vec<usize> = seeds
        .iter()
        .map(|s| usize::from(*s) * rest.len() / 255)
        .collect();
    cuts.sort_unstable();
    (cuts, rest)
}

/// `bytes` cut at `cuts` (sorted, in bounds): the pieces in order, some possibly empty.
pub fn pieces<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for &cut in cuts {
        out.push(&bytes[at..cut]);
        at = cut;
    }
    out.push(&bytes[at..]);
    out
}
