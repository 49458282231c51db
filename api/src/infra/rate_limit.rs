//! A token-bucket rate limit per token subject, so one busy client cannot starve the rest;
//! callers over it get 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Subjects a limiter tracks at most: a client that invents a new user name or address for
/// every request must not grow the table without bound.
const MAX_SUBJECTS: usize = 100_000;

/// Buckets of `burst` requests, refilled at `rate` per second, one per subject.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    max_subjects: usize,
}

impl RateLimiter {
    /// A limiter; `rate` 0 lets everything through.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self { rate, burst: burst.max(1.0), buckets: Mutex::new(HashMap::new()), max_subjects: MAX_SUBJECTS }
    }

    /// Takes one request from `subject`'s bucket; when it is empty, how long until it is not.
    pub fn check(&self, subject: &str) -> Result<(), Duration> {
        self.check_at(subject, Instant::now())
    }

    fn check_at(&self, subject: &str, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() >= self.max_subjects && !buckets.contains_key(subject) {
            // Forget the subjects whose buckets have refilled: they are as if never seen.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, last)| {
                *tokens + now.saturating_duration_since(*last).as_secs_f64() * rate < burst
            });
            if buckets.len() >= self.max_subjects {
                // Every tracked subject is still limited: a flood of new ones waits too.
                return Err(Duration::from_secs_f64(1.0 / self.rate).max(Duration::from_secs(1)));
            }
        }
        let (tokens, last) = buckets.entry(subject.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

/// What guards the password grant and the other routes that start costly work: password
/// attempts per client address and per user name, and how many Argon2 checks and model
/// evaluations run at once (each a blocking thread's worth of CPU).
#[derive(Debug)]
pub struct CostlyWork {
    /// Password attempts per client address.
    pub logins_by_address: RateLimiter,
    /// Password attempts per user name.
    pub logins_by_user: RateLimiter,
    /// Argon2 checks at once.
    pub password_checks: std::sync::Arc<tokio::sync::Semaphore>,
    /// Model evaluations (uploads) at once.
    pub evaluations: std::sync::Arc<tokio::sync::Semaphore>,
}

impl CostlyWork {
    /// `logins_per_min` attempts a minute (after a burst of as many) per address and per
    /// user name; `checks` Argon2 checks and `evaluations` model evaluations at once.
    pub fn new(logins_per_min: f64, checks: usize, evaluations: usize) -> Self {
        let logins = || RateLimiter::new(logins_per_min / 60.0, logins_per_min.max(1.0));
        Self {
            logins_by_address: logins(),
            logins_by_user: logins(),
            password_checks: std::sync::Arc::new(tokio::sync::Semaphore::new(checks.max(1))),
            evaluations: std::sync::Arc::new(tokio::sync::Semaphore::new(evaluations.max(1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_subject() {
        let limiter = RateLimiter::new(2.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("ada", t0).is_ok());
        }
        let wait = limiter.check_at("ada", t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        assert!(limiter.check_at("bob", t0).is_ok(), "another subject has its own bucket");
        assert!(limiter.check_at("ada", t0 + Duration::from_millis(500)).is_ok());
        assert!(limiter.check_at("ada", t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn the_table_of_subjects_stays_bounded() {
        let limiter = RateLimiter { max_subjects: 3, ..RateLimiter::new(1.0, 2.0) };
        let t0 = Instant::now();
        for name in ["a", "b", "c"] {
            assert!(limiter.check_at(name, t0).is_ok());
        }
        assert!(limiter.check_at("d", t0).is_err(), "all three still limited: no room");
        // A second later a, b and c have refilled and are forgotten.
        assert!(limiter.check_at("d", t0 + Duration::from_secs(1)).is_ok());
        assert_eq!(limiter.buckets.lock().unwrap().len(), 1);
    }

    #[test]
    fn rate_zero_is_no_limit() {
        let limiter = RateLimiter::new(0.0, 1.0);
        assert!((0..1000).all(|_| limiter.check("ada").is_ok()));
    }
}
