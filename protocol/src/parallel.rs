//! Stateless checks of many entries on every core, in order.
//!
//! Decoding an entry and verifying its signature (V1–V8) needs nothing but
//! its bytes, so a batch can be split across threads; the case rules that
//! follow need the order and run on one thread. The node (a received
//! batch, the store's load) and the bundle verifier use this one split.
//! The result never depends on the number of threads: each part is checked
//! as [`Entry::decode_many`](crate::Entry::decode_many) or
//! [`bundle::check_entries`](crate::bundle::check_entries) would check it
//! alone, and the parts are joined in order.

/// Below this many items the work stays on the calling thread: spawning
/// costs more than it saves.
pub const PARALLEL_MIN: usize = 64;

/// Runs `f` over `items` split into at most `threads` consecutive parts,
/// one thread each, and joins the results in order. `f` must return one
/// result per item. A part whose thread panicked (a bug) is done again on
/// the calling thread rather than lost.
pub fn map_in_parallel<T, U, F>(items: &[T], threads: usize, f: F) -> Vec<U>
where
    T: Sync,
    U: Send,
    F: Fn(&[T]) -> Vec<U> + Sync,
{
    if threads < 2 || items.len() < PARALLEL_MIN {
        return f(items);
    }
    let per = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|part| scope.spawn(move || f(part)))
            .collect();
        handles
            .into_iter()
            .zip(items.chunks(per))
            .flat_map(|(h, part)| h.join().unwrap_or_else(|_| f(part)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_and_the_result_do_not_depend_on_the_threads() {
        let items: Vec<u32> = (0..1000).collect();
        let square = |part: &[u32]| part.iter().map(|x| x * x).collect::<Vec<_>>();
        let one = map_in_parallel(&items, 1, square);
        for threads in [2, 3, 7, 64, 2000] {
            assert_eq!(map_in_parallel(&items, threads, square), one, "{threads}");
        }
        assert_eq!(one[999], 999 * 999);
    }
}
