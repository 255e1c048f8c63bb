//! The one place the CPU executor calls the `gemm` crate (which takes raw
//! pointers): a safe, bounds-checked row-major matrix product.

/// Row-major `c[m×n] = a[m×k] · b[k×n]` (+ c when `accumulate`), where `a`
/// and `b` may be stored transposed. Single-threaded: callers parallelise
/// over independent products (batch, groups).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "matmul {m}x{k} · {k}x{n}: buffers too small"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    // Strides in elements: (column stride, row stride).
    let (a_cs, a_rs) = if a_t {
        (m as isize, 1)
    } else {
        (1, k as isize)
    };
    let (b_cs, b_rs) = if b_t {
        (k as isize, 1)
    } else {
        (1, n as isize)
    };
    // SAFETY: the asserts above keep every index the strides reach
    // (row < m or k, column < k or n) inside the three slices, and `c` is
    // borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            // Never threads inside a product: how the crate would split it
            // follows the thread count, and callers split by image instead.
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], a_t: bool, b: &[f32], b_t: bool) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    let x = if a_t { a[p * m + i] } else { a[i * k + p] };
                    let y = if b_t { b[j * k + p] } else { b[p * n + j] };
                    s += x as f64 * y as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn matches_naive_in_every_layout() {
        let (m, n, k) = (7, 5, 13);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 7.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 11 % 13) as f32 - 6.0) / 5.0)
            .collect();
        for (a_t, b_t) in [(false, false), (true, false), (false, true), (true, true)] {
            let want = naive(m, n, k, &a, a_t, &b, b_t);
            let mut c = vec![1.0f32; m * n];
            matmul(m, n, k, &a, a_t, &b, b_t, &mut c, false);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() < 1e-4, "{a_t} {b_t}: {x} vs {y}");
            }
            let mut c2 = vec![1.0f32; m * n];
            matmul(m, n, k, &a, a_t, &b, b_t, &mut c2, true);
            assert!((c2[0] - (want[0] + 1.0)).abs() < 1e-4);
        }
    }
}
