//! What to send: the mix of flows (`--mix`), which payer pays (`--distribution`), amounts, and
//! the random numbers behind them.
//!
//! A *flow* is what a terminal does for one sale: a purchase is one request; authorize then
//! capture is two; a refund flow is a purchase and then a partial refund of it. Flows are drawn
//! by weight; every terminal message kind authd answers appears in at least one flow.

use std::fmt;

/// Most kinds a mix may name (one entry per flow kind).
pub const MIX_ENTRIES_MAX: usize = FlowKind::ALL.len();

/// One sale's sequence of requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FlowKind {
    /// PURCHASE.
    Purchase,
    /// AUTHORIZE, then CAPTURE (final) of the whole amount.
    AuthorizeCapture,
    /// AUTHORIZE, then VOID.
    AuthorizeVoid,
    /// AUTHORIZE, INCREMENT, then CAPTURE (final) of what is held.
    AuthorizeIncrementCapture,
    /// PURCHASE, then REFUND of half of it.
    Refund,
    /// PURCHASE, then REVERSAL of it (the terminal gave up on it).
    Reversal,
    /// BALANCE_CHECK.
    BalanceCheck,
    /// ECHO (round trip without the books).
    Echo,
    /// OFFER, then OFFER_CANCEL.
    OfferCancel,
    /// OFFER; the simulated payer device accepts it with the PIN after the think time; the flow
    /// ends with the OFFER_OUTCOME push to the terminal.
    Offer,
    /// OFFER, OFFER_STATUS (the terminal asks where it stands), then OFFER_CANCEL.
    OfferStatus,
    /// PURCHASE of digital goods, then REPORT_FAILED_PROVISIONING of half of it (the goods
    /// could not be delivered: the payer is refunded, a dispute recorded).
    FailedProvisioning,
}

impl FlowKind {
    /// Every kind, in mix-name order.
    pub const ALL: [FlowKind; 12] = [
        FlowKind::Purchase,
        FlowKind::AuthorizeCapture,
        FlowKind::AuthorizeVoid,
        FlowKind::AuthorizeIncrementCapture,
        FlowKind::Refund,
        FlowKind::Reversal,
        FlowKind::BalanceCheck,
        FlowKind::Echo,
        FlowKind::OfferCancel,
        FlowKind::Offer,
        FlowKind::OfferStatus,
        FlowKind::FailedProvisioning,
    ];

    /// The name used in `--mix`.
    pub fn name(self) -> &'static str {
        match self {
            FlowKind::Purchase => "purchase",
            FlowKind::AuthorizeCapture => "authorize_capture",
            FlowKind::AuthorizeVoid => "authorize_void",
            FlowKind::AuthorizeIncrementCapture => "authorize_increment_capture",
            FlowKind::Refund => "refund",
            FlowKind::Reversal => "reversal",
            FlowKind::BalanceCheck => "balance_check",
            FlowKind::Echo => "echo",
            FlowKind::OfferCancel => "offer_cancel",
            FlowKind::Offer => "offer",
            FlowKind::OfferStatus => "offer_status",
            FlowKind::FailedProvisioning => "failed_provisioning",
        }
    }

    fn from_name(name: &str) -> Option<FlowKind> {
        FlowKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// Weighted flow kinds, as given by `--mix purchase=80,authorize_capture=15,refund=5`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    /// (kind, cumulative weight), in the order given.
    cumulative: Vec<(FlowKind, u32)>,
}

/// Why a `--mix` did not parse.
#[derive(Debug, PartialEq, Eq)]
pub struct MixError(String);

impl fmt::Display for MixError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for MixError {}

impl Mix {
    /// Parses `name=weight,...`; weights are relative (they need not add up to 100).
    pub fn parse(text: &str) -> Result<Mix, MixError> {
        let names = || FlowKind::ALL.map(FlowKind::name).join(", ");
        let mut cumulative: Vec<(FlowKind, u32)> = Vec::new();
        let mut total: u32 = 0;
        for entry in text.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            let (name, weight) = entry
                .split_once('=')
                .ok_or_else(|| MixError(format!("--mix entry '{entry}' is not name=weight")))?;
            let kind = FlowKind::from_name(name.trim())
                .ok_or_else(|| MixError(format!("--mix: unknown kind '{name}'; known: {}", names())))?;
            let weight: u32 = weight.trim().parse().map_err(|_| {
                MixError(format!(
                    "--mix: weight '{weight}' of {name} is not a whole number"
                ))
            })?;
            if weight > 1_000_000 {
                return Err(MixError(format!(
                    "--mix: weight {weight} of {name} is above 1000000"
                )));
            }
            if cumulative.iter().any(|(seen, _)| *seen == kind) {
                return Err(MixError(format!("--mix names {name} twice")));
            }
            if weight == 0 {
                continue;
            }
            total += weight;
            cumulative.push((kind, total));
        }
        if total == 0 {
            return Err(MixError(format!(
                "--mix has no kind with a positive weight; example: purchase=80,authorize_capture=15,refund=5 (known: {})",
                names()
            )));
        }
        debug_assert!(cumulative.len() <= MIX_ENTRIES_MAX);
        Ok(Mix { cumulative })
    }

    /// The kind for a uniform random number.
    #[inline]
    pub fn pick(&self, random: u64) -> FlowKind {
        let total = self.cumulative.last().map_or(1, |(_, total)| *total);
        let point = (random % u64::from(total)) as u32;
        for (kind, upto) in &self.cumulative {
            if point < *upto {
                return *kind;
            }
        }
        self.cumulative[0].0
    }

    /// True if the mix draws `kind` at all.
    pub fn contains(&self, kind: FlowKind) -> bool {
        self.cumulative.iter().any(|(seen, _)| *seen == kind)
    }

    /// True if every flow the mix draws is one measured request that writes a record
    /// (PURCHASE, or OFFER: its accept and outcome are measured apart), so every measured
    /// request is sent when due and waits for the log: the disk floor holds for them.
    pub fn first_requests_all_logged(&self) -> bool {
        self.cumulative
            .iter()
            .all(|(kind, _)| matches!(kind, FlowKind::Purchase | FlowKind::Offer))
    }

    /// Each kind's share, in percent, for the report.
    pub fn shares(&self) -> Vec<(FlowKind, f64)> {
        let total = f64::from(self.cumulative.last().map_or(1, |(_, total)| *total));
        let mut previous = 0;
        self.cumulative
            .iter()
            .map(|(kind, upto)| {
                let share = f64::from(upto - previous) * 100.0 / total;
                previous = *upto;
                (*kind, share)
            })
            .collect()
    }
}

/// A small, fast, non-cryptographic generator (wyrand): one multiply per number, no allocation.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let product = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        ((product >> 64) ^ product) as u64
    }

    /// A uniform number in [0, 1).
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform number in `low..=high`.
    #[inline]
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        debug_assert!(low <= high);
        low + self.next_u64() % (high - low + 1)
    }
}

/// Which payer a flow picks.
#[derive(Clone, Debug)]
pub enum Distribution {
    /// Every payer equally likely.
    Uniform,
    /// Payer of rank k (1-based, index k - 1) with probability proportional to 1 / k^s.
    Zipf(f64),
}

impl Distribution {
    /// Parses `uniform` or `zipf:S` (S > 0).
    pub fn parse(text: &str) -> Result<Distribution, String> {
        if text == "uniform" {
            return Ok(Distribution::Uniform);
        }
        if let Some(exponent) = text.strip_prefix("zipf:") {
            let exponent: f64 = exponent
                .parse()
                .map_err(|_| format!("--distribution zipf:S needs a number S, got '{exponent}'"))?;
            if !(exponent > 0.0 && exponent <= 10.0) {
                return Err(format!("--distribution zipf:S needs 0 < S <= 10, got {exponent}"));
            }
            return Ok(Distribution::Zipf(exponent));
        }
        Err(format!(
            "--distribution must be uniform or zipf:S (for example zipf:0.99), got '{text}'"
        ))
    }

    /// A sampler over `count` payers.
    pub fn sampler(&self, count: u64) -> PayerSampler {
        assert!(count > 0, "at least one payer");
        match self {
            Distribution::Uniform => PayerSampler::Uniform(count),
            Distribution::Zipf(exponent) => PayerSampler::Zipf(Zipf::new(count, *exponent)),
        }
    }
}

/// Draws payer indexes.
#[derive(Clone, Debug)]
pub enum PayerSampler {
    /// Uniform over 0..count.
    Uniform(u64),
    /// Zipf over ranks; index = rank - 1.
    Zipf(Zipf),
}

impl PayerSampler {
    /// A payer index.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            PayerSampler::Uniform(count) => rng.next_u64() % count,
            PayerSampler::Zipf(zipf) => zipf.sample(rng) - 1,
        }
    }
}

/// Payers drawn at a time by [`PayerDraws`].
pub const PAYERS_DRAWN_AHEAD: usize = 16;

/// Payers drawn ahead of their flows, each with its account number. The accounts are looked
/// up together, in a loop of independent reads, so that their cache misses overlap: with
/// 100,000 payers the table of account numbers misses on almost every draw, and taken one per
/// flow those misses were a seventh of loadgen's CPU at 500,000 flows per second.
#[derive(Clone, Debug)]
pub struct PayerDraws {
    /// (payer index, account number), used from `next` on.
    drawn: [(u32, u64); PAYERS_DRAWN_AHEAD],
    next: usize,
}

impl Default for PayerDraws {
    fn default() -> PayerDraws {
        PayerDraws {
            drawn: [(0, 0); PAYERS_DRAWN_AHEAD],
            next: PAYERS_DRAWN_AHEAD,
        }
    }
}

impl PayerDraws {
    /// The next payer's index and account number; `accounts` has one per index `sampler`
    /// draws.
    #[inline]
    pub fn take(&mut self, sampler: &PayerSampler, accounts: &[u64], rng: &mut Rng) -> (u32, u64) {
        if self.next == PAYERS_DRAWN_AHEAD {
            for slot in &mut self.drawn {
                slot.0 = sampler.sample(rng) as u32;
            }
            for slot in &mut self.drawn {
                slot.1 = accounts[slot.0 as usize];
            }
            self.next = 0;
        }
        let drawn = self.drawn[self.next];
        self.next += 1;
        drawn
    }
}

/// Zipf over ranks 1..=n by rejection-inversion (Hörmann and Derflinger, 1996): constant time
/// and memory per sample whatever n, no table. The same algorithm as Apache Commons' and
/// `rand_distr`'s Zipf samplers.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: f64,
    exponent: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    squeeze: f64,
}

impl Zipf {
    /// The distribution over ranks 1..=n with exponent s > 0.
    pub fn new(n: u64, exponent: f64) -> Zipf {
        assert!(n >= 1, "zipf needs at least one rank");
        assert!(exponent > 0.0, "zipf exponent must be positive");
        let mut zipf = Zipf {
            n: n as f64,
            exponent,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            squeeze: 0.0,
        };
        zipf.h_integral_x1 = zipf.h_integral(1.5) - 1.0;
        zipf.h_integral_n = zipf.h_integral(zipf.n + 0.5);
        zipf.squeeze = 2.0 - zipf.h_integral_inverse(zipf.h_integral(2.5) - zipf.h(2.0));
        zipf
    }

    /// A rank in 1..=n.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_integral_n + rng.next_f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.squeeze || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }

    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.exponent) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// ln(1 + x) / x, continuous at 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// (e^x - 1) / x, continuous at 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_weights_and_picks_by_them() {
        let mix = Mix::parse("purchase=80,authorize_capture=15,refund=5").expect("parse");
        let mut rng = Rng::new(7);
        let mut counts = [0u32; FlowKind::ALL.len()];
        for _ in 0..100_000 {
            counts[mix.pick(rng.next_u64()) as usize] += 1;
        }
        assert!((79_000..81_000).contains(&counts[FlowKind::Purchase as usize]));
        assert!((14_300..15_700).contains(&counts[FlowKind::AuthorizeCapture as usize]));
        assert!((4_500..5_500).contains(&counts[FlowKind::Refund as usize]));
        assert_eq!(counts[FlowKind::Echo as usize], 0);
        let shares = mix.shares();
        assert_eq!(shares[0], (FlowKind::Purchase, 80.0));
    }

    #[test]
    fn the_floor_holds_for_purchases_and_offers_only() {
        let holds = |text: &str| Mix::parse(text).map(|mix| mix.first_requests_all_logged());
        assert_eq!(holds("purchase=1"), Ok(true));
        assert_eq!(holds("purchase=50,offer=50"), Ok(true));
        assert_eq!(
            holds("purchase=80,authorize_capture=20"),
            Ok(false),
            "a capture is sent at a reply"
        );
        assert_eq!(
            holds("purchase=90,echo=10"),
            Ok(false),
            "an echo writes no record"
        );
        assert_eq!(holds("balance_check=1"), Ok(false));
    }

    #[test]
    fn mix_rejects_unknown_kinds_duplicates_and_empty() {
        assert!(Mix::parse("purchse=1").is_err_and(|error| error.0.contains("known: purchase")));
        assert!(Mix::parse("purchase=1,purchase=2").is_err());
        assert!(Mix::parse("purchase=0").is_err());
        assert!(Mix::parse("purchase").is_err());
        assert!(Mix::parse("purchase=-1").is_err());
        assert!(Mix::parse("").is_err());
        assert!(Mix::parse("echo=1, balance_check = 3").is_ok());
    }

    #[test]
    fn every_kind_has_a_mix_name() {
        for kind in FlowKind::ALL {
            assert_eq!(FlowKind::from_name(kind.name()), Some(kind));
        }
    }

    #[test]
    fn distribution_parses() {
        assert!(matches!(
            Distribution::parse("uniform"),
            Ok(Distribution::Uniform)
        ));
        assert!(matches!(Distribution::parse("zipf:0.99"), Ok(Distribution::Zipf(s)) if s == 0.99));
        assert!(Distribution::parse("zipf:0").is_err());
        assert!(Distribution::parse("zipf:x").is_err());
        assert!(Distribution::parse("normal").is_err());
    }

    #[test]
    fn zipf_frequencies_follow_the_law() {
        // s = 1, n = 1000: P(rank k) = 1 / (k * H_1000), H_1000 = 7.4855.
        let zipf = Zipf::new(1000, 1.0);
        let mut rng = Rng::new(42);
        let samples = 200_000;
        let mut counts = vec![0u32; 1001];
        for _ in 0..samples {
            let rank = zipf.sample(&mut rng);
            assert!((1..=1000).contains(&rank));
            counts[rank as usize] += 1;
        }
        for rank in [1usize, 2, 10] {
            let expected = samples as f64 / (rank as f64 * 7.4855);
            let seen = f64::from(counts[rank]);
            assert!(
                (seen - expected).abs() < expected * 0.05,
                "rank {rank}: {seen} vs {expected}"
            );
        }
    }

    #[test]
    fn zipf_handles_other_exponents_and_one_rank() {
        let mut rng = Rng::new(1);
        let single = Zipf::new(1, 0.5);
        assert_eq!(single.sample(&mut rng), 1);
        // s = 2: P(1) = 1 / zeta(2) ~ 0.608 for large n.
        let zipf = Zipf::new(1_000_000, 2.0);
        let ones = (0..100_000).filter(|_| zipf.sample(&mut rng) == 1).count();
        assert!((59_000..62_500).contains(&ones), "{ones}");
    }

    #[test]
    fn uniform_sampler_covers_every_payer() {
        let sampler = Distribution::Uniform.sampler(10);
        let mut rng = Rng::new(3);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            seen[sampler.sample(&mut rng) as usize] = true;
        }
        assert!(seen.iter().all(|seen| *seen));
    }

    #[test]
    fn drawn_payers_come_in_the_samplers_order_with_their_own_accounts() {
        let sampler = Distribution::Zipf(1.1).sampler(1_000);
        let accounts: Vec<u64> = (0..1_000).map(|index| 5_000_000 + index * 3).collect();
        let (mut direct, mut ahead) = (Rng::new(9), Rng::new(9));
        let mut draws = PayerDraws::default();
        // Three refills and a part.
        for _ in 0..PAYERS_DRAWN_AHEAD * 3 + 5 {
            let payer = sampler.sample(&mut direct);
            assert_eq!(
                draws.take(&sampler, &accounts, &mut ahead),
                (payer as u32, accounts[payer as usize])
            );
        }
    }
}
