//! Mutation fuzzing of every reader of outside bytes: the ONNX loader (with
//! the passes and memory plan a teacher needs, and a forward pass when the
//! mutant still loads), the YAML config parser, the manifest reader and the
//! ml-dr importer. Each mutant must give a result or an error naming its
//! file, never a panic. Seeded (DR_FUZZ_SEED, default 1): a failure names the
//! case to replay. DR_FUZZ_CASES per reader (default 300) and DR_FUZZ_SECONDS
//! (default 60) bound the run; CI runs 100,000 ONNX mutants. DR_FUZZ_CASE=N
//! replays case N alone.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use common::repo_root;

/// splitmix64: a small counter-based generator, so a case is its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// 1 to 4 edits of `seed`: bit flips, boundary bytes, truncation, inserted
/// or deleted runs, a chunk copied over another.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len().max(1);
        let at = rng.below(len);
        match rng.below(6) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.below(8),
            1 if !v.is_empty() => v[at] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
            2 => v.truncate(at),
            3 => {
                let run: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                let at = at.min(v.len());
                v.splice(at..at, run);
            }
            4 => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                if at < end {
                    v.drain(at..end);
                }
            }
            _ if v.len() > 2 => {
                let n = 1 + rng.below(32.min(v.len() / 2));
                let (src, dst) = (rng.below(v.len() - n), rng.below(v.len() - n));
                let chunk = v[src..src + n].to_vec();
                v[dst..dst + n].copy_from_slice(&chunk);
            }
            _ => {}
        }
    }
    v
}

fn env(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `check` on mutants of `seeds` (one drawn per case) until the case or
/// time budget is spent; `check` returns `Err(message)` for a rejected
/// input, whose message must contain `names`. Panics and unnamed errors
/// fail the test, each with the case that made it.
fn fuzz(
    target: &str,
    cases_default: u64,
    seeds: &[Vec<u8>],
    names: &str,
    check: impl Fn(&[u8]) -> Result<(), String>,
) {
    let seed = env("DR_FUZZ_SEED", 1);
    let cases = env("DR_FUZZ_CASES", cases_default);
    let budget = Duration::from_secs(env("DR_FUZZ_SECONDS", 60));
    // DR_FUZZ_CASE=N replays one case with the panic printed (and a backtrace
    // under RUST_BACKTRACE=1).
    let only = std::env::var("DR_FUZZ_CASE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    if only.is_none() {
        std::panic::set_hook(Box::new(|_| {})); // panics are counted, not printed
    }
    let t0 = Instant::now();
    let (mut ran, mut ok, mut errors) = (0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    for case in 0..cases {
        if t0.elapsed() > budget {
            break;
        }
        if only.is_some_and(|c| c != case) {
            continue;
        }
        let mut rng = Rng(seed.wrapping_mul(0x1_0000_0001).wrapping_add(case));
        let input = mutate(&seeds[rng.below(seeds.len())], &mut rng);
        ran += 1;
        match catch_unwind(AssertUnwindSafe(|| check(&input))) {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) if e.contains(names) && !e.trim().is_empty() => errors += 1,
            Ok(Err(e)) => failures.push(format!("case {case}: an error not naming {names}: {e}")),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("case {case}: panic: {msg}"));
            }
        }
    }
    let _ = std::panic::take_hook();
    println!(
        "fuzz {target}: {ran} mutants (seed {seed}) in {:.1} s: {ok} accepted, {errors} refused with an error, {} failures",
        t0.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "fuzz {target} (DR_FUZZ_SEED={seed}):\n{}",
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn read(p: &str) -> Vec<u8> {
    std::fs::read(repo_root().join(p)).unwrap()
}

#[test]
fn onnx_loader() {
    use dr::teacher::ensemble::Member;
    use dr::teacher::tensor::Tensor;
    let seeds: Vec<Vec<u8>> = [
        "fixedbatch-helper.onnx",
        "functions-helper.onnx",
        "autopad-helper.onnx",
        "mask-helper.onnx",
        "unsupported-cumsum.onnx",
    ]
    .iter()
    .map(|f| read(&format!("tests/fixtures/teacher/{f}")))
    .collect();
    let path = Path::new("/nonexistent/fuzz.onnx");
    fuzz("onnx", 300, &seeds, "fuzz.onnx", |bytes| {
        let model = dr::teacher::onnx::load_bytes(bytes, path).map_err(|e| e.to_string())?;
        let m = Member::from_model(path, model).map_err(|e| e.to_string())?;
        let chw = m.input_chw().map_err(|e| e.to_string())?;
        let n: usize = chw.iter().product();
        if chw.len() == 3 && n > 0 && n <= 1 << 20 {
            let b = m.probe_batch();
            let x = Tensor::f32([vec![b], chw].concat(), vec![0.0; b * n]);
            m.logits(x).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
}

#[test]
fn yaml_config_parser() {
    let seeds: Vec<Vec<u8>> = ["cropflip", "mixing", "randaug", "randaug_mixing"]
        .iter()
        .map(|n| read(&format!("configs/imagenet-{n}.yaml")))
        .chain([read("configs/demo.yaml")])
        .collect();
    fuzz("yaml", 3000, &seeds, "t.yaml", |bytes| {
        let text = String::from_utf8_lossy(bytes);
        for compat in [false, true] {
            dr::config::ReinforceConfig::parse(&text, "t.yaml", compat)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    });
}

#[test]
fn manifest_reader() {
    // A real dataset, its manifest mutated in place case by case.
    let dir = common::fresh_dir("fuzz-manifest");
    let root = common::reinforce::dataset("fuzz-manifest-data", false);
    common::reinforce::ok(common::reinforce::reinforce(&root, "out", &[]));
    let out = root.join("out");
    let seeds = vec![std::fs::read(out.join("manifest.json")).unwrap()];
    let _ = dir;
    fuzz("manifest", 1000, &seeds, "manifest.json", |bytes| {
        std::fs::write(out.join("manifest.json"), bytes).unwrap();
        let d = dr::store::reader::Reinforced::open(&out).map_err(|e| format!("{e:#}"))?;
        // What verify and show do with what it read.
        let _ = dr::store::verify::verify(&d);
        if !d.rows.is_empty() {
            let _ = d.records(0);
        }
        Ok(())
    });
}

#[test]
fn ml_dr_importer() {
    let rel = "tests/fixtures/ml-dr-release";
    let config = read(&format!("{rel}/config.pth.tar"));
    let images: Vec<Vec<u8>> = (0..6)
        .map(|i| read(&format!("{rel}/{i}.pth.tar")))
        .collect();
    // Mutants of the config (read with a good image), then of the images.
    fuzz(
        "ml-dr config",
        1000,
        std::slice::from_ref(&config),
        "config.pth.tar",
        |bytes| {
            dr::store::ml_dr::import::read_release_image(bytes, &images[0], 0)
                .map(|_| ())
                .map_err(|e| format!("{e:#}"))
        },
    );
    fuzz("ml-dr image", 1000, &images, ".pth.tar", |bytes| {
        dr::store::ml_dr::import::read_release_image(&config, bytes, 0)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    });
}
