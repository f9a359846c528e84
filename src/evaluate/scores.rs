//! The evaluation scores, as pure functions of image and text embeddings.
//!
//! They follow the DreamBooth paper (Ruiz et al. 2023, §4.1): DINO (subject
//! fidelity: generated vs reference images, self-supervised ViT features,
//! which tell apart subjects of the same class), CLIP-I (the same in CLIP's
//! image space) and CLIP-T (prompt fidelity: an image vs its prompt). The
//! rest (memorisation, diversity, gap, prior drift) are Easel's, built from
//! the same cosine.
//!
//! Embeddings are expected L2-normalised (as `embed` returns them), but the
//! cosine divides by the norms anyway, so a caller's raw vectors score the
//! same. A score over nothing is `None`, never NaN.

/// cos(a, b) = a·b / (‖a‖‖b‖), summed in f64; 0 when either vector is zero
/// (a blank embedding resembles nothing) or the lengths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    let norms = (aa * bb).sqrt();
    if norms == 0.0 { 0.0 } else { (dot / norms) as f32 }
}

/// The mean of `values`, `None` when there are none.
fn mean(values: impl IntoIterator<Item = f32>) -> Option<f32> {
    let (sum, count) = values.into_iter().fold((0.0f64, 0usize), |(s, n), v| (s + f64::from(v), n + 1));
    (count > 0).then(|| (sum / count as f64) as f32)
}

/// (1/|G||R|) Σ_g Σ_r cos(g, r): every generated image against every
/// reference image. With DINO embeddings this is DreamBooth's DINO score,
/// with CLIP image embeddings its CLIP-I.
pub fn mean_cross_cosine(generated: &[Vec<f32>], reference: &[Vec<f32>]) -> Option<f32> {
    mean(generated.iter().flat_map(|g| reference.iter().map(move |r| cosine(g, r))))
}

/// (1/N) Σ_i cos(image_i, text_i): each image against its own prompt
/// (DreamBooth's CLIP-T). Pairs beyond the shorter list are ignored.
pub fn clip_t(images: &[Vec<f32>], texts: &[Vec<f32>]) -> Option<f32> {
    mean(images.iter().zip(texts).map(|(i, t)| cosine(i, t)))
}

/// (1/|G|) Σ_g max_t cos(g, t): how close each generated image comes to its
/// nearest training image. Near 1, the LoRA reproduces its training set.
pub fn memorisation(generated: &[Vec<f32>], training: &[Vec<f32>]) -> Option<f32> {
    if training.is_empty() {
        return None;
    }
    mean(generated.iter().map(|g| training.iter().map(|t| cosine(g, t)).fold(f32::NEG_INFINITY, f32::max)))
}

/// For each group (one prompt's images across seeds) 1 − the mean cosine
/// over its unordered pairs, averaged over the groups with at least two
/// images: 0 when every seed gives the same picture.
pub fn diversity(groups: &[Vec<Vec<f32>>]) -> Option<f32> {
    mean(groups.iter().filter_map(|group| {
        let pairs = group.iter().enumerate().flat_map(|(i, a)| group[i + 1..].iter().map(move |b| cosine(a, b)));
        mean(pairs).map(|similarity| 1.0 - similarity)
    }))
}

/// in − out: how much better a score is on prompts like the training
/// captions than on new ones (a large gap: the LoRA only knows its captions).
pub fn gap(in_distribution: Option<f32>, out_of_distribution: Option<f32>) -> Option<f32> {
    Some(in_distribution? - out_of_distribution?)
}

/// 1 − (1/N) Σ_i cos(at_scale_i, at_zero_i): images of the bare class prompt
/// ("a photo of a dog") at this LoRA scale against the same prompt and seed
/// at scale 0. Near 0, the LoRA has left the class prior alone; pairs beyond
/// the shorter list are ignored.
pub fn prior_drift(class_at_scale: &[Vec<f32>], class_at_zero: &[Vec<f32>]) -> Option<f32> {
    mean(class_at_scale.iter().zip(class_at_zero).map(|(s, z)| cosine(s, z))).map(|similarity| 1.0 - similarity)
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: [f32; 2] = [1.0, 0.0];
    const Y: [f32; 2] = [0.0, 1.0];

    fn v(values: &[f32]) -> Vec<f32> {
        values.to_vec()
    }

    fn close(actual: Option<f32>, expected: f32) {
        let actual = actual.expect("a score");
        assert!((actual - expected).abs() < 1e-6, "{actual} vs {expected}");
    }

    #[test]
    fn cosine_of_known_angles() {
        assert!((cosine(&X, &X) - 1.0).abs() < 1e-7);
        assert_eq!(cosine(&X, &Y), 0.0);
        assert!((cosine(&X, &[-1.0, 0.0]) + 1.0).abs() < 1e-7);
        // Unnormalised input: 45°.
        assert!((cosine(&[3.0, 0.0], &[2.0, 2.0]) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &X), 0.0);
        assert_eq!(cosine(&[1.0], &X), 0.0);
    }

    #[test]
    fn mean_cross_cosine_averages_every_pair() {
        // Pairs: (X,X)=1, (X,Y)=0, (Y,X)=0, (Y,Y)=1.
        close(mean_cross_cosine(&[v(&X), v(&Y)], &[v(&X), v(&Y)]), 0.5);
        close(mean_cross_cosine(&[v(&X)], &[v(&X), v(&X)]), 1.0);
        assert_eq!(mean_cross_cosine(&[], &[v(&X)]), None);
        assert_eq!(mean_cross_cosine(&[v(&X)], &[]), None);
    }

    #[test]
    fn clip_t_pairs_image_i_with_text_i() {
        // Matched pairs only: (X,X)=1 and (Y,X)=0; the cross pairs do not count.
        close(clip_t(&[v(&X), v(&Y)], &[v(&X), v(&X)]), 0.5);
        close(clip_t(&[v(&X), v(&Y)], &[v(&X), v(&Y)]), 1.0);
        assert_eq!(clip_t(&[], &[]), None);
    }

    #[test]
    fn memorisation_takes_the_nearest_training_image() {
        // X finds itself (1); the diagonal finds X or Y at 45°.
        let diagonal = v(&[1.0, 1.0]);
        close(memorisation(&[v(&X), diagonal], &[v(&X), v(&Y)]), (1.0 + std::f32::consts::FRAC_1_SQRT_2) / 2.0);
        close(memorisation(&[v(&X)], &[v(&[-1.0, 0.0])]), -1.0);
        assert_eq!(memorisation(&[v(&X)], &[]), None);
        assert_eq!(memorisation(&[], &[v(&X)]), None);
    }

    #[test]
    fn diversity_is_one_minus_within_group_similarity() {
        let same = vec![v(&X), v(&X), v(&X)];
        let orthogonal = vec![v(&X), v(&Y)];
        let single = vec![v(&X)];
        close(diversity(std::slice::from_ref(&same)), 0.0);
        close(diversity(std::slice::from_ref(&orthogonal)), 1.0);
        // The single-image group has no pairs and is left out of the mean.
        close(diversity(&[same, orthogonal, single.clone()]), 0.5);
        // Three images: pairs (X,Y)=0, (X,X)=1, (Y,X)=0 → 1 − 1/3.
        close(diversity(&[vec![v(&X), v(&Y), v(&X)]]), 2.0 / 3.0);
        assert_eq!(diversity(&[single]), None);
        assert_eq!(diversity(&[]), None);
    }

    #[test]
    fn gap_needs_both_sides() {
        close(gap(Some(0.8), Some(0.5)), 0.3);
        assert_eq!(gap(Some(0.8), None), None);
        assert_eq!(gap(None, Some(0.5)), None);
    }

    #[test]
    fn prior_drift_compares_the_same_seed() {
        close(prior_drift(&[v(&X), v(&Y)], &[v(&X), v(&Y)]), 0.0);
        // Pairs (X,X)=1 and (X,Y)=0 → 1 − 1/2.
        close(prior_drift(&[v(&X), v(&X)], &[v(&X), v(&Y)]), 0.5);
        assert_eq!(prior_drift(&[], &[]), None);
    }
}
