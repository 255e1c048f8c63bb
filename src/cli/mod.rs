//! Subcommands with more than a call's worth of flag handling.

pub mod dataset;
pub mod demo;
pub mod infer;
pub mod reinforce;

/// clap value parsers: a bad value is a usage error (exit 2) that names
/// the flag, like any other.
pub mod values {
    /// A count that must be at least 1 (samples, batch sizes, iterations).
    pub fn at_least_one(s: &str) -> Result<usize, String> {
        match s.parse::<usize>() {
            Ok(0) => Err("must be at least 1".into()),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("`{s}` is not a whole number")),
        }
    }

    /// `at_least_one` for u32 flags.
    pub fn at_least_one_u32(s: &str) -> Result<u32, String> {
        let n = at_least_one(s)?;
        u32::try_from(n).map_err(|_| format!("{n} is too large"))
    }

    /// A softmax temperature: finite and above zero.
    pub fn temperature(s: &str) -> Result<f32, String> {
        match s.parse::<f32>() {
            Ok(t) if t.is_finite() && t > 0.0 => Ok(t),
            Ok(_) => Err("must be a positive number".into()),
            Err(_) => Err(format!("`{s}` is not a number")),
        }
    }

    /// One CUDA device for a GPU-only bench: `cuda`, `cuda:N`, or a bare
    /// ordinal `N` (the spelling these benches first shipped with).
    pub fn cuda_device(s: &str) -> Result<usize, String> {
        match s {
            "cuda" => Ok(0),
            _ => {
                s.strip_prefix("cuda:").unwrap_or(s).parse().map_err(|_| {
                    format!("`{s}`: give cuda or cuda:N (this bench runs on a GPU only)")
                })
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn values() {
            assert_eq!(at_least_one("3"), Ok(3));
            assert!(at_least_one("0").is_err() && at_least_one("x").is_err());
            assert!(temperature("0").is_err() && temperature("nan").is_err());
            assert_eq!(temperature("2"), Ok(2.0));
            assert_eq!(
                (cuda_device("cuda"), cuda_device("cuda:2"), cuda_device("1")),
                (Ok(0), Ok(2), Ok(1))
            );
            assert!(cuda_device("cpu").is_err());
        }
    }
}
