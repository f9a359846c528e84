//! Low-rank factorisation of weight updates: ΔW ≈ up·down at a rank a rule
//! chooses from the singular values, for merging, resizing and extracting LoRAs.
//!
//! The linear algebra runs in f64 on faer, always sequentially (`Par::Seq`):
//! callers spread modules over rayon, and a nested parallel SVD would only
//! oversubscribe the cores.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail, ensure};
use candle_core::{DType, Device, Tensor};
use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::qr::no_pivoting::factor as qr;
use faer::linalg::svd::{self, ComputeSvdVectors};
use faer::linalg::{householder, matmul};
use faer::{Accum, Conj, Mat, MatRef, Par};

/// How many singular values to keep (kohya's resize_lora rules; the
/// dynamic ones keep one more than the smallest rank that meets them, as
/// kohya's script does).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RankRule {
    /// Exactly this rank (capped at the number of singular values).
    Fixed(usize),
    /// The singular values above s_max / t.
    SvRatio(f64),
    /// The smallest rank keeping a fraction t of the Frobenius norm.
    SvFro(f64),
    /// The smallest rank keeping a fraction t of the sum of singular values.
    SvCumulative(f64),
}

impl FromStr for RankRule {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let Some((name, value)) = text.split_once('=') else {
            let rank: usize = text.parse().map_err(|_| {
                anyhow!(
                    "`{text}` is not a rank rule: give a rank (\"16\"), \
                     sv_ratio=T, sv_fro=T or sv_cumulative=T"
                )
            })?;
            ensure!(rank > 0, "a rank must be at least 1");
            return Ok(Self::Fixed(rank));
        };
        let t: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite())
            .ok_or_else(|| anyhow!("`{text}`: `{value}` is not a number"))?;
        match name.trim() {
            "sv_ratio" if t >= 1.0 => Ok(Self::SvRatio(t)),
            "sv_ratio" => bail!("`{text}`: the ratio s_max/s_min must be at least 1"),
            "sv_fro" if t > 0.0 && t <= 1.0 => Ok(Self::SvFro(t)),
            "sv_cumulative" if t > 0.0 && t <= 1.0 => Ok(Self::SvCumulative(t)),
            "sv_fro" | "sv_cumulative" => bail!("`{text}`: the fraction must be in (0, 1]"),
            other => bail!("`{other}` is not a rank rule: expected sv_ratio, sv_fro or sv_cumulative"),
        }
    }
}

impl fmt::Display for RankRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(rank) => write!(f, "{rank}"),
            Self::SvRatio(t) => write!(f, "sv_ratio={t}"),
            Self::SvFro(t) => write!(f, "sv_fro={t}"),
            Self::SvCumulative(t) => write!(f, "sv_cumulative={t}"),
        }
    }
}

impl RankRule {
    /// The rank to keep of `s` (non-increasing), at least 1.
    fn rank(self, s: &[f64]) -> usize {
        let meeting = match self {
            Self::Fixed(rank) => return rank.clamp(1, s.len()),
            Self::SvRatio(t) => s.iter().take_while(|&&x| x > s[0] / t).count(),
            Self::SvFro(t) => smallest_prefix(s.iter().map(|x| x * x), t * t),
            Self::SvCumulative(t) => smallest_prefix(s.iter().copied(), t),
        };
        // kohya's resize_lora keeps one singular value more than the rule
        // needs; doing the same gives its users the ranks they know.
        meeting.max(1).saturating_add(1).clamp(1, s.len())
    }

    /// A fixed rank the layer cannot have is the caller's mistake, not
    /// something to cap silently.
    fn check(self, rows: usize, cols: usize) -> Result<()> {
        let most = rows.min(cols);
        match self {
            Self::Fixed(rank) if rank > most => {
                bail!("rank {rank} is larger than this {rows}×{cols} layer allows ({most})")
            }
            _ => Ok(()),
        }
    }
}

/// How many leading `values` make up at least `fraction` of their sum.
fn smallest_prefix(values: impl Iterator<Item = f64> + Clone, fraction: f64) -> usize {
    let goal = fraction * values.clone().sum::<f64>();
    let mut sum = 0.0;
    for (i, value) in values.enumerate() {
        sum += value;
        if sum >= goal {
            return i + 1;
        }
    }
    usize::MAX // rounding kept the sum under the goal: keep everything
}

/// A rank rule with an optional cap: kohya's `--new_rank` bounds the rank a
/// dynamic rule may pick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankChoice {
    pub rule: RankRule,
    pub at_most: Option<usize>,
}

impl From<RankRule> for RankChoice {
    fn from(rule: RankRule) -> Self {
        Self { rule, at_most: None }
    }
}

impl fmt::Display for RankChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at_most {
            Some(cap) => write!(f, "{}, at most {cap}", self.rule),
            None => write!(f, "{}", self.rule),
        }
    }
}

impl RankChoice {
    /// Factorises the product `up·down` (see [`factorize_product`]) at this choice.
    pub fn product(self, up: &Tensor, down: &Tensor) -> Result<Factors> {
        self.capped(factorize_product(up, down, self.rule)?)
    }

    /// Factorises a dense ΔW (see [`factorize_dense`]) at this choice.
    pub fn dense(self, delta: &Tensor) -> Result<Factors> {
        self.capped(factorize_dense(delta, self.rule)?)
    }

    fn capped(self, factors: Factors) -> Result<Factors> {
        match self.at_most {
            Some(cap) => factors.at_most(cap),
            None => Ok(factors),
        }
    }
}

/// ΔW ≈ up·down.
#[derive(Debug)]
pub struct Factors {
    /// [out, r] f32.
    pub up: Tensor,
    /// [r, in] f32; up·down ≈ ΔW at scale 1, so callers write alpha = r.
    pub down: Tensor,
    pub rank: usize,
    /// ‖ΔW‖_F.
    pub norm: f64,
    /// ‖ΔW − up·down‖_F / ‖ΔW‖_F, from the discarded singular values.
    pub error: f64,
    /// The kept singular values, largest first.
    pub kept: Vec<f64>,
}

impl Factors {
    /// At most `cap` of the kept singular values (kohya's `--new_rank` over a
    /// dynamic rule): the factors' leading columns are the best approximation
    /// of that rank, so this is a truncation, and the error grows by what it drops.
    pub fn at_most(self, cap: usize) -> Result<Self> {
        let cap = cap.max(1);
        if cap >= self.rank {
            return Ok(self);
        }
        let dropped: f64 = self.kept[cap..].iter().map(|x| x * x).sum();
        let error = if self.norm == 0.0 { 0.0 } else { (self.error.powi(2) + dropped / self.norm.powi(2)).sqrt() };
        Ok(Self {
            up: self.up.narrow(1, 0, cap)?.contiguous()?,
            down: self.down.narrow(0, 0, cap)?.contiguous()?,
            rank: cap,
            norm: self.norm,
            error,
            kept: self.kept[..cap].to_vec(),
        })
    }
}

/// Factorises ΔW given densely, [out, in] (extract: the difference of two
/// models' weights).
pub fn factorize_dense(delta: &Tensor, rule: RankRule) -> Result<Factors> {
    let delta = to_mat(delta, "ΔW")?;
    rule.check(delta.nrows(), delta.ncols())?;
    dense(delta.as_ref(), rule)
}

/// Factorises ΔW = up·down given as a product, up [out, R] and down [R, in]
/// (merges: several LoRAs' factors stacked, each already scaled by its
/// weight·alpha/rank), without forming ΔW when R is small: QR of up and of
/// downᵀ, SVD of the R×R core between them, rotated back.
pub fn factorize_product(up: &Tensor, down: &Tensor, rule: RankRule) -> Result<Factors> {
    let (up, down) = (to_mat(up, "up")?, to_mat(down, "down")?);
    let (out, inner, cols) = (up.nrows(), up.ncols(), down.ncols());
    ensure!(down.nrows() == inner, "up is {out}×{inner} but down is {}×{cols}: the ranks differ", down.nrows());
    rule.check(out, cols)?;
    if inner >= out.min(cols) {
        // The product is no smaller than the dense matrix: factorise that.
        return dense(multiply(up.as_ref(), down.as_ref()).as_ref(), rule);
    }
    let (q_up, r_up) = thin_qr(up);
    let (q_down, r_down) = thin_qr(down.transpose().to_owned());
    // ΔW = Q_up·(R_up·R_downᵀ)·Q_downᵀ, so ΔW's singular values are the core's.
    let core = multiply(r_up.as_ref(), r_down.transpose());
    let (u, s, v) = thin_svd(core.as_ref())?;
    keep(&s, rule, (out, cols), |rank| {
        let up = multiply(q_up.as_ref(), u.subcols(0, rank));
        let down = multiply(q_down.as_ref(), v.subcols(0, rank));
        (up, down)
    })
}

fn dense(delta: MatRef<'_, f64>, rule: RankRule) -> Result<Factors> {
    let (u, s, v) = thin_svd(delta)?;
    keep(&s, rule, delta.shape(), |rank| (u.subcols(0, rank).to_owned(), v.subcols(0, rank).to_owned()))
}

/// Keeps `rule`'s rank of the [out, cols] ΔW = U·diag(s)·Vᵀ; `vectors` gives
/// U's and V's first columns for a rank (the product path builds only those).
fn keep(
    s: &[f64],
    rule: RankRule,
    (out, cols): (usize, usize),
    vectors: impl FnOnce(usize) -> (Mat<f64>, Mat<f64>),
) -> Result<Factors> {
    let energy: f64 = s.iter().map(|x| x * x).sum();
    // A zero ΔW has nothing to keep; a zero rank-1 pair keeps the file well-formed.
    let rank = if energy == 0.0 { 1 } else { rule.rank(s) };
    let (u, v) = vectors(rank);
    let discarded: f64 = s[rank..].iter().map(|x| x * x).sum();
    // √s on each side keeps the two factors of similar magnitude, which
    // matters once they are stored in f16.
    let root: Vec<f64> = s[..rank].iter().map(|x| x.sqrt()).collect();
    let up = (0..out).flat_map(|i| (0..rank).map(move |j| (i, j)));
    let up: Vec<f32> = up.map(|(i, j)| (u[(i, j)] * root[j]) as f32).collect();
    let down = (0..rank).flat_map(|j| (0..cols).map(move |k| (j, k)));
    let down: Vec<f32> = down.map(|(j, k)| (v[(k, j)] * root[j]) as f32).collect();
    Ok(Factors {
        up: Tensor::from_vec(up, (out, rank), &Device::Cpu)?,
        down: Tensor::from_vec(down, (rank, cols), &Device::Cpu)?,
        rank,
        norm: energy.sqrt(),
        error: if energy == 0.0 { 0.0 } else { (discarded / energy).sqrt() },
        kept: s[..rank].to_vec(),
    })
}

fn to_mat(tensor: &Tensor, what: &str) -> Result<Mat<f64>> {
    let (rows, cols) = tensor.dims2().with_context(|| format!("{what} must be a matrix"))?;
    let values = tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    ensure!(values.iter().all(|x| x.is_finite()), "{what} holds NaN or infinite values");
    ensure!(rows > 0 && cols > 0, "{what} is empty ({rows}×{cols})");
    Ok(Mat::from_fn(rows, cols, |i, j| f64::from(values[i * cols + j])))
}

fn multiply(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let mut product = Mat::zeros(a.nrows(), b.ncols());
    matmul::matmul(product.as_mut(), Accum::Replace, a, b, 1.0, Par::Seq);
    product
}

/// U [m, k], s, V [n, k] with A = U·diag(s)·Vᵀ, k = min(m, n), s non-increasing.
fn thin_svd(a: MatRef<'_, f64>) -> Result<(Mat<f64>, Vec<f64>, Mat<f64>)> {
    let (m, n) = a.shape();
    let k = m.min(n);
    let (mut u, mut v, mut s) = (Mat::zeros(m, k), Mat::zeros(n, k), Diag::zeros(k));
    let thin = ComputeSvdVectors::Thin;
    let params = Default::default();
    let mut scratch = MemBuffer::new(svd::svd_scratch::<f64>(m, n, thin, thin, Par::Seq, params));
    let stack = MemStack::new(&mut scratch);
    svd::svd(a, s.as_mut(), Some(u.as_mut()), Some(v.as_mut()), Par::Seq, stack, params)
        .map_err(|e| anyhow!("the SVD of a {m}×{n} matrix failed: {e:?}"))?;
    Ok((u, s.column_vector().iter().copied().collect(), v))
}

/// Q [m, n] with orthonormal columns and R [n, n] upper triangular, A = Q·R (m > n).
fn thin_qr(mut a: Mat<f64>) -> (Mat<f64>, Mat<f64>) {
    let (m, n) = a.shape();
    let block = qr::recommended_block_size::<f64>(m, n);
    let mut coefficients = Mat::zeros(block, n);
    let params = Default::default();
    let mut scratch = MemBuffer::new(qr::qr_in_place_scratch::<f64>(m, n, block, Par::Seq, params));
    let stack = MemStack::new(&mut scratch);
    qr::qr_in_place(a.as_mut(), coefficients.as_mut(), Par::Seq, stack, params);
    let r = Mat::from_fn(n, n, |i, j| if i <= j { a[(i, j)] } else { 0.0 });
    // Below the diagonal are the Householder vectors (their unit diagonal
    // implicit, R above is not read): applied to the identity's first n
    // columns they give Q's.
    let mut q = Mat::identity(m, n);
    let mut scratch =
        MemBuffer::new(householder::apply_block_householder_sequence_on_the_left_in_place_scratch::<f64>(m, block, n));
    householder::apply_block_householder_sequence_on_the_left_in_place_with_conj(
        a.as_ref(),
        coefficients.as_ref(),
        Conj::No,
        q.as_mut(),
        Par::Seq,
        MemStack::new(&mut scratch),
    );
    (q, r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use rand_distr::{Distribution, StandardNormal};

    fn random(rows: usize, cols: usize, seed: u64) -> Result<Tensor> {
        let mut rng = StdRng::seed_from_u64(seed);
        let values: Vec<f32> = (0..rows * cols).map(|_| StandardNormal.sample(&mut rng)).collect();
        Ok(Tensor::from_vec(values, (rows, cols), &Device::Cpu)?)
    }

    fn to_tensor(m: MatRef<'_, f64>) -> Result<Tensor> {
        let values = (0..m.nrows()).flat_map(|i| (0..m.ncols()).map(move |j| m[(i, j)] as f32));
        Ok(Tensor::from_vec(values.collect(), m.shape(), &Device::Cpu)?)
    }

    /// U·diag(s)·Vᵀ [rows, cols] with random orthonormal U and V, as the pair
    /// (U·diag(s), Vᵀ).
    fn with_singular_values(s: &[f64], rows: usize, cols: usize) -> Result<(Tensor, Tensor)> {
        let orthonormal = |n, seed| Ok::<_, anyhow::Error>(thin_qr(to_mat(&random(n, s.len(), seed)?, "")?).0);
        let (u, v) = (orthonormal(rows, 1)?, orthonormal(cols, 2)?);
        let us = Mat::from_fn(rows, s.len(), |i, j| u[(i, j)] * s[j]);
        Ok((to_tensor(us.as_ref())?, to_tensor(v.transpose())?))
    }

    fn frobenius(t: &Tensor) -> Result<f64> {
        Ok(f64::from(t.sqr()?.sum_all()?.to_scalar::<f32>()?).sqrt())
    }

    /// ‖a − b‖_F / ‖b‖_F.
    fn relative(a: &Tensor, b: &Tensor) -> Result<f64> {
        Ok(frobenius(&(a - b)?)? / frobenius(b)?)
    }

    fn rebuilt(f: &Factors) -> Result<Tensor> {
        Ok(f.up.matmul(&f.down)?)
    }

    #[test]
    fn dense_error_is_the_reconstruction_error() -> Result<()> {
        let delta = random(40, 24, 7)?;
        let f = factorize_dense(&delta, RankRule::Fixed(8))?;
        assert_eq!((f.rank, f.up.dims2()?, f.down.dims2()?), (8, (40, 8), (8, 24)));
        assert!((f.error - relative(&rebuilt(&f)?, &delta)?).abs() < 1e-5, "{}", f.error);
        assert!((f.norm - frobenius(&delta)?).abs() < 1e-5 * f.norm);
        // √s on each side: up's columns as long as down's rows.
        let up_columns = f.up.sqr()?.sum(0)?.to_vec1::<f32>()?;
        let down_rows = f.down.sqr()?.sum(1)?.to_vec1::<f32>()?;
        for (a, b) in up_columns.iter().zip(&down_rows) {
            assert!((a - b).abs() < 1e-4 * b, "{a} vs {b}");
        }
        Ok(())
    }

    #[test]
    fn dense_full_and_exact_ranks_reproduce_the_matrix() -> Result<()> {
        let delta = random(30, 20, 3)?;
        let f = factorize_dense(&delta, RankRule::Fixed(20))?;
        assert!(f.error < 1e-6 && relative(&rebuilt(&f)?, &delta)? < 1e-5);

        let low = random(50, 6, 4)?.matmul(&random(6, 30, 5)?)?;
        let f = factorize_dense(&low, RankRule::Fixed(6))?;
        assert!(f.error < 1e-6, "{}", f.error);
        assert!(relative(&rebuilt(&f)?, &low)? < 1e-5);
        Ok(())
    }

    fn assert_same(product: &Factors, dense: &Factors) -> Result<()> {
        assert_eq!(product.rank, dense.rank);
        assert!((product.error - dense.error).abs() < 1e-6);
        assert!((product.norm - dense.norm).abs() < 1e-6 * dense.norm);
        assert!(relative(&rebuilt(product)?, &rebuilt(dense)?)? < 1e-5);
        Ok(())
    }

    #[test]
    fn product_agrees_with_dense() -> Result<()> {
        let (up, down) = (random(64, 12, 11)?, random(12, 48, 12)?);
        let delta = up.matmul(&down)?;
        for rule in [RankRule::Fixed(5), RankRule::Fixed(12), RankRule::SvFro(0.9)] {
            assert_same(&factorize_product(&up, &down, rule)?, &factorize_dense(&delta, rule)?)?;
        }
        // Fixed ranks between R and the layer's limit keep all of R.
        let f = factorize_product(&up, &down, RankRule::Fixed(40))?;
        assert!(f.rank == 12 && f.error < 1e-6);
        Ok(())
    }

    #[test]
    fn product_of_stacked_loras_agrees_with_their_dense_sum() -> Result<()> {
        let (mut ups, mut downs) = (vec![], vec![]);
        let mut delta = Tensor::zeros((96, 80), DType::F32, &Device::Cpu)?;
        for (seed, (rank, weight)) in [(4, 0.7), (8, -0.3), (16, 1.2)].into_iter().enumerate() {
            let up = (random(96, rank, 20 + seed as u64)? * weight)?;
            let down = random(rank, 80, 30 + seed as u64)?;
            delta = (delta + up.matmul(&down)?)?;
            ups.push(up);
            downs.push(down);
        }
        let (up, down) = (Tensor::cat(&ups, 1)?, Tensor::cat(&downs, 0)?);
        assert_eq!(up.dims2()?, (96, 28));
        let rule = RankRule::Fixed(12);
        assert_same(&factorize_product(&up, &down, rule)?, &factorize_dense(&delta, rule)?)
    }

    #[test]
    fn product_wider_than_the_layer_is_factorised_densely() -> Result<()> {
        let (up, down) = (random(24, 40, 41)?, random(40, 64, 42)?);
        let delta = up.matmul(&down)?;
        for rule in [RankRule::Fixed(24), RankRule::Fixed(10), RankRule::SvCumulative(0.8)] {
            assert_same(&factorize_product(&up, &down, rule)?, &factorize_dense(&delta, rule)?)?;
        }
        let error = factorize_product(&up, &down, RankRule::Fixed(30)).unwrap_err();
        assert_eq!(error.to_string(), "rank 30 is larger than this 24×64 layer allows (24)");
        Ok(())
    }

    #[test]
    fn each_rule_keeps_the_rank_its_definition_says() -> Result<()> {
        let s = [10.0, 8.0, 5.0, 4.0, 2.0, 1.0, 0.5, 0.1];
        let (us, vt) = with_singular_values(&s, 40, 30)?;
        let delta = us.matmul(&vt)?;
        // s² cumulative fractions, square-rooted: .690 .883 .948 .987 .997 …
        // s cumulative fractions: .327 .588 .752 .882 .948 .980 …
        // Dynamic rules keep one more than the smallest rank meeting them, as kohya does.
        let cases = [
            (RankRule::Fixed(3), 3),
            (RankRule::SvRatio(1.0), 2),
            (RankRule::SvRatio(4.5), 5),
            (RankRule::SvRatio(50.0), 8),
            (RankRule::SvFro(0.1), 2),
            (RankRule::SvFro(0.9), 4),
            (RankRule::SvFro(0.99), 6),
            (RankRule::SvCumulative(0.75), 4),
            (RankRule::SvCumulative(0.9), 6),
        ];
        let energy: f64 = s.iter().map(|x| x * x).sum();
        for (rule, rank) in cases {
            let discarded: f64 = s[rank..].iter().map(|x| x * x).sum();
            for f in [factorize_dense(&delta, rule)?, factorize_product(&us, &vt, rule)?] {
                assert_eq!(f.rank, rank, "{rule}");
                assert!((f.error - (discarded / energy).sqrt()).abs() < 1e-6, "{rule}");
            }
        }
        Ok(())
    }

    #[test]
    fn a_cap_truncates_to_the_fixed_rank_result() -> Result<()> {
        let s = [10.0, 8.0, 5.0, 4.0, 2.0, 1.0, 0.5, 0.1];
        let (us, vt) = with_singular_values(&s, 40, 30)?;
        let capped = factorize_product(&us, &vt, RankRule::SvFro(0.99))?.at_most(3)?;
        let fixed = factorize_product(&us, &vt, RankRule::Fixed(3))?;
        assert_eq!(capped.rank, 3);
        assert!((capped.error - fixed.error).abs() < 1e-9, "{} vs {}", capped.error, fixed.error);
        let gap = frobenius(&(capped.up.matmul(&capped.down)? - fixed.up.matmul(&fixed.down)?)?)?;
        assert!(gap < 1e-4, "{gap}");
        Ok(())
    }

    #[test]
    fn zero_updates_give_zero_rank_one_factors() -> Result<()> {
        let zeros = |r, c| Tensor::zeros((r, c), DType::F32, &Device::Cpu);
        let dense = factorize_dense(&zeros(12, 7)?, RankRule::SvFro(0.9))?;
        let product = factorize_product(&zeros(30, 4)?, &zeros(4, 20)?, RankRule::Fixed(3))?;
        for f in [dense, product] {
            assert_eq!((f.rank, f.norm, f.error), (1, 0.0, 0.0));
            assert_eq!((frobenius(&f.up)?, frobenius(&f.down)?), (0.0, 0.0));
        }
        Ok(())
    }

    #[test]
    fn impossible_inputs_are_errors() -> Result<()> {
        let layer = Tensor::zeros((320, 768), DType::F32, &Device::Cpu)?;
        let error = factorize_dense(&layer, RankRule::Fixed(2048)).unwrap_err();
        assert_eq!(error.to_string(), "rank 2048 is larger than this 320×768 layer allows (320)");
        let nan = Tensor::new(&[[1f32, f32::NAN], [0.0, 1.0]], &Device::Cpu)?;
        let error = factorize_dense(&nan, RankRule::Fixed(1)).unwrap_err();
        assert_eq!(error.to_string(), "ΔW holds NaN or infinite values");
        let error = factorize_product(&random(8, 3, 1)?, &random(4, 8, 2)?, RankRule::Fixed(1));
        assert!(error.unwrap_err().to_string().contains("the ranks differ"));
        Ok(())
    }

    #[test]
    fn rank_rules_parse_and_print() {
        for (text, rule) in [
            ("16", RankRule::Fixed(16)),
            ("sv_ratio=4", RankRule::SvRatio(4.0)),
            ("sv_fro=0.9", RankRule::SvFro(0.9)),
            ("sv_cumulative=0.9", RankRule::SvCumulative(0.9)),
        ] {
            assert_eq!(text.parse::<RankRule>().unwrap(), rule);
            assert_eq!(rule.to_string(), text);
        }
        let errors = [
            ("", "is not a rank rule"),
            ("0", "at least 1"),
            ("-3", "is not a rank rule"),
            ("sv_ratio=0.5", "must be at least 1"),
            ("sv_cumulative=1.5", "must be in (0, 1]"),
            ("sv_fro=nan", "is not a number"),
            ("sv_foo=0.3", "expected sv_ratio, sv_fro or sv_cumulative"),
        ];
        for (text, message) in errors {
            let error = text.parse::<RankRule>().unwrap_err().to_string();
            assert!(error.contains(message), "{text}: {error}");
        }
    }
}
