//! Mixing groups decoded ahead of the one being run: a producer thread
//! reads and decodes a shard's groups in order into a bounded queue, so a
//! slow file system or a large JPEG is absorbed by the groups already
//! waiting instead of stalling the teachers. The bound is host memory: each
//! waiting group holds its decoded images. What is decoded, and in which
//! order it is run, does not depend on the bound, so neither do the bytes.

use std::sync::mpsc::sync_channel;

/// The most groups decoded ahead unless `--decode-ahead` says more.
pub const MAX_DEFAULT: usize = 8;

/// Bytes a decoded image is assumed to take for the default: a 2048x2048
/// RGB image, generous for photo datasets (ImageNet's average is about
/// 0.5 MB decoded), so the rule errs toward fewer groups, not swapping.
pub const IMAGE_BYTES: u64 = 2048 * 2048 * 3;

/// Groups each of `workers` decodes ahead by default: an eighth of the
/// `available` host memory, shared by the workers' queues, over a group's
/// decoded size (`group` images of IMAGE_BYTES), clamped to [1, MAX_DEFAULT].
pub fn default_ahead(available: u64, group: u32, workers: usize) -> usize {
    let per_group = group.max(1) as u64 * IMAGE_BYTES;
    let n = available / 8 / workers.max(1) as u64 / per_group;
    (n as usize).clamp(1, MAX_DEFAULT)
}

/// MemAvailable of /proc/meminfo, in bytes.
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The groups to decode ahead (the flag's, else `default_ahead` of
/// MemAvailable, 2 where that cannot be read) and a line saying how.
pub fn choose(flag: Option<usize>, group: u32, workers: usize) -> (usize, String) {
    if let Some(n) = flag {
        return (
            n,
            format!("decoding {n} mixing groups ahead per worker (--decode-ahead)"),
        );
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    match mem_available() {
        Some(avail) => {
            let n = default_ahead(avail, group, workers);
            (
                n,
                format!(
                    "decoding {n} mixing group{} ahead per worker (an eighth of {:.1} GiB available over {workers} worker{} and {group} images of up to {} MiB a group, at most {MAX_DEFAULT}; --decode-ahead sets it, the records are the same)",
                    if n == 1 { "" } else { "s" },
                    gib(avail),
                    if workers == 1 { "" } else { "s" },
                    IMAGE_BYTES >> 20
                ),
            )
        }
        None => (
            2,
            "decoding 2 mixing groups ahead per worker (/proc/meminfo has no MemAvailable to size it from; --decode-ahead sets it)".into(),
        ),
    }
}

/// `run(item, decode(item))` for each of `items` in order, `decode` running
/// on a producer thread at most `ahead` items ahead of `run` (at least one:
/// the next is decoded while this one runs). Stops at `run`'s first error,
/// and the producer after the item it is decoding.
pub fn pipelined<I: Copy + Send + Sync, T: Send, E>(
    items: &[I],
    ahead: usize,
    decode: impl Fn(I) -> T + Sync,
    mut run: impl FnMut(I, T) -> Result<(), E>,
) -> Result<(), E> {
    // The producer holds one decoded item blocked in `send` beside the
    // channel's ahead - 1, while `run` has the current one.
    let (tx, rx) = sync_channel::<(I, T)>(ahead.max(1) - 1);
    std::thread::scope(|s| {
        let decode = &decode;
        s.spawn(move || {
            for &i in items {
                if tx.send((i, decode(i))).is_err() {
                    break; // the consumer stopped
                }
            }
        });
        let r = rx.iter().try_for_each(|(i, t)| run(i, t));
        drop(rx);
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_default_is_an_eighth_of_available_memory_over_a_groups_size() {
        // 12 MiB an image, 32 images a group: 384 MiB a group.
        assert_eq!(IMAGE_BYTES, 12 << 20);
        // 24 GiB: 3 GiB / 384 MiB = 8.
        assert_eq!(default_ahead(24 * GIB, 32, 1), 8);
        // 12 GiB: 1.5 GiB / 384 MiB = 4; over two workers 2 each.
        assert_eq!(default_ahead(12 * GIB, 32, 1), 4);
        assert_eq!(default_ahead(12 * GIB, 32, 2), 2);
        // Rounded down: 11 GiB gives 3.67 -> 3.
        assert_eq!(default_ahead(11 * GIB, 32, 1), 3);
        // Clamped: a large host 8, a small one (or a huge group) still 1.
        assert_eq!(default_ahead(1024 * GIB, 32, 1), MAX_DEFAULT);
        assert_eq!(default_ahead(GIB, 32, 1), 1);
        assert_eq!(default_ahead(0, 0, 0), 1);
    }

    #[test]
    fn the_flag_wins_and_the_line_says_how() {
        let (n, why) = choose(Some(5), 32, 1);
        assert_eq!(n, 5);
        assert!(why.contains("5 mixing groups ahead") && why.contains("--decode-ahead"));
        let (n, why) = choose(None, 32, 1);
        assert!((1..=MAX_DEFAULT).contains(&n), "{n}");
        assert!(why.contains(&format!("decoding {n} mixing group")), "{why}");
    }

    /// Items run in order whatever the bound; the producer never gets more
    /// than `ahead` items past the one running; an error stops both.
    #[test]
    fn items_run_in_order_at_most_ahead_of_the_decoder() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let items: Vec<usize> = (0..20).collect();
        for ahead in [1, 2, 4] {
            let decoded = AtomicUsize::new(0);
            let mut seen = Vec::new();
            let mut most = 0;
            let r: Result<(), ()> = pipelined(
                &items,
                ahead,
                |i| {
                    decoded.fetch_add(1, Ordering::SeqCst);
                    i * 10
                },
                |i, t| {
                    assert_eq!(t, i * 10);
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    // Decoded so far, past this one (one may be in decode).
                    most = most.max(decoded.load(Ordering::SeqCst) - i - 1);
                    seen.push(i);
                    Ok(())
                },
            );
            assert!(r.is_ok());
            assert_eq!(seen, items, "ahead {ahead}");
            assert!(
                most <= ahead + 1,
                "ahead {ahead}: {most} decoded past the running one"
            );
            assert!(
                most >= ahead,
                "ahead {ahead}: the queue never filled ({most})"
            );
        }
        let decoded = AtomicUsize::new(0);
        let r = pipelined(
            &items,
            2,
            |i| {
                decoded.fetch_add(1, Ordering::SeqCst);
                i
            },
            |i, _| if i == 3 { Err(i) } else { Ok(()) },
        );
        assert_eq!(r, Err(3));
        assert!(decoded.load(Ordering::SeqCst) <= 3 + 1 + 2 + 1);
    }
}
