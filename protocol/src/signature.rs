//! Ed25519 signature verification as rule V8 defines it (SPEC.md §3.3),
//! for one signature or for many at once.
//!
//! Why not ed25519-dalek's `verify_strict`: it evaluates the *cofactorless*
//! equation, and no batch verifier can give the same verdicts as the
//! cofactorless equation for every input (a random linear combination
//! cancels a small-order discrepancy with probability 1/8). A court's
//! verdict must not depend on whether a verifier checked entries one at a
//! time or a thousand at a time, nor on a random draw. The spec therefore
//! uses the **cofactored** equation `[8]([S]B − [k]A − R) = 0`, which RFC
//! 8032 §5.1.7 allows and ZIP 215 chose for the same reason, together with
//! the strictness checks that remain meaningful: canonical `S`, canonical
//! encodings of `A` and `R`, neither of small order. Batch verification
//! with this equation accepts a set of signatures exactly when each one
//! alone is accepted (up to a 2⁻¹²⁸ chance of accepting a bad one), and
//! when a batch fails each signature is checked alone, so verdicts are
//! always per signature.
//!
//! A signature that honest RFC 8032 signing produces passes here and in
//! every other Ed25519 verifier. The two equations only disagree on
//! signatures crafted with a small-order component in `R` or `A`: those
//! pass here and fail cofactorless verifiers (OpenSSL, `verify_strict`).
//! The spec's vectors include one (`mixed-order-r`).
//!
//! The batch weights are derived from a hash of the whole batch (all
//! challenges and `S` values), not drawn at random: the crate stays free
//! of randomness, and an author cannot choose signatures after seeing the
//! weights, because the weights depend on the signatures.

use std::collections::HashMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

use crate::ids::AgencyId;

/// Domain separation for the batch weights.
const WEIGHTS_DOMAIN: &[u8] = b"custodia/1 ed25519 batch weights";

/// Whether 32 bytes are a canonical encoding of a curve point that is not
/// of small order, and the point if so (§3.3 checks 2 to 4).
pub(crate) fn strict_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if !canonical_y(bytes) {
        return None;
    }
    let point = CompressedEdwardsY(*bytes).decompress()?;
    // A canonical y whose point has x = 0 is y = 1 or y = p − 1: the
    // identity and the point of order 2, both refused here, so the sign
    // bit of x = 0 needs no check of its own.
    (!point.is_small_order()).then_some(point)
}

/// Whether the 255-bit y coordinate is below p = 2²⁵⁵ − 19. The encodings
/// with y ≥ p are the 19 values p..2²⁵⁵−1: low byte ≥ 0xED, then thirty
/// 0xFF bytes, then 0x7F (the top bit is x's sign).
fn canonical_y(bytes: &[u8; 32]) -> bool {
    !(bytes[31] & 0x7F == 0x7F && bytes[1..31].iter().all(|&b| b == 0xFF) && bytes[0] >= 0xED)
}

/// A signature that passed the checks made before the equation: `S`
/// canonical, `R` a canonical point not of small order.
#[derive(Clone, Copy)]
struct Prepared {
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

/// Checks `S` and `R` (§3.3 checks 1 to 4 for the signature's half) and
/// starts the challenge hash `SHA-512(R || A || …)`; the message follows.
fn start(agency: &AgencyId, sig: &[u8; 64]) -> Option<(EdwardsPoint, Scalar, Sha512)> {
    let mut s = [0u8; 32];
    s.copy_from_slice(&sig[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s))?;
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&sig[..32]);
    let r = strict_point(&r_bytes)?;
    let h = Sha512::new()
        .chain_update(r_bytes)
        .chain_update(agency.as_bytes());
    Some((r, s, h))
}

/// The challenge `k = SHA-512(R || A || M) mod L` from a finished hash.
fn challenge(h: Sha512) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// Checks `S` and `R` and computes the challenge over a message given in
/// parts.
fn prepare(agency: &AgencyId, parts: &[&[u8]], sig: &[u8; 64]) -> Option<Prepared> {
    let (r, s, mut h) = start(agency, sig)?;
    for p in parts {
        h.update(p);
    }
    Some(Prepared {
        r,
        s,
        k: challenge(h),
    })
}

/// The cofactored equation for one signature: `[8]([S]B − [k]A − R) = 0`.
fn equation_holds(a: &EdwardsPoint, p: &Prepared) -> bool {
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &-a, &p.s);
    (sb_minus_ka - p.r).mul_by_cofactor().is_identity()
}

/// Verifies one signature over `msg` (SPEC.md §3.3).
pub fn verify(agency: &AgencyId, msg: &[u8], sig: &[u8; 64]) -> bool {
    verify_parts(agency, &[msg], sig)
}

/// Verifies one signature over the concatenation of `parts`, hashing them
/// in place (a large message need not be copied into one buffer).
pub fn verify_parts(agency: &AgencyId, parts: &[&[u8]], sig: &[u8; 64]) -> bool {
    let Some(a) = strict_point(agency.as_bytes()) else {
        return false;
    };
    prepare(agency, parts, sig).is_some_and(|p| equation_holds(&a, &p))
}

/// One signature over a message that arrives in parts (a bundle read as a
/// stream): the same verdict as [`verify`] over the concatenation.
pub struct Streaming {
    /// `None` once a check that needs no message has refused it.
    state: Option<(EdwardsPoint, EdwardsPoint, Scalar, Sha512)>,
}

impl Streaming {
    /// Starts checking `sig` by `agency`; feed the message with
    /// [`Streaming::update`].
    pub fn new(agency: &AgencyId, sig: &[u8; 64]) -> Self {
        let begin = || {
            let a = strict_point(agency.as_bytes())?;
            let (r, s, h) = start(agency, sig)?;
            Some((a, r, s, h))
        };
        Streaming { state: begin() }
    }

    /// Feeds the next part of the message.
    pub fn update(&mut self, part: &[u8]) {
        if let Some((_, _, _, h)) = &mut self.state {
            h.update(part);
        }
    }

    /// The verdict.
    pub fn finish(self) -> bool {
        self.state.is_some_and(|(a, r, s, h)| {
            equation_holds(
                &a,
                &Prepared {
                    r,
                    s,
                    k: challenge(h),
                },
            )
        })
    }
}

impl std::fmt::Debug for Streaming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("signature::Streaming")
    }
}

/// Many signatures checked together: one multi-scalar multiplication for
/// the whole batch, with one term per distinct key rather than per
/// signature (a case's entries come from a handful of agencies). Verdicts
/// are the same as [`verify`]'s for each signature.
#[derive(Default)]
pub struct Batch {
    /// Distinct keys, each decoded once; `None` for a refused key.
    keys: Vec<Option<EdwardsPoint>>,
    key_index: HashMap<AgencyId, usize>,
    /// Per signature: its key's index and the prepared signature, or
    /// `None` when a check before the equation already refused it.
    items: Vec<Option<(usize, Prepared)>>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// A batch with room for `n` signatures.
    pub fn with_capacity(n: usize) -> Self {
        Batch {
            items: Vec::with_capacity(n),
            ..Self::default()
        }
    }

    /// The number of signatures added.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no signature was added.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds a signature by `agency` over `msg`; its verdict will be at this
    /// position in [`Batch::verify`]'s result.
    pub fn push(&mut self, agency: &AgencyId, msg: &[u8], sig: &[u8; 64]) {
        self.push_parts(agency, &[msg], sig);
    }

    /// Adds a signature by `agency` over the concatenation of `parts`,
    /// hashed where they lie (no copy into one message).
    pub fn push_parts(&mut self, agency: &AgencyId, parts: &[&[u8]], sig: &[u8; 64]) {
        let key = match self.key_index.get(agency) {
            Some(&i) => i,
            None => {
                self.keys.push(strict_point(agency.as_bytes()));
                self.key_index.insert(*agency, self.keys.len() - 1);
                self.keys.len() - 1
            }
        };
        let item = match self.keys[key] {
            Some(_) => prepare(agency, parts, sig).map(|p| (key, p)),
            None => None,
        };
        self.items.push(item);
    }

    /// The verdict for every signature, in the order they were added.
    pub fn verify(self) -> Vec<bool> {
        let mut verdicts: Vec<bool> = self.items.iter().map(Option::is_some).collect();
        let candidates: Vec<(usize, Prepared)> = self.items.iter().flatten().copied().collect();
        if candidates.is_empty() {
            return verdicts;
        }
        if candidates.len() == 1 || !self.combined_equation_holds(&candidates) {
            // Name each bad signature: check the candidates one by one.
            for (verdict, item) in verdicts.iter_mut().zip(&self.items) {
                if let Some((key, p)) = item {
                    *verdict = self.keys[*key].is_some_and(|a| equation_holds(&a, p));
                }
            }
        }
        verdicts
    }

    /// `[8]( [Σ zᵢSᵢ]B − Σⱼ [Σ_{i by j} zᵢkᵢ]Aⱼ − Σ [zᵢ]Rᵢ ) = 0`, with
    /// weights zᵢ derived from the batch.
    fn combined_equation_holds(&self, candidates: &[(usize, Prepared)]) -> bool {
        let weights = weights(candidates);
        let mut b_coefficient = Scalar::ZERO;
        let mut key_coefficients = vec![Scalar::ZERO; self.keys.len()];
        let mut scalars = Vec::with_capacity(candidates.len() + self.keys.len() + 1);
        let mut points = Vec::with_capacity(candidates.len() + self.keys.len() + 1);
        for ((key, p), z) in candidates.iter().zip(&weights) {
            b_coefficient += z * p.s;
            key_coefficients[*key] -= z * p.k;
            scalars.push(-z);
            points.push(p.r);
        }
        for (a, c) in self.keys.iter().zip(key_coefficients) {
            if let Some(a) = a {
                scalars.push(c);
                points.push(*a);
            }
        }
        scalars.push(b_coefficient);
        points.push(ED25519_BASEPOINT_POINT);
        EdwardsPoint::vartime_multiscalar_mul(scalars, points)
            .mul_by_cofactor()
            .is_identity()
    }
}

/// One 128-bit weight per signature, from a hash of every signature's
/// challenge and `S` (which together bind R, A, M and S).
fn weights(candidates: &[(usize, Prepared)]) -> Vec<Scalar> {
    let mut h = Sha512::new();
    h.update(WEIGHTS_DOMAIN);
    h.update((candidates.len() as u64).to_le_bytes());
    for (_, p) in candidates {
        h.update(p.k.as_bytes());
        h.update(p.s.as_bytes());
    }
    let seed = h.finalize();
    let mut out = Vec::with_capacity(candidates.len());
    let mut counter = 0u64;
    while out.len() < candidates.len() {
        let block = Sha512::new()
            .chain_update(seed)
            .chain_update(counter.to_le_bytes())
            .finalize();
        counter += 1;
        for quarter in block.chunks_exact(16) {
            if out.len() == candidates.len() {
                break;
            }
            let mut z = [0u8; 16];
            z.copy_from_slice(quarter);
            out.push(Scalar::from(u128::from_le_bytes(z)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use curve25519_dalek::constants::EIGHT_TORSION;

    fn id(n: u8) -> Identity {
        Identity::from_seed([n; 32])
    }

    /// Signs like RFC 8032 but adds a small-order point `t` to R, which
    /// the cofactored equation ignores and the cofactorless one does not.
    fn sign_with_torsion_r(who: &Identity, msg: &[u8], t: EdwardsPoint) -> [u8; 64] {
        let h = Sha512::digest(who.seed());
        let mut a = [0u8; 32];
        a.copy_from_slice(&h[..32]);
        let a = Scalar::from_bytes_mod_order(curve25519_dalek::scalar::clamp_integer(a));
        let r = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(&h[32..])
                .chain_update(msg)
                .finalize()
                .into(),
        );
        let big_r = (EdwardsPoint::mul_base(&r) + t).compress().to_bytes();
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(big_r)
                .chain_update(who.agency().as_bytes())
                .chain_update(msg)
                .finalize()
                .into(),
        );
        let s = r + k * a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&big_r);
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }

    #[test]
    fn honest_signatures_verify_and_altered_ones_do_not() {
        let (a, b) = (id(1), id(2));
        let sig = a.sign(b"hello");
        assert!(verify(&a.agency(), b"hello", &sig));
        assert!(!verify(&a.agency(), b"hellO", &sig));
        assert!(!verify(&b.agency(), b"hello", &sig));
        let mut flipped = sig;
        flipped[40] ^= 1;
        assert!(!verify(&a.agency(), b"hello", &flipped));
        assert!(verify_parts(&a.agency(), &[b"hel", b"", b"lo"], &sig));
        assert!(!verify_parts(&a.agency(), &[b"hel", b"lo!"], &sig));
    }

    #[test]
    fn a_streamed_message_gets_the_verdict_of_the_whole() {
        let a = id(5);
        let sig = sign_with_torsion_r(&a, b"streamed message", EIGHT_TORSION[3]);
        let honest = a.sign(b"streamed message");
        for (sig, key, parts, want) in [
            (
                honest,
                a.agency(),
                vec![&b"stream"[..], b"ed message"],
                true,
            ),
            (
                sig,
                a.agency(),
                vec![&b"streamed "[..], b"", b"message"],
                true,
            ),
            (
                honest,
                a.agency(),
                vec![&b"streamed"[..], b"message"],
                false,
            ),
            (
                honest,
                id(6).agency(),
                vec![&b"streamed message"[..]],
                false,
            ),
            ([0u8; 64], a.agency(), vec![&b"streamed message"[..]], false),
        ] {
            let whole: Vec<u8> = parts.concat();
            assert_eq!(verify(&key, &whole, &sig), want);
            let mut st = Streaming::new(&key, &sig);
            for p in &parts {
                st.update(p);
            }
            assert_eq!(st.finish(), want, "{parts:?}");
        }
    }

    #[test]
    fn non_canonical_s_is_refused() {
        let a = id(1);
        let sig = a.sign(b"m");
        // S + L still satisfies the equation; it must be refused anyway.
        let l = (Scalar::ZERO - Scalar::ONE).to_bytes(); // L − 1
        let mut s = [0u8; 32];
        s.copy_from_slice(&sig[32..]);
        let (s_plus_l_minus_1, c1) = add_le(&s, &l);
        let (s_plus_l, c2) = add_le(&s_plus_l_minus_1, &Scalar::ONE.to_bytes());
        assert_eq!(c1 + c2, 0, "S + L < 2²⁵⁶ for a reduced S");
        let mut bad = sig;
        bad[32..].copy_from_slice(&s_plus_l);
        assert!(!verify(&a.agency(), b"m", &bad));
    }

    fn add_le(x: &[u8; 32], y: &[u8; 32]) -> ([u8; 32], u8) {
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = x[i] as u16 + y[i] as u16 + carry;
            out[i] = v as u8;
            carry = v >> 8;
        }
        (out, carry as u8)
    }

    #[test]
    fn small_order_and_non_canonical_points_are_refused() {
        for t in EIGHT_TORSION.iter() {
            let enc = t.compress().to_bytes();
            assert!(strict_point(&enc).is_none(), "small order {enc:02x?}");
            // R = a small-order point, S = 0 fails whatever the equation.
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&enc);
            assert!(!verify(&id(1).agency(), b"m", &sig));
            // A small-order key "signs" everything with R = identity, S = 0
            // under the cofactored equation: the key itself must be refused.
            let identity = EdwardsPoint::default().compress().to_bytes();
            let mut any = [0u8; 64];
            any[..32].copy_from_slice(&identity);
            assert!(!verify(&AgencyId(enc), b"anything", &any));
        }
        // y ≥ p: every one of the 19 non-canonical y values is refused
        // (those that decode at all would decode to a point whose
        // canonical encoding is different).
        for low in 0xEDu8..=0xFF {
            let mut enc = [0xFFu8; 32];
            enc[0] = low;
            enc[31] = 0x7F;
            assert!(!canonical_y(&enc));
            assert!(strict_point(&enc).is_none());
        }
        let basepoint = ED25519_BASEPOINT_POINT.compress().to_bytes();
        assert!(canonical_y(&basepoint) && strict_point(&basepoint).is_some());
    }

    #[test]
    fn a_small_order_component_in_r_is_ignored_as_the_spec_says() {
        let a = id(3);
        let t = EIGHT_TORSION[1];
        let sig = sign_with_torsion_r(&a, b"m", t);
        assert!(verify(&a.agency(), b"m", &sig), "cofactored equation holds");
        // The cofactorless equation (ed25519-dalek verify_strict) refuses
        // the same signature: this is the documented difference.
        let key = ed25519_dalek::VerifyingKey::from_bytes(a.agency().as_bytes()).expect("key");
        let dalek_sig = ed25519_dalek::Signature::from_bytes(&sig);
        assert!(key.verify_strict(b"m", &dalek_sig).is_err());
        // Still bound to the message and the key.
        assert!(!verify(&a.agency(), b"n", &sig));
        assert!(!verify(&id(4).agency(), b"m", &sig));
    }

    #[test]
    fn a_batch_gives_each_signature_its_own_verdict() {
        let keys = [id(1), id(2), id(3)];
        let mut expected = Vec::new();
        let mut batch = Batch::new();
        for i in 0..200u32 {
            let who = &keys[i as usize % 3];
            let msg = i.to_le_bytes();
            let mut sig = match i % 7 {
                3 => sign_with_torsion_r(who, &msg, EIGHT_TORSION[(i as usize) % 8]),
                _ => who.sign(&msg),
            };
            let key = match i % 11 {
                5 => keys[(i as usize + 1) % 3].agency(), // wrong key
                _ => who.agency(),
            };
            if i % 13 == 4 {
                sig[10] ^= 0x20; // R altered
            }
            if i % 17 == 9 {
                sig[63] ^= 0x80; // S ≥ L
            }
            expected.push(verify(&key, &msg, &sig));
            batch.push(&key, &msg, &sig);
        }
        assert!(expected.iter().any(|&v| v) && expected.iter().any(|&v| !v));
        assert_eq!(batch.verify(), expected);
    }

    #[test]
    fn an_all_good_batch_and_batches_of_one_agree_with_single_verification() {
        let a = id(9);
        let mut batch = Batch::with_capacity(64);
        for i in 0..64u8 {
            batch.push(&a.agency(), &[i], &a.sign(&[i]));
        }
        assert_eq!(batch.len(), 64);
        assert!(batch.verify().iter().all(|&v| v));
        let mut one = Batch::new();
        one.push(&a.agency(), b"x", &a.sign(b"y"));
        assert_eq!(one.verify(), vec![false]);
        assert!(Batch::new().is_empty());
        assert!(Batch::new().verify().is_empty());
        // A refused key refuses its signatures without poisoning others.
        let mut mixed = Batch::new();
        let weak = AgencyId(EdwardsPoint::default().compress().to_bytes());
        mixed.push(&weak, b"x", &[0; 64]);
        mixed.push(&a.agency(), b"x", &a.sign(b"x"));
        assert_eq!(mixed.verify(), vec![false, true]);
    }
}
